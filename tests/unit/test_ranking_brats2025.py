"""Ranking over the BraTS 2025 set: lesion-wise Dice and NSD per region, rank-then-aggregate per institution,
then the mean over institutions; detected from the results' keys."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from fedsim.ranking import (
    FETS_SCHEME,
    InstitutionResults,
    brats2025_scheme,
    detect_scheme,
    load_institutions,
    rank,
    write_csvs,
)

REGIONS = ("snfh", "et", "netc", "rc", "tc", "wt")


def _row(dsc: float, nsd: float, **overrides: float) -> dict[str, float]:
    row: dict[str, float] = {}
    for r in REGIONS:
        row[f"lesionwise_dsc_mean_{r}"] = dsc
        row[f"lesionwise_nsd_mean_{r}"] = nsd
        row[f"lesionwise_hd95_mean_{r}"] = 2.0
        row[f"global_dsc_{r}"] = dsc
        row[f"all_instance_tp_{r}"] = 1
    row.update(overrides)
    return row


def test_scheme_is_detected_from_the_keys() -> None:
    inst = InstitutionResults.from_mapping("X", {"c1": {"A": _row(0.9, 0.8)}})
    scheme = detect_scheme({"X": inst})
    assert scheme == brats2025_scheme(REGIONS)
    assert scheme.subrankings[:2] == (("lesionwise_dsc_mean", "snfh"), ("lesionwise_dsc_mean", "et"))
    assert len(scheme.subrankings) == 12
    fets = InstitutionResults.from_mapping("Y", {"c1": {"A": {"Dice_ET": 0.5}}})
    assert detect_scheme({"Y": fets}) is FETS_SCHEME


def test_rank_then_mean_over_regions_and_institutions(tmp_path: Path) -> None:
    # site 1: A better everywhere; site 2: B better in Dice, A in NSD; both sites weigh the same
    s1 = {f"c{i}": {"A": _row(0.9, 0.9), "B": _row(0.5, 0.5)} for i in range(3)}
    s2 = {f"d{i}": {"A": _row(0.4, 0.9), "B": _row(0.8, 0.3)} for i in range(2)}
    for name, data in (("site1", s1), ("site2", s2)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = rank(load_institutions(tmp_path))
    assert result.scheme == "brats2025" and len(result.subrankings) == 12
    assert result.institution_scores["site1"] == {"A": 1.0, "B": 2.0}
    assert result.institution_scores["site2"] == {"A": 1.5, "B": 1.5}
    assert result.final_score == {"A": 1.25, "B": 1.75} and result.algorithms == ("A", "B")
    paths = write_csvs(result, tmp_path / "out")
    header = paths[1].read_text().splitlines()[0]
    assert header.startswith("institution,algorithm,lesionwise_dsc_mean_snfh,lesionwise_dsc_mean_et")


def test_nan_means_nothing_to_find_and_absent_means_no_result() -> None:
    # rc is empty in the truth: A found nothing (NaN lesion-wise, the best), B a false positive (0)
    a = _row(0.8, 0.8, lesionwise_dsc_mean_rc=math.nan, lesionwise_nsd_mean_rc=math.nan)
    b = _row(0.8, 0.8, lesionwise_dsc_mean_rc=0.0, lesionwise_nsd_mean_rc=0.0)
    inst = InstitutionResults.from_mapping("X", {"c1": {"A": a, "B": b}, "c2": {"A": a}})
    scheme = detect_scheme({"X": inst})
    values = inst.values("lesionwise_dsc_mean", "rc", ("A", "B"), scheme)
    assert values.tolist() == [[1.0, 0.0], [1.0, 0.0]]  # B has no result for c2: the worst
    result = rank({"X": inst})
    assert result.final_rank == {"A": 1.0, "B": 2.0}
