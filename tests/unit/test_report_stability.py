"""Bootstrap ranking stability: agrees with fedsim.ranking, deterministic for a seed, fast."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fedsim.ranking import METHODS, InstitutionResults, rank
from fedsim.report.stability import bootstrap_ranks, rank_stability

REGIONS = ("ET", "TC", "WT")


def _institutions(
    seed: int, sites: int = 3, cases: int = 6, algos: int = 4, ties: bool = True
) -> dict[str, InstitutionResults]:
    rng = np.random.default_rng(seed)
    out = {}
    for s in range(sites):
        data: dict[str, dict[str, dict[str, float]]] = {}
        for c in range(cases):
            per_case = {}
            for a in range(algos):
                dice = [float(rng.choice([0.0, 0.5, 1.0]) if ties else rng.random()) for _ in REGIONS]
                hd = [float(rng.choice([1.0, 2.0, 374.0]) if ties else 50 * rng.random()) for _ in REGIONS]
                per_case[f"algo{a}"] = {
                    **{f"Dice_{r}": d for r, d in zip(REGIONS, dice, strict=True)},
                    **{f"Hausdorff95_{r}": h for r, h in zip(REGIONS, hd, strict=True)},
                }
            data[f"case{c}"] = per_case
        out[f"site{s}"] = InstitutionResults.from_mapping(f"site{s}", data)
    return out


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(6))
def test_unresampled_ranks_equal_the_ranking_module(method: str, seed: int) -> None:
    institutions = _institutions(seed, ties=seed % 2 == 0, cases=3 + seed)
    expected = rank(institutions, method).final_rank
    algos, ranks = bootstrap_ranks(institutions, method, identity=True)
    assert {a: float(ranks[0, j]) for j, a in enumerate(algos)} == expected


@pytest.mark.parametrize("method", METHODS)
def test_each_resample_equals_ranking_the_resampled_cases(method: str) -> None:
    institutions = _institutions(7, cases=5)
    algos, ranks = bootstrap_ranks(institutions, method, resamples=4, seed=11)
    rng = np.random.default_rng(11)  # the same draws, in the same order: per resample, site by site
    draws = {name: rng.integers(0, 5, size=(4, 5)) for name in sorted(institutions)}
    for b in range(4):
        resampled = {}
        for name, inst in institutions.items():
            ids = inst.case_ids
            cases = {f"draw{k}": inst.cases[ids[i]] for k, i in enumerate(draws[name][b])}
            resampled[name] = InstitutionResults.from_mapping(name, cases)
        expected = rank(resampled, method).final_rank
        assert {a: float(ranks[b, j]) for j, a in enumerate(algos)} == expected


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    institutions = _institutions(3, cases=8, ties=False)
    first = rank_stability(institutions, resamples=200, seed=5)
    again = rank_stability(institutions, resamples=200, seed=5)
    other = rank_stability(institutions, resamples=200, seed=6)
    assert first.distribution == again.distribution and first.keep_rate == again.keep_rate
    assert first.distribution != other.distribution
    for a in first.algorithms:
        assert sum(first.distribution[a].values()) == 200
        assert 0.0 <= first.keep_rate[a] <= 1.0
        assert first.rank_interval[a][0] <= first.mean_rank[a] <= first.rank_interval[a][1]
    assert first.observed_rank == rank(institutions).final_rank
    assert list(first.algorithms) == list(rank(institutions).algorithms)


def test_a_clear_winner_keeps_its_rank() -> None:
    institutions = _institutions(4, cases=10, ties=False)
    for inst in institutions.values():
        for per_case in inst.cases.values():
            per_case["champion"] = {**{f"Dice_{r}": 1.0 for r in REGIONS}, **{f"Hausdorff95_{r}": 0.0 for r in REGIONS}}
    stability = rank_stability(institutions, resamples=300, seed=0)
    assert stability.algorithms[0] == "champion"
    assert stability.keep_rate["champion"] == 1.0 and stability.distribution["champion"] == {1.0: 300}


def test_thousand_resamples_take_seconds_not_minutes() -> None:
    institutions = _institutions(1, sites=5, cases=60, algos=6, ties=False)
    started = time.perf_counter()
    stability = rank_stability(institutions, resamples=1000, seed=0)
    elapsed = time.perf_counter() - started
    assert stability.resamples == 1000
    assert elapsed < 10, elapsed
