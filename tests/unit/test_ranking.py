"""Ranking semantics (challengeR as FeTS used it), with every expectation computed by hand in comments.

Trick used throughout: a metric nobody reports is NA for every algorithm, hence the same worst value for all,
hence a tie at sub-rank 1 for everyone. So a test can set only ``Dice_ET`` and know the other five sub-ranks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import fedsim.ranking as ranking
from fedsim.errors import SpecError
from fedsim.ranking import METHODS, SUBRANKINGS, InstitutionResults, rank, write_csvs

DICE_ET = ("Dice", "ET")
HD_ET = ("Hausdorff95", "ET")


def inst(name: str, cases: dict[str, dict[str, Any]]) -> InstitutionResults:
    return InstitutionResults.from_mapping(name, cases)


def dice_et(**per_algo: float | None) -> dict[str, dict[str, float | None]]:
    return {algo: {"Dice_ET": value} for algo, value in per_algo.items()}


def full(q: float) -> dict[str, float]:
    """All six metrics from one quality q: Dice = q, HD95 = 100 (1 - q) (binary-exact for the q used)."""
    out = {f"Dice_{r}": q for r in ranking.REGIONS}
    out.update({f"Hausdorff95_{r}": 100 * (1 - q) for r in ranking.REGIONS})
    return out


def subranks(result: ranking.RankingResult, institution: str, sub: tuple[str, str]) -> dict[str, int]:
    return {a: result.per_institution_subranks[institution][a][sub] for a in sorted(result.algorithms)}


# Dice_ET at one institution, 3 cases (values binary-exact so means compare exactly):
#            A       B       C
#   c1     0.875   0.875   0.5      per-case ranks (min): A 1, B 1, C 3   (average would give A 1.5, B 1.5)
#   c2     0.75    0.625   0.875                          C 1, A 2, B 3
#   c3     0.75    0.625   0.875                          C 1, A 2, B 3
TIES = {
    "c1": dice_et(A=0.875, B=0.875, C=0.5),
    "c2": dice_et(A=0.75, B=0.625, C=0.875),
    "c3": dice_et(A=0.75, B=0.625, C=0.875),
}


def test_rank_then_mean_uses_min_ties_per_case_and_in_subranks_and_averages_final_ties() -> None:
    # Mean per-case rank: A (1+2+2)/3 = 5/3, B (1+3+3)/3 = 7/3, C (3+1+1)/3 = 5/3.
    # (With average per-case ties A would be 5.5/3 and lose to C: the min rule matters.)
    # Sub-rank = rank of means with min ties: A 1, C 1, B 3 (not 2).
    result = rank({"X": inst("X", TIES)})
    assert result.method == "rankThenMean"
    assert subranks(result, "X", DICE_ET) == {"A": 1, "B": 3, "C": 1}
    for sub in SUBRANKINGS[1:]:
        assert subranks(result, "X", sub) == {"A": 1, "B": 1, "C": 1}
    # Institution score = mean of six sub-ranks: A (1+5)/6 = 1, B (3+5)/6 = 4/3, C 1.
    assert result.institution_scores["X"] == pytest.approx({"A": 1.0, "B": 4 / 3, "C": 1.0})
    # Final ranks with averaged ties: A and C share ranks 1 and 2 → 1.5 each; B 3.
    assert result.final_rank == {"A": 1.5, "C": 1.5, "B": 3.0}
    assert result.algorithms == ("A", "C", "B")


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        # per-case ranks A [1,2,2], B [1,3,3], C [3,1,1] → medians A 2, B 3, C 1
        ("rankThenMedian", {"A": 2, "B": 3, "C": 1}),
        # mean Dice: A 2.375/3 = 0.792, B 2.125/3 = 0.708, C 2.25/3 = 0.75 → A 1, C 2, B 3
        ("aggregateThenMean", {"A": 1, "B": 3, "C": 2}),
        # median Dice: A 0.75, B 0.625, C 0.875 → C 1, A 2, B 3
        ("aggregateThenMedian", {"A": 2, "B": 3, "C": 1}),
        # 3 cases can never be significant (best p = 1 - Φ((6-3-0.5)/sqrt(3.5)) = 0.0907): all 0 wins → all 1
        ("testBased", {"A": 1, "B": 1, "C": 1}),
    ],
)
def test_each_method_on_the_tie_example(method: str, expected: dict[str, int]) -> None:
    result = rank({"X": inst("X", TIES)}, method)
    assert result.method == method
    assert subranks(result, "X", DICE_ET) == expected


def test_test_based_all_tied_gives_everyone_the_average_final_rank() -> None:
    # Every score is 1 → ranks 1, 2, 3 averaged → 2 for all.
    result = rank({"X": inst("X", TIES)}, "testBased")
    assert result.final_rank == {"A": 2.0, "B": 2.0, "C": 2.0}


def test_aggregate_then_mean_ties_in_subranks_use_min() -> None:
    # Dice_ET means: A (0.5+0.75)/2 = 0.625, B (0.75+0.5)/2 = 0.625, C 0.25 → A 1, B 1, C 3.
    cases = {"c1": dice_et(A=0.5, B=0.75, C=0.25), "c2": dice_et(A=0.75, B=0.5, C=0.25)}
    assert subranks(rank({"X": inst("X", cases)}, "aggregateThenMean"), "X", DICE_ET) == {
        "A": 1,
        "B": 1,
        "C": 3,
    }


def test_na_values_become_the_worst_values() -> None:
    x = inst(
        "X",
        {
            "c1": {
                "A": {
                    "Dice_ET": None,
                    "Hausdorff95_ET": "NaN",
                    "Dice_TC": 0.0,
                    "Hausdorff95_TC": float("inf"),
                },
                "B": {"Dice_ET": 0.25, "Hausdorff95_ET": 999.0, "Hausdorff95_TC": float("nan")},
            },
        },
    )
    # null → Dice 0; NaN (also as text) and inf → HD95 1000; a missing key (B's Dice_TC) → Dice 0.
    assert x.values("Dice", "ET", ("A", "B")).tolist() == [[0.0, 0.25]]
    assert x.values("Hausdorff95", "ET", ("A", "B")).tolist() == [[1000.0, 999.0]]
    assert x.values("Dice", "TC", ("A", "B")).tolist() == [[0.0, 0.0]]
    assert x.values("Hausdorff95", "TC", ("A", "B")).tolist() == [[1000.0, 1000.0]]
    result = rank({"X": x})
    # Dice_ET: B 0.25 beats A's NA (0). HD95_ET: B 999 beats A's NA (1000). Dice_TC: A's real 0 ties B's NA 0.
    assert subranks(result, "X", DICE_ET) == {"A": 2, "B": 1}
    assert subranks(result, "X", HD_ET) == {"A": 2, "B": 1}
    assert subranks(result, "X", ("Dice", "TC")) == {"A": 1, "B": 1}
    # A: (2+1+1+2+1+1)/6 = 4/3; B: 1.
    assert result.institution_scores["X"] == pytest.approx({"A": 4 / 3, "B": 1.0})


def test_algorithm_absent_for_a_case_is_na_for_that_case() -> None:
    # c2 has no entry for B → B's Dice_ET there is 0.
    # per-case ranks: c1 B 1, A 2; c2 A 1, B 2 (0.125 > 0) ; c3 B 1, A 2 → means A 5/3, B 4/3 → B 1, A 2.
    cases = {"c1": dice_et(A=0.5, B=0.75), "c2": dice_et(A=0.125), "c3": dice_et(A=0.5, B=0.75)}
    x = inst("X", cases)
    assert x.values("Dice", "ET", ("A", "B"))[:, 1].tolist() == [0.75, 0.0, 0.75]
    assert subranks(rank({"X": x}), "X", DICE_ET) == {"A": 2, "B": 1}


def test_algorithm_missing_at_one_institution_counts_as_worst_there() -> None:
    # X: A q=.75, B q=.5, C absent → C worst on all six → X scores A 1, B 2, C 3.
    # Y: C q=.875, A q=.75, B q=.5 → Y scores C 1, A 2, B 3.
    # Final: A (1+2)/2 = 1.5, B (2+3)/2 = 2.5, C (3+1)/2 = 2 → A 1, C 2, B 3.
    # (Skipping C at X instead would give C a score of 1 and first place.)
    x = inst("X", {"x1": {"A": full(0.75), "B": full(0.5)}})
    y = inst("Y", {"y1": {"A": full(0.75), "B": full(0.5), "C": full(0.875)}})
    result = rank({"Y": y, "X": x})
    assert result.institutions == ("X", "Y")
    assert result.institution_scores == {
        "X": {"A": 1.0, "B": 2.0, "C": 3.0},
        "Y": {"A": 2.0, "B": 3.0, "C": 1.0},
    }
    assert result.final_score == {"A": 1.5, "C": 2.0, "B": 2.5}
    assert result.final_rank == {"A": 1.0, "C": 2.0, "B": 3.0}


def test_institutions_of_different_sizes_weigh_the_same() -> None:
    # X (1 case): A better everywhere → A 1, B 2.   Y (5 cases): B better everywhere → A 2, B 1.
    # Final A (1+2)/2 = 1.5 = B → averaged tie 1.5 each. Pooling the 6 cases would make B win 5 to 1.
    x = inst("X", {"x1": {"A": full(0.75), "B": full(0.5)}})
    y = inst("Y", {f"y{i}": {"A": full(0.5), "B": full(0.75)} for i in range(5)})
    result = rank({"X": x, "Y": y})
    assert result.final_score == {"A": 1.5, "B": 1.5}
    assert result.final_rank == {"A": 1.5, "B": 1.5}


def test_mathematically_equal_final_scores_tie_exactly() -> None:
    # X (Dice_ET only): A 0.5, B 0.75, C 0.875 → C 1, B 2, A 3  → scores A 8/6, B 7/6, C 1
    # Y (Dice_ET only): A 0.875, B 0.75, C 0.5 → A 1, B 2, C 3  → scores A 1,   B 7/6, C 8/6
    # Final: A (8/6 + 1)/2 = 7/6, B (7/6 + 7/6)/2 = 7/6, C 7/6 → all tie at rank 2.
    # In floats (8/6 + 1)/2 = 1.1666666666666665 but (7/6 + 7/6)/2 = 1.1666666666666667: needs exact sums.
    x = inst("X", {"c": dice_et(A=0.5, B=0.75, C=0.875)})
    y = inst("Y", {"c": dice_et(A=0.875, B=0.75, C=0.5)})
    result = rank({"X": x, "Y": y})
    assert result.final_rank == {"A": 2.0, "B": 2.0, "C": 2.0}


def twelve_cases(n: int = 12) -> dict[str, Any]:
    """A better than B on every case, distinct margins, on Dice_ET (higher) and HD95_ET (lower)."""
    return {
        f"c{i:02d}": {
            "A": {"Dice_ET": 0.5 + i / 64, "Hausdorff95_ET": 10 - i / 4},
            "B": {"Dice_ET": 0.5, "Hausdorff95_ET": 10.0},
        }
        for i in range(1, n + 1)
    }


def test_significance_with_twelve_cases_counts_over_subrankings_and_institutions() -> None:
    # Per sub-ranking: raw p(A>B) = 0.0012631, p(B>A) = 0.9990279 (see test_ranking_stats);
    # Holm over the 2 ordered pairs: 0.0025262 and 0.9990279 → A significantly better than B.
    # Significant in Dice_ET and HD95_ET (the other four are all-NA: no non-zero difference, p = 1),
    # at both institutions → significant[A][B] = 2 × 2 = 4.
    result = rank({"X": inst("X", twelve_cases()), "Y": inst("Y", twelve_cases())})
    assert result.adjusted_pvalues["X"][DICE_ET][("A", "B")] == pytest.approx(0.002526174268502165)
    assert result.adjusted_pvalues["X"][HD_ET][("B", "A")] == pytest.approx(0.999027927919626)
    assert result.adjusted_pvalues["X"][("Dice", "TC")][("A", "B")] == 1.0
    assert result.significant == {"A": {"A": 0, "B": 4}, "B": {"A": 0, "B": 0}}
    assert result.significant_wins == {"A": 4, "B": 0}


def test_test_based_ranks_by_significant_wins() -> None:
    # Dice_ET and HD95_ET: A beats B significantly → A 1, B 2; other four: 0 wins each → 1, 1.
    # Score A 1, B (2+2+4)/6 = 4/3 → A first.
    result = rank({"X": inst("X", twelve_cases())}, "testBased")
    assert subranks(result, "X", DICE_ET) == {"A": 1, "B": 2}
    assert subranks(result, "X", HD_ET) == {"A": 1, "B": 2}
    assert result.institution_scores["X"] == pytest.approx({"A": 1.0, "B": 4 / 3})
    assert result.final_rank == {"A": 1.0, "B": 2.0}


def test_four_cases_are_never_significant() -> None:
    # Best possible raw p with 4 cases is 0.050174 > 0.05 (Holm only raises it): no wins, testBased all tie.
    result = rank({"X": inst("X", twelve_cases(4))}, "testBased")
    assert result.adjusted_pvalues["X"][DICE_ET][("A", "B")] == pytest.approx(2 * 0.050174123231145375)
    assert result.significant_wins == {"A": 0, "B": 0}
    assert result.final_rank == {"A": 1.5, "B": 1.5}


def test_holm_over_all_six_ordered_pairs_of_three_algorithms() -> None:
    # Dice_ET over 12 cases: A = 0.5 + i/32, B = 0.25 + i/64, C = 0.125 + i/128 (i = 1..12).
    # Each better pair wins all 12 cases with distinct margins: raw p = 0.0012631 for (A,B), (A,C), (B,C)
    # and 0.9990279 for the reverse pairs. Holm with m = 6: 6p = 0.0075785, 5p = 0.0063154, 4p = 0.0050523
    # → cummax 0.0075785 for all three; the reverse pairs 3 × 0.999 → capped at 1.
    cases = {f"c{i}": dice_et(A=0.5 + i / 32, B=0.25 + i / 64, C=0.125 + i / 128) for i in range(1, 13)}
    result = rank({"X": inst("X", cases)}, "testBased")
    adjusted = result.adjusted_pvalues["X"][DICE_ET]
    for pair in [("A", "B"), ("A", "C"), ("B", "C")]:
        assert adjusted[pair] == pytest.approx(6 * 0.0012630871342510825)
    for pair in [("B", "A"), ("C", "A"), ("C", "B")]:
        assert adjusted[pair] == 1.0
    # Wins A 2, B 1, C 0 → sub-ranks A 1, B 2, C 3.
    assert subranks(result, "X", DICE_ET) == {"A": 1, "B": 2, "C": 3}
    assert result.significant_wins == {"A": 2, "B": 1, "C": 0}


def test_unknown_method_and_no_institutions_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="unknown ranking method 'best'"):
        rank({"X": inst("X", TIES)}, "best")
    with pytest.raises(SpecError, match="no institutions"):
        rank({})


def test_single_algorithm_ranks_first() -> None:
    result = rank({"X": inst("X", {"c": dice_et(A=0.5)})})
    assert result.final_rank == {"A": 1.0}
    assert result.significant == {"A": {"A": 0}}


def test_csv_contents(tmp_path: Path) -> None:
    # The "missing at one institution" example: final A 1 (1.5), C 2 (2), B 3 (2.5); rows by final rank.
    x = inst("X", {"x1": {"A": full(0.75), "B": full(0.5)}})
    y = inst("Y", {"y1": {"A": full(0.75), "B": full(0.5), "C": full(0.875)}})
    paths = write_csvs(rank({"X": x, "Y": y}), tmp_path / "out")
    assert [p.name for p in paths] == [
        "final_ranks_rankThenMean.csv",
        "per_institute_ranks_rankThenMean.csv",
        "significant_matrix_rankThenMean.csv",
    ]
    assert paths[0].read_text() == (
        "algorithm,final_rank,final_score,score_X,score_Y,significant_wins\nA,1,1.5,1,2,0\nC,2,2,3,1,0\nB,3,2.5,2,3,0\n"
    )
    assert paths[1].read_text() == (
        "institution,algorithm,Dice_ET,Dice_TC,Dice_WT,Hausdorff95_ET,Hausdorff95_TC,Hausdorff95_WT,"
        "institution_score\n"
        "X,A,1,1,1,1,1,1,1\n"
        "X,C,3,3,3,3,3,3,3\n"
        "X,B,2,2,2,2,2,2,2\n"
        "Y,A,2,2,2,2,2,2,2\n"
        "Y,C,1,1,1,1,1,1,1\n"
        "Y,B,3,3,3,3,3,3,3\n"
    )
    assert paths[2].read_text() == "algorithm,A,C,B\nA,0,0,0\nC,0,0,0\nB,0,0,0\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)


def test_csv_fractional_ranks_scores_and_significance(tmp_path: Path) -> None:
    # Tie example: A and C share final rank 1.5 (ordered by name), B 3 with score 4/3.
    first = write_csvs(rank({"X": inst("X", TIES)}), tmp_path)
    assert first[0].read_text() == (
        "algorithm,final_rank,final_score,score_X,significant_wins\n"
        "A,1.5,1,1,0\n"
        "C,1.5,1,1,0\n"
        "B,3,1.3333333333333333,1.3333333333333333,0\n"
    )
    # Twelve-case example, testBased: the matrix holds the counts; rewriting replaces files atomically.
    paths = write_csvs(rank({"X": inst("X", twelve_cases())}, "testBased"), tmp_path)
    assert paths[2].read_text() == "algorithm,A,B\nA,0,2\nB,0,0\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_methods_and_public_names() -> None:
    assert METHODS == (
        "rankThenMean",
        "rankThenMedian",
        "aggregateThenMean",
        "aggregateThenMedian",
        "testBased",
    )
    assert sorted(ranking.__all__) == sorted(
        [
            "ALPHA",
            "BRATS2025_METRICS",
            "DEFAULT_METHOD",
            "FETS_SCHEME",
            "METHODS",
            "METRICS",
            "NA_FILL",
            "REGIONS",
            "SUBRANKINGS",
            "InstitutionResults",
            "RankingResult",
            "Scheme",
            "SubRanking",
            "brats2025_scheme",
            "detect_scheme",
            "holm_adjust",
            "load_institutions",
            "rank",
            "rank_average",
            "rank_min",
            "wilcoxon_greater_p",
            "wilcoxon_greater_p_columns",
            "write_csvs",
        ]
    )
    for name in ranking.__all__:
        assert getattr(ranking, name) is not None
