"""BraTS 2023 lesion-wise metrics on hand-built cases and against a literal port of the reference.

HD95 values come from DeepMind's ``surface_distance`` package, as in the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import surface_distance
from scipy import ndimage

from fedsim.metrics import lesionwise_metrics

# surface_distance 0.1 reaches correlate/distance_transform_edt through scipy's deprecated submodules
pytestmark = pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")

SHAPE = (40, 40, 40)


def hd95(gt: np.ndarray, pred: np.ndarray) -> float:
    """The reference's lesion HD95: surface_distance's robust Hausdorff at 95 %, spacing 1 mm."""
    sd = surface_distance.compute_surface_distances(gt.astype(bool), pred.astype(bool), (1, 1, 1))
    return float(surface_distance.compute_robust_hausdorff(sd, 95))


def _wt(pred: np.ndarray, truth: np.ndarray, **params: object) -> dict:
    m = lesionwise_metrics(pred, truth, params or None)
    return {k.split("_")[1]: v for k, v in m.items() if k.startswith("LesionWise_") and k.endswith("_WT")}


def _vol(*boxes: tuple[slice, ...], label: int = 2) -> np.ndarray:
    v = np.zeros(SHAPE, np.uint8)
    for box in boxes:
        v[box] = label
    return v


def test_matched_missed_fp_and_small_dropped() -> None:
    a, b = np.s_[5:10, 5:10, 5:10], np.s_[25:30, 25:30, 25:30]  # 125 voxels each
    small = np.s_[30:33, 5:8, 5:8]  # 27 voxels: at most min_lesion_size, dropped
    fp = np.s_[5:9, 30:34, 30:34]
    truth = _vol(a, b, small)
    pred = _vol(a, fp)
    m = _wt(pred, truth)
    assert m == {
        "Dice": pytest.approx(1 / 3),
        "Hausdorff95": pytest.approx((0 + 374 + 374) / 3),
        "NumGT": 2,
        "NumTP": 1,
        "NumFN": 1,
        "NumFP": 1,
    }


def test_split_prediction_touching_one_dilated_lesion() -> None:
    gt = np.s_[10:20, 10:20, 10:20]  # 1000 voxels
    halves = (np.s_[10:20, 10:20, 10:14], np.s_[10:20, 10:20, 16:20])  # two components inside the lesion
    near = np.s_[22:24, 12:14, 12:14]  # outside the lesion, 3 voxels away: inside its dilation
    far = np.s_[25:27, 12:14, 12:14]  # 6 voxels away: a false positive
    truth = _vol(gt)
    pred = _vol(*halves, near, far)
    union = _vol(*halves, near) > 0
    m = _wt(pred, truth)
    lesion_dice = 2 * 800 / (1000 + 808)
    lesion_hd = hd95(truth > 0, union)
    assert m["NumGT"] == 1 and m["NumTP"] == 1 and m["NumFN"] == 0 and m["NumFP"] == 1
    assert m["Dice"] == pytest.approx(lesion_dice / 2)
    assert m["Hausdorff95"] == pytest.approx((lesion_hd + 374) / 2)


def test_lesions_merged_by_dilation() -> None:
    first, second = np.s_[10:13, 10:13, 10:13], np.s_[15:18, 10:13, 10:13]  # 27 voxels each, 2 apart
    truth = _vol(first, second)
    m = _wt(_vol(first), truth)
    assert m["NumGT"] == 1 and m["NumTP"] == 1  # 54 voxels together: kept
    assert m["Dice"] == pytest.approx(2 * 27 / (54 + 27))
    assert m["Hausdorff95"] == pytest.approx(hd95(truth > 0, _vol(first) > 0))
    apart = _vol(first, np.s_[25:28, 10:13, 10:13])
    assert _wt(_vol(first), apart) == {
        "Dice": 1.0,
        "Hausdorff95": 0.0,
        "NumGT": 0,
        "NumTP": 0,
        "NumFN": 0,
        "NumFP": 0,
    }  # two small lesions, both dropped, nothing to score


def test_empty_and_missing() -> None:
    z = np.zeros(SHAPE, np.uint8)
    assert _wt(z, z)["Dice"] == 1.0 and _wt(z, z)["Hausdorff95"] == 0.0
    truth = _vol(np.s_[5:10, 5:10, 5:10])
    m = lesionwise_metrics(None, truth)
    assert m["missing_pred"] is True
    assert m["LesionWise_Dice_WT"] == 0.0 and m["LesionWise_Hausdorff95_WT"] == 374.0
    assert m["LesionWise_NumGT_WT"] == 1 and m["LesionWise_NumFN_WT"] == 1
    assert m["Dice_WT"] == 0.0 and m["Hausdorff95_WT"] == 374.0


def test_regions_and_params() -> None:
    truth = _vol(np.s_[5:10, 5:10, 5:10], label=3)
    m = lesionwise_metrics(truth, truth)
    assert m["LesionWise_Dice_ET"] == m["LesionWise_Dice_TC"] == m["LesionWise_Dice_WT"] == 1.0
    assert m["Dice_ET"] == 1.0  # legacy voxel-wise keys on the 2023 label mapping
    old = _vol(np.s_[5:10, 5:10, 5:10], label=4)
    m = lesionwise_metrics(old, old, {"labels": {"ET": [4], "TC": [1, 4], "WT": [1, 2, 4]}})
    assert m["LesionWise_Dice_ET"] == 1.0 and m["LesionWise_NumGT_ET"] == 1
    assert lesionwise_metrics(old, old, {"min_lesion_size": 200})["LesionWise_NumGT_WT"] == 0
    with pytest.raises(ValueError):
        lesionwise_metrics(old, old, {"dilation": 3})


# ---- a literal (slow, full-volume) port of rachitsaluja/BraTS-2023-Metrics (HD95 by surface_distance) ----


def _reference(pred: np.ndarray, gt: np.ndarray, dil: int = 3, thresh: int = 50) -> dict:
    struct = ndimage.generate_binary_structure(3, 2)
    full = np.ones((3, 3, 3), bool)
    gt_cc, _ = ndimage.label(gt, full)
    pred_cc, _ = ndimage.label(pred, full)
    dil_cc, n_dil = ndimage.label(ndimage.binary_dilation(gt, struct, iterations=dil), full)
    combined = np.zeros_like(dil_cc)
    for comp in range(1, n_dil + 1):
        tmp = (dil_cc == comp).astype(int) * gt_cc
        combined[tmp > 0] = comp
    tp: list[int] = []
    rows = []
    for comp in range(1, combined.max() + 1):
        g = combined == comp
        gd = ndimage.binary_dilation(g, struct, iterations=dil)
        inter = np.unique(pred_cc[gd])
        inter = inter[inter != 0]
        tp.extend(inter.tolist())
        p = np.isin(pred_cc, inter)
        dice = 2 * (g & p).sum() / (g.sum() + p.sum())
        hd = hd95(g, p) if p.any() else 374.0
        rows.append((len(inter), g.sum(), dice, hd))
    fp = np.unique(pred_cc[~np.isin(pred_cc, [*tp, 0])])
    kept = [r for r in rows if r[1] > thresh]
    den = len(kept) + len(fp)
    if den == 0:
        return {"Dice": 1.0, "Hausdorff95": 0.0}
    return {
        "Dice": sum(r[2] for r in kept) / den,
        "Hausdorff95": (sum(r[3] for r in kept) + 374 * len(fp)) / den,
    }


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_port(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (48, 48, 40)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    s = noise.std()
    truth = noise > 2.3 * s  # ~10 separate lesions
    pred = noise + 0.5 * ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) * s > 2.4 * s
    pred[:, :, :8] = False  # misses some lesions
    pred[:2, :2, :2] = True  # a corner FP touching the volume edge
    pred[20:23, 44:48, 36:40] = True  # an FP at another edge
    ours = lesionwise_metrics(pred.astype(np.uint8) * 2, truth.astype(np.uint8) * 2, {"min_lesion_size": 20})
    ref = _reference(pred, truth, thresh=20)
    assert ours["LesionWise_NumGT_WT"] >= 5
    assert ours["LesionWise_Dice_WT"] == pytest.approx(ref["Dice"], abs=1e-9)
    assert ours["LesionWise_Hausdorff95_WT"] == pytest.approx(ref["Hausdorff95"], abs=1e-6)
