"""Ranking stability: bootstrap the cases within each institution and re-rank, vectorised over resamples.

challengeR's bootstrap draws cases with replacement *per institution* (each keeps its size), ranks again and
compares the new ranks with the observed ones. Re-ranking is made cheap by what does not change: per-case
ranks of the algorithms (``rankThen*``) are computed once, and a resample only selects rows of them, so every
resample of every sub-ranking is a fancy index plus a reduction over a ``[resample, case, algorithm]`` array.
Scores are summed as integers where :func:`fedsim.ranking.rank` uses exact fractions, so ties come out the same.

``testBased`` needs the Wilcoxon tests of every pair on every resample; it is vectorised too, in chunks of
resamples, and costs more (seconds on typical runs rather than a fraction of one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import rankdata

if TYPE_CHECKING:
    from numpy.typing import NDArray

from fedsim.errors import SpecError
from fedsim.ranking import (
    ALPHA,
    DEFAULT_METHOD,
    METHODS,
    SUBRANKINGS,
    InstitutionResults,
    wilcoxon_greater_p_columns,
)

__all__ = ["DEFAULT_RESAMPLES", "DEFAULT_SEED", "RankStability", "bootstrap_ranks", "rank_stability"]

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
# testBased: how many columns (resamples × pairs) go through one Wilcoxon call, to bound memory.
_WILCOXON_COLUMNS = 20_000


@dataclass(frozen=True)
class RankStability:
    """How stable each algorithm's final rank is under bootstrap resampling of the cases."""

    method: str
    resamples: int
    seed: int
    algorithms: tuple[str, ...]
    observed_rank: dict[str, float]
    """The rank on the data as it is (equal to :func:`fedsim.ranking.rank`'s ``final_rank``)."""
    keep_rate: dict[str, float]
    """Fraction of resamples in which the algorithm got exactly its observed rank."""
    mean_rank: dict[str, float]
    rank_interval: dict[str, tuple[float, float]]
    """2.5th and 97.5th percentile of the bootstrap ranks."""
    distribution: dict[str, dict[float, int]]
    """``distribution[algorithm][rank]``: in how many resamples the algorithm got that rank."""
    seconds: float
    """Wall-clock time the resampling and re-ranking took."""

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "resamples": self.resamples,
            "seed": self.seed,
            "seconds": round(self.seconds, 4),
            "algorithms": {
                a: {
                    "observed_rank": self.observed_rank[a],
                    "keep_rate": self.keep_rate[a],
                    "mean_rank": self.mean_rank[a],
                    "rank_interval": list(self.rank_interval[a]),
                    "distribution": {_rank_key(r): n for r, n in sorted(self.distribution[a].items())},
                }
                for a in self.algorithms
            },
        }


def _rank_key(value: float) -> str:
    return f"{value:g}"


def bootstrap_ranks(
    institutions: Mapping[str, InstitutionResults],
    method: str = DEFAULT_METHOD,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    identity: bool = False,
) -> tuple[tuple[str, ...], NDArray[Any]]:
    """Final ranks ``[resample, algorithm]`` (algorithms sorted by name) over case bootstraps.

    ``identity=True`` ranks the data unresampled (one row), which must reproduce :func:`fedsim.ranking.rank`.
    """
    if method not in METHODS:
        raise SpecError(f"unknown ranking method {method!r}; use one of {', '.join(METHODS)}", field="method")
    if not institutions:
        raise SpecError("no institutions to rank; give at least one results file", field="institutions")
    if resamples < 1:
        raise SpecError("must be at least 1", field="resamples")
    algos = tuple(sorted({a for inst in institutions.values() for a in inst.algorithms}))
    rng = np.random.default_rng(seed)
    rows = 1 if identity else resamples
    total = np.zeros((rows, len(algos)), dtype=np.int64)  # sum of integer sub-ranks over subs and sites
    for name in sorted(institutions):
        inst = institutions[name]
        n = len(inst.cases)
        index = np.arange(n)[None, :] if identity else rng.integers(0, n, size=(rows, n))
        for metric, region in SUBRANKINGS:
            values = inst.values(metric, region, algos)
            oriented = values if metric == "Dice" else -values
            total += _subranks(method, oriented, index)
    # Every institution has the same number of sub-rankings, so ranking the integer totals ranks the
    # final scores exactly; ties averaged as R's rank() does.
    return algos, np.asarray(rankdata(total, method="average", axis=1), dtype=float)


