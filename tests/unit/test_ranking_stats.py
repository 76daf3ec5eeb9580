"""R-equivalent statistics behind the ranking: rank ties, Wilcoxon p-values, Holm adjustment."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fedsim.ranking import holm_adjust, rank_average, rank_min, wilcoxon_greater_p, wilcoxon_greater_p_columns


def test_rank_min_gives_ties_the_best_rank() -> None:
    # R: rank(c(3, 1, 3, 2), ties.method="min") = 3 1 3 2 (the tied pair spans ranks 3-4 and takes 3)
    assert rank_min([3.0, 1.0, 3.0, 2.0]).tolist() == [3, 1, 3, 2]
    assert rank_min([5.0, 5.0, 5.0]).tolist() == [1, 1, 1]


def test_rank_average_gives_ties_the_mean_rank() -> None:
    # R: rank(c(3, 1, 3, 2)) = 3.5 1 3.5 2 (the tied pair spans ranks 3 and 4)
    assert rank_average([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_wilcoxon_twelve_wins_is_significant() -> None:
    # 12 positive, distinct differences: V = 1+...+12 = 78, E[V] = 12*13/4 = 39,
    # Var = 12*13*25/24 = 162.5, z = (78 - 39 - 0.5)/sqrt(162.5) = 3.020188 → p = 1 - Φ(z) = 0.0012631
    d = np.arange(1, 13) / 100
    assert wilcoxon_greater_p(d) == pytest.approx(0.0012630871342510825, rel=1e-12)
    # The other direction: V = 0, z = (0 - 39 - 0.5)/12.7475 = -3.0987 → p = 0.9990279
    assert wilcoxon_greater_p(-d) == pytest.approx(0.999027927919626, rel=1e-12)


def test_wilcoxon_four_wins_can_never_be_significant() -> None:
    # Best case for n = 4: V = 10, E[V] = 5, Var = 4*5*9/24 = 7.5, z = 4.5/sqrt(7.5) = 1.643168
    # → p = 0.050174 > 0.05, so four cases can never show significance (before Holm makes it worse).
    assert wilcoxon_greater_p([0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.050174123231145375, rel=1e-12)
    assert wilcoxon_greater_p([0.1, 0.2, 0.3, 0.4]) > 0.05


def test_wilcoxon_tie_corrected_variance_and_dropped_zeros() -> None:
    # d = (1, 1, 2, -1, 0): the zero is dropped (n = 4); |d| = 1,1,2,1 → ranks 2,2,4,2 (three tied at 1).
    # V = 2 + 2 + 4 = 8; Var = 7.5 - (3^3 - 3)/48 = 7.0; z = (8 - 5 - 0.5)/sqrt(7) = 0.944911 → p = 0.172352
    assert wilcoxon_greater_p([1.0, 1.0, 2.0, -1.0, 0.0]) == pytest.approx(0.1723521110034788, rel=1e-12)


def test_wilcoxon_without_nonzero_differences_is_one() -> None:
    assert wilcoxon_greater_p([0.0, 0.0, 0.0]) == 1.0
    assert wilcoxon_greater_p([]) == 1.0


@pytest.mark.parametrize("seed", range(25))
def test_wilcoxon_matches_scipy_approx(seed: int) -> None:
    # Rounded values make tied |d| and zero differences common, exercising both corrections.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    d = np.round(rng.normal(0.1, 1.0, size=n), 1)
    if not np.any(d != 0):
        d[0] = 0.5
    expected = stats.wilcoxon(d, alternative="greater", correction=True, method="approx", zero_method="wilcox")
    assert wilcoxon_greater_p(d) == pytest.approx(float(expected.pvalue), rel=1e-9, abs=1e-15)
    # "less" on d (how HD95 is tested) is "greater" on -d.
    expected_less = stats.wilcoxon(d, alternative="less", correction=True, method="approx", zero_method="wilcox")
    assert wilcoxon_greater_p(-d) == pytest.approx(float(expected_less.pvalue), rel=1e-9, abs=1e-15)


def test_wilcoxon_columns_match_scipy_per_column() -> None:
    # Columns of one matrix: all-positive, mixed with ties and zeros, all zero (p = 1), all negative.
    rng = np.random.default_rng(7)
    mixed = np.round(rng.normal(0.0, 1.0, size=15), 1)
    d = np.column_stack([np.arange(1, 16) / 10, mixed, np.zeros(15), -np.arange(1, 16) / 10])
    got = wilcoxon_greater_p_columns(d)
    assert got[2] == 1.0
    for j in (0, 1, 3):
        expected = stats.wilcoxon(d[:, j], alternative="greater", correction=True, method="approx")
        assert got[j] == pytest.approx(float(expected.pvalue), rel=1e-9, abs=1e-15)
    assert wilcoxon_greater_p_columns(np.empty((0, 2))).tolist() == [1.0, 1.0]


def test_holm_adjustment_numbers() -> None:
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm")
    # sorted 0.005, 0.01, 0.03, 0.04 × (4, 3, 2, 1) = 0.02, 0.03, 0.06, 0.04 → cummax 0.02, 0.03, 0.06, 0.06
    # back in input order: 0.03, 0.06, 0.06, 0.02
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_handles_empty() -> None:
    # 2 × 0.6 = 1.2 → 1; then max(1, 0.7) capped → 1
    assert holm_adjust([0.6, 0.7]).tolist() == [1.0, 1.0]
    assert holm_adjust([]).size == 0


def test_holm_on_two_algorithms_twelve_cases() -> None:
    # The two ordered pairs of A (better on all 12 cases) vs B: raw p = 0.0012631 and 0.9990279.
    # Holm: 2 × 0.0012631 = 0.0025262; max(0.0025262, 1 × 0.9990279) = 0.9990279.
    raw = [0.0012630871342510825, 0.999027927919626]
    adjusted = holm_adjust(raw)
    assert adjusted[0] == pytest.approx(0.002526174268502165)
    assert adjusted[1] == pytest.approx(0.999027927919626)
    assert math.isclose(adjusted[0], 2 * raw[0])
