"""challengeR-equivalent ranking across institutions, as FeTS 2022 task 2 ranked its submissions.

Each institution ranks the algorithms six times (Dice and HD95 × ET, TC, WT); an institution's score is the
mean of those six sub-ranks, and the final score is the mean over institutions, so a site with 5 cases weighs
as much as one with 500. Significance (paired one-sided Wilcoxon, Holm over the pairs of each sub-ranking) is
counted for every method and drives the ``testBased`` method.

An algorithm with no result at all at an institution is not skipped there: all of its values count as NA and
so as the worst values (Dice 0, HD95 1000), exactly like a crashed container in the real federation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import rankdata

from fedsim.errors import SpecError
from fedsim.ranking._results import InstitutionResults, Scheme, detect_scheme
from fedsim.ranking._stats import holm_adjust, rank_average, rank_min, wilcoxon_greater_p_columns

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Reals = NDArray[np.floating[Any]] | NDArray[np.integer[Any]]  # scores, or their per-case ranks

__all__ = ["ALPHA", "DEFAULT_METHOD", "METHODS", "RankingResult", "SubRanking", "rank"]

METHODS: tuple[str, ...] = (
    "rankThenMean",
    "rankThenMedian",
    "aggregateThenMean",
    "aggregateThenMedian",
    "testBased",
)
DEFAULT_METHOD = "rankThenMean"
#: Significance level applied to Holm-adjusted p-values (challengeR's default).
ALPHA = 0.05

SubRanking = tuple[str, str]
"""``(metric, region)``, e.g. ``("Dice", "ET")``."""


@dataclass(frozen=True)
class RankingResult:
    """Everything a report needs; ``algorithms`` is ordered by final rank, then name."""

    method: str
    algorithms: tuple[str, ...]
    institutions: tuple[str, ...]
    per_institution_subranks: dict[str, dict[str, dict[SubRanking, int]]]
    institution_scores: dict[str, dict[str, float]]
    final_score: dict[str, float]
    final_rank: dict[str, float]
    significant: dict[str, dict[str, int]]
    """``significant[a][b]``: sub-rankings (all institutions) where a is significantly better than b."""
    significant_wins: dict[str, int]
    """Row sums of ``significant``."""
    adjusted_pvalues: dict[str, dict[SubRanking, dict[tuple[str, str], float]]]
    """Holm-adjusted p that a beats b, per institution, sub-ranking and ordered pair ``(a, b)``."""
    subrankings: tuple[SubRanking, ...] = ()
    """The sub-rankings of each institution, in column order (the scheme's)."""
    scheme: str = "brats2021"


def rank(
    institutions: Mapping[str, InstitutionResults], method: str = DEFAULT_METHOD, scheme: Scheme | None = None
) -> RankingResult:
    """Rank every algorithm seen at any institution with one of :data:`METHODS`.

    ``scheme``: what each institution ranks (default: detected from the keys — the BraTS 2025 set's
    lesion-wise Dice and NSD per region when present, else FeTS's Dice and HD95 of ET, TC, WT)."""
    if method not in METHODS:
        raise SpecError(f"unknown ranking method {method!r}; use one of {', '.join(METHODS)}", field="method")
    if not institutions:
        raise SpecError("no institutions to rank; give at least one results file", field="institutions")
    inst_names = tuple(sorted(institutions))
    algos = tuple(sorted({a for inst in institutions.values() for a in inst.algorithms}))
    scheme = scheme or detect_scheme(institutions)
    subrankings = scheme.subrankings

    subranks: dict[str, dict[str, dict[SubRanking, int]]] = {}
    exact_scores: dict[str, dict[str, Fraction]] = {}
    pvalues: dict[str, dict[SubRanking, dict[tuple[str, str], float]]] = {}
    significant = {a: dict.fromkeys(algos, 0) for a in algos}
    for name in inst_names:
        inst = institutions[name]
        subranks[name] = {a: {} for a in algos}
        pvalues[name] = {}
        for sub in subrankings:
            metric, region = sub
            better_high = metric in scheme.higher_better
            values = inst.values(metric, region, algos, scheme)
            # Orient so that larger is better everywhere below.
            oriented = values if better_high else -values
            adjusted = _pairwise_significance(oriented, algos)
            pvalues[name][sub] = adjusted
            wins = dict.fromkeys(algos, 0)
            for (a, b), p in adjusted.items():
                if p <= ALPHA:
                    wins[a] += 1
                    significant[a][b] += 1
            ranks = _subrank(method, oriented, [wins[a] for a in algos])
            for a, r in zip(algos, ranks, strict=True):
                subranks[name][a][sub] = int(r)
        exact_scores[name] = {a: Fraction(sum(subranks[name][a].values()), len(subrankings)) for a in algos}

    # Exact fractions so that mathematically equal scores tie (float sums of 7/6-style values need not).
    final_exact = {a: sum((exact_scores[n][a] for n in inst_names), Fraction(0)) / len(inst_names) for a in algos}
    distinct = sorted(set(final_exact.values()))
    final_ranks = rank_average([distinct.index(final_exact[a]) for a in algos])
    final_rank = {a: float(r) for a, r in zip(algos, final_ranks, strict=True)}
    order = tuple(sorted(algos, key=lambda a: (final_rank[a], a)))
    return RankingResult(
        method=method,
        algorithms=order,
        institutions=inst_names,
        per_institution_subranks=subranks,
        institution_scores={n: {a: float(s) for a, s in exact_scores[n].items()} for n in inst_names},
        final_score={a: float(final_exact[a]) for a in order},
        final_rank={a: final_rank[a] for a in order},
        significant={a: {b: significant[a][b] for b in order} for a in order},
        significant_wins={a: sum(significant[a].values()) for a in order},
        adjusted_pvalues=pvalues,
        subrankings=subrankings,
        scheme=scheme.name,
    )


def _subrank(method: str, oriented: NDArray[np.float64], wins: list[int]) -> NDArray[np.int_]:
    """Integer sub-rank per algorithm from a ``[case, algorithm]`` matrix where larger is better."""
    if method == "testBased":
        return rank_min([-w for w in wins])
    if method.startswith("rankThen"):
        per_case = rankdata(-oriented, method="min", axis=1)
        summary = _summaries(per_case, method)
        return rank_min(summary)
    return rank_min([-s for s in _summaries(oriented, method)])


def _summaries(matrix: Reals, method: str) -> list[float]:
    """Column-wise mean (order-independent ``fsum``, so equal multisets tie exactly) or median."""
    reduce = _mean if method.endswith("Mean") else _median
    return [reduce(matrix[:, j]) for j in range(matrix.shape[1])]


def _mean(column: Reals) -> float:
    return math.fsum(column) / column.size


def _median(column: Reals) -> float:
    return float(np.median(column))


def _pairwise_significance(oriented: NDArray[np.float64], algos: tuple[str, ...]) -> dict[tuple[str, str], float]:
    """Holm-adjusted p that column a beats column b, for every ordered pair, on all cases of the site."""
    pairs = [(i, j) for i in range(len(algos)) for j in range(len(algos)) if i != j]
    if not pairs:
        return {}
    first, second = (list(index) for index in zip(*pairs, strict=True))
    raw = wilcoxon_greater_p_columns(oriented[:, first] - oriented[:, second])
    adjusted = holm_adjust(raw)
    return {(algos[i], algos[j]): float(p) for (i, j), p in zip(pairs, adjusted, strict=True)}