def _subranks(method: str, oriented: NDArray[Any], index: NDArray[Any]) -> NDArray[Any]:
    """Integer sub-ranks ``[resample, algorithm]`` of one sub-ranking; ``oriented`` is larger-is-better."""
    if method == "testBased":
        wins = _significant_wins(oriented, index)
        return np.asarray(rankdata(-wins, method="min", axis=1), dtype=np.int64)
    if method.startswith("rankThen"):
        per_case = np.asarray(rankdata(-oriented, method="min", axis=1), dtype=np.int64)  # [case, algo]
        if method == "rankThenMean":
            # Means over the same number of cases compare like sums; integer sums tie exactly. A resample
            # is a count per case, so its sums are one integer matrix product.
            counts = _case_counts(index, per_case.shape[0])
            return np.asarray(rankdata(counts @ per_case, method="min", axis=1), dtype=np.int64)
        summary = np.median(per_case.T[:, index], axis=-1).T  # [algo, resample, case] keeps cases contiguous
        return np.asarray(rankdata(summary, method="min", axis=1), dtype=np.int64)
    sample = oriented.T[:, index]  # [algo, resample, case]
    if method == "aggregateThenMean":
        # Sorting first makes equal multisets of values sum to the same float, as rank()'s fsum does.
        sample.sort(axis=-1)
        summary = sample.sum(axis=-1).T
    else:
        summary = np.median(sample, axis=-1).T
    return np.asarray(rankdata(-summary, method="min", axis=1), dtype=np.int64)


def _case_counts(index: NDArray[Any], cases: int) -> NDArray[Any]:
    """``[resample, case]``: how often each case was drawn."""
    rows = index.shape[0]
    flat = (index + cases * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * cases).reshape(rows, cases).astype(np.int64)


def _significant_wins(oriented: NDArray[Any], index: NDArray[Any]) -> NDArray[Any]:
    """testBased: per resample, how many others each algorithm beats (Wilcoxon, Holm over the pairs)."""
    n_algos = oriented.shape[1]
    rows = index.shape[0]
    wins = np.zeros((rows, n_algos), dtype=np.int64)
    pairs = [(i, j) for i in range(n_algos) for j in range(n_algos) if i != j]
    if not pairs:
        return wins
    first = np.array([i for i, _ in pairs])
    second = np.array([j for _, j in pairs])
    differences = oriented[:, first] - oriented[:, second]  # [case, pair]
    winner = np.zeros((len(pairs), n_algos), dtype=np.int64)  # pair -> its first algorithm, one-hot
    winner[np.arange(len(pairs)), first] = 1
    chunk = max(1, _WILCOXON_COLUMNS // len(pairs))
    for start in range(0, rows, chunk):
        idx = index[start : start + chunk]  # [r, case]
        sample = differences[idx]  # [r, case, pair]
        r = sample.shape[0]
        columns = sample.transpose(1, 0, 2).reshape(sample.shape[1], r * len(pairs))
        raw = wilcoxon_greater_p_columns(columns).reshape(r, len(pairs))
        significant = _holm_rows(raw) <= ALPHA  # [r, pair]
        wins[start : start + r] = significant.astype(np.int64) @ winner
    return wins


def _holm_rows(p: NDArray[Any]) -> NDArray[Any]:
    """R ``p.adjust(method="holm")`` applied to every row of ``p``."""
    m = p.shape[1]
    order = np.argsort(p, axis=1, kind="stable")
    ordered = np.take_along_axis(p, order, axis=1)
    scaled = (m - np.arange(m))[None, :] * ordered
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(scaled, axis=1))
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, adjusted_sorted, axis=1)
    return adjusted


def rank_stability(
    institutions: Mapping[str, InstitutionResults],
    method: str = DEFAULT_METHOD,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> RankStability:
    """Bootstrap the cases within each institution ``resamples`` times and summarise the rank changes."""
    started = time.perf_counter()
    algos, observed = bootstrap_ranks(institutions, method, identity=True)
    _, ranks = bootstrap_ranks(institutions, method, resamples=resamples, seed=seed)
    seconds = time.perf_counter() - started
    observed_rank = {a: float(observed[0, j]) for j, a in enumerate(algos)}
    keep = (ranks == observed).mean(axis=0)
    low, high = np.percentile(ranks, [2.5, 97.5], axis=0)
    distribution: dict[str, dict[float, int]] = {}
    for j, a in enumerate(algos):
        values, counts = np.unique(ranks[:, j], return_counts=True)
        distribution[a] = {float(v): int(c) for v, c in zip(values, counts, strict=True)}
    order = tuple(sorted(algos, key=lambda a: (observed_rank[a], a)))
    return RankStability(
        method=method,
        resamples=resamples,
        seed=seed,
        algorithms=order,
        observed_rank={a: observed_rank[a] for a in order},
        keep_rate={a: float(keep[algos.index(a)]) for a in order},
        mean_rank={a: float(ranks[:, algos.index(a)].mean()) for a in order},
        rank_interval={a: (float(low[algos.index(a)]), float(high[algos.index(a)])) for a in order},
        distribution={a: distribution[a] for a in order},
        seconds=seconds,
    )
