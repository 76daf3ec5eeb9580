"""The statistics challengeR delegates to R, re-implemented so fedsim's numbers match R's.

R's defaults differ from scipy's in small ways that change rankings (``rank`` ties, the Wilcoxon tie-corrected
variance and continuity correction), so each function names the R call it reproduces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.special import ndtr
from scipy.stats import rankdata

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

__all__ = ["holm_adjust", "rank_average", "rank_min", "wilcoxon_greater_p", "wilcoxon_greater_p_columns"]


def rank_min(values: ArrayLike) -> NDArray[np.int_]:
    """R ``rank(x, ties.method="min")``: smaller value, better (smaller) rank; ties share the best rank."""
    return np.asarray(rankdata(np.asarray(values), method="min"), dtype=int)


def rank_average(values: ArrayLike) -> NDArray[np.float64]:
    """R's default ``rank(x)``: ties share the mean of the ranks they span."""
    return np.asarray(rankdata(np.asarray(values), method="average"), dtype=float)


def wilcoxon_greater_p(differences: ArrayLike) -> float:
    """One-sided p-value that the paired differences are shifted above zero.

    Reproduces R ``wilcox.test(d, alternative="greater", exact=FALSE, correct=TRUE)``: zero differences
    dropped, average ranks of ``|d|``, tie-corrected normal approximation with a 0.5 continuity correction.
    No non-zero difference at all means no evidence: p = 1.
    """
    column = np.asarray(differences, dtype=float).reshape(-1, 1)
    return float(wilcoxon_greater_p_columns(column)[0])


def wilcoxon_greater_p_columns(differences: ArrayLike) -> NDArray[np.float64]:
    """:func:`wilcoxon_greater_p` for every column of a ``[case, pair]`` matrix at once.

    Vectorised because a site ranks every ordered pair of algorithms six times. Zeros are ranked first and
    their count subtracted, which gives the non-zero differences exactly the ranks they would have alone.
    """
    d = np.asarray(differences, dtype=float)
    if d.ndim != 2:
        raise ValueError("differences must be a [case, pair] matrix")
    if d.shape[0] == 0:
        return np.ones(d.shape[1])
    magnitude = np.abs(d)
    nonzero = d != 0
    zeros = d.shape[0] - nonzero.sum(axis=0)
    n = nonzero.sum(axis=0).astype(float)
    average = rankdata(magnitude, method="average", axis=0) - zeros
    statistic = np.where(d > 0, average, 0.0).sum(axis=0)
    # Each member of a tie group of size t spans min..max rank: t = max - min + 1, and the group adds
    # t * (t^2 - 1) = t^3 - t to R's NTIES term when every member contributes t^2 - 1.
    tie_size = rankdata(magnitude, method="max", axis=0) - rankdata(magnitude, method="min", axis=0) + 1
    ties = np.where(nonzero, tie_size**2 - 1, 0.0).sum(axis=0)
    variance = n * (n + 1) * (2 * n + 1) / 24 - ties / 48
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (statistic - n * (n + 1) / 4 - 0.5) / np.sqrt(variance)
    return np.where(n > 0, ndtr(-z), 1.0)


def holm_adjust(pvalues: ArrayLike) -> NDArray[np.float64]:
    """R ``p.adjust(p, method="holm")``: step-down Bonferroni, monotone, capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted
