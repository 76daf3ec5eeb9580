"""The BraTS 2025 set on hand-built cases: each edge the reference handles specially, with its exact value.

The differential test against the real package is tests/integration/test_brats2025_reference.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsim.errors import SpecError
from fedsim.metrics import brats2025_columns, brats2025_metrics
from fedsim.metrics.brats2025 import HD95_INF, brats2025_label_values, region_metrics

SHAPE = (30, 30, 20)


def _vol(*boxes: tuple[tuple[slice, ...], int]) -> np.ndarray:
    v = np.zeros(SHAPE, np.uint8)
    for box, label in boxes:
        v[box] = label
    return v


A = np.s_[5:10, 5:10, 5:10]
B = np.s_[18:24, 18:24, 10:16]


def test_columns_are_the_parsers() -> None:
    cols = brats2025_columns()
    assert len(cols) == 6 * 15 and cols[:3] == ["all_instance_tp_snfh", "all_instance_fp_snfh", "all_instance_fn_snfh"]
    assert "lesionwise_hd95_std_wt" in cols and "global_nsd_rc" in cols
    assert brats2025_columns({"config": "MenRT"})[-1] == "lesionwise_hd95_std_gtv"
    assert brats2025_label_values() == (0, 1, 2, 3, 4) and brats2025_label_values({"config": "MenRT"}) == (0, 1)


def test_perfect_match_one_missed_one_spurious() -> None:
    truth = _vol((A, 3), (B, 3))
    pred = _vol((A, 3), (np.s_[20:22, 2:4, 2:4], 3))
    m = brats2025_metrics(pred, truth)
    assert (m["all_instance_tp_et"], m["all_instance_fp_et"], m["all_instance_fn_et"]) == (1, 1, 1)
    assert m["all_instance_prec_et"] == 0.5 and m["all_instance_rec_et"] == 0.5 and m["all_instance_f1_et"] == 0.5
    # lesion-wise: only the matched pair counts (unlike BraTS 2023, misses and spurious ones do not)
    assert m["lesionwise_dsc_mean_et"] == 1.0 and m["lesionwise_hd95_mean_et"] == 0.0
    assert m["lesionwise_nsd_mean_et"] == pytest.approx(1.0) and m["lesionwise_dsc_std_et"] == 0.0
    assert 0 < m["global_dsc_et"] < 1 and m["missing_pred"] is False


def test_both_empty_is_nan_and_empty_prediction_is_zero_inf() -> None:
    truth = _vol((A, 2))
    m = brats2025_metrics(np.zeros(SHAPE, np.uint8), truth)
    # et: nothing in either → NaN everywhere but the counts
    assert m["all_instance_tp_et"] == 0 and math.isnan(m["all_instance_f1_et"])
    assert math.isnan(m["global_dsc_et"]) and math.isnan(m["lesionwise_hd95_mean_et"])
    # snfh: a lesion nobody found → 0 / inf lesion-wise (inf kept), 373 globally, NaN precision and std
    assert m["all_instance_fn_snfh"] == 1 and math.isnan(m["all_instance_prec_snfh"])
    assert m["all_instance_rec_snfh"] == 0.0 and m["all_instance_f1_snfh"] == 0.0
    assert m["lesionwise_dsc_mean_snfh"] == 0.0 and math.isinf(m["lesionwise_hd95_mean_snfh"])
    assert math.isnan(m["lesionwise_dsc_std_snfh"]) and m["global_hd95_snfh"] == HD95_INF


def test_disjoint_masks_are_the_zero_tp_edge_case_globally() -> None:
    m = brats2025_metrics(_vol((B, 1)), _vol((A, 1)))
    assert m["global_dsc_netc"] == 0.0 and m["global_nsd_netc"] == 0.0 and m["global_hd95_netc"] == HD95_INF
    assert (m["all_instance_fp_netc"], m["all_instance_fn_netc"]) == (1, 1)


def test_split_lesion_matches_one_half_only() -> None:
    truth = _vol((np.s_[5:15, 5:10, 5:10], 2))
    pred = _vol((np.s_[5:9, 5:10, 5:10], 2), (np.s_[10:15, 5:10, 5:10], 2))
    m = brats2025_metrics(pred, truth)
    assert (m["all_instance_tp_snfh"], m["all_instance_fp_snfh"]) == (1, 1)
    assert m["lesionwise_dsc_mean_snfh"] == pytest.approx(2 * 250 / (500 + 250))  # the larger half wins


def test_missing_prediction_row() -> None:
    m = brats2025_metrics(None, _vol((A, 3)))
    assert m["missing_pred"] is True
    assert m["global_hd95_wt"] == HD95_INF and m["lesionwise_hd95_mean_wt"] == HD95_INF
    assert m["lesionwise_hd95_std_wt"] == 0.0 and m["all_instance_tp_wt"] == 0 and m["global_dsc_wt"] == 0.0


def test_spacing_follows_the_references_axis_order() -> None:
    """The reference applies the (x, y, z) spacing to SimpleITK's (z, y, x) array: z's spacing lands on x."""
    truth = _vol((np.s_[5:15, 5:15, 5:15], 2))
    pred = _vol((np.s_[7:15, 5:15, 5:15], 2))  # off by two voxels along x
    iso = region_metrics(*(np.pad(v.T == 2, 2) for v in (pred, truth)))
    m = brats2025_metrics(pred, truth, spacing=(1.0, 1.0, 3.0))
    assert iso["hd95_mean"] == pytest.approx(2.0)
    assert m["lesionwise_hd95_mean_snfh"] == pytest.approx(6.0)  # x distances scaled by z's 3 mm
    assert m["global_hd95_snfh"] == pytest.approx(2.0)  # global metrics ignore the spacing


def test_unknown_configuration_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="unknown brats2025 config 'xyz'"):
        brats2025_metrics(None, _vol((A, 1)), {"config": "xyz"})
    with pytest.raises(SpecError, match="known: config"):
        brats2025_metrics(None, _vol((A, 1)), {"threshold": 1})


@pytest.mark.parametrize("seed", range(6))
def test_blob_grouping_gives_the_whole_volume_values(seed: int) -> None:
    """Components one or two voxels apart share a 2×2×2 block group or not: either way every column equals
    the one computed on the whole volume as a single blob."""
    from fedsim.metrics.brats2025 import BRATS2025_REGIONS
    from fedsim.metrics.hausdorff import PAD

    rng = np.random.default_rng(seed)
    truth, pred = np.zeros((40, 36, 24), np.uint8), np.zeros((40, 36, 24), np.uint8)
    for vol in (truth, pred):
        for _ in range(int(rng.integers(3, 9))):
            lo = rng.integers(1, [34, 30, 18])
            size = rng.integers(1, 6, 3)
            vol[lo[0] : lo[0] + size[0], lo[1] : lo[1] + size[1], lo[2] : lo[2] + size[2]] = rng.integers(1, 5)
    spacing = (1.0, 1.0, 1.5) if seed % 2 else (1.0, 1.0, 1.0)
    row = brats2025_metrics(pred, truth, None, spacing)
    for region, labels in BRATS2025_REGIONS.items():
        t = np.pad(np.isin(truth.T, labels), PAD)
        p = np.pad(np.isin(pred.T, labels), PAD)
        whole = region_metrics(p, t, spacing)
        assert row[f"all_instance_tp_{region}"] == whole["tp"] and row[f"all_instance_fn_{region}"] == whole["fn"]
        for key, col in (("dsc_mean", "lesionwise_dsc_mean"), ("nsd_mean", "lesionwise_nsd_mean"),
                         ("hd95_mean", "lesionwise_hd95_mean"), ("global_dsc", "global_dsc")):  # fmt: skip
            a, b = float(whole[key]), float(row[f"{col}_{region}"])
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12), (region, key)
