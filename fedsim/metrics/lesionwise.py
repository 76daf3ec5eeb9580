"""BraTS 2023 lesion-wise metrics (after rachitsaluja/BraTS-2023-Metrics), computed on crops.

Semantics of the public evaluation, per region:

- regions from label values (default ET={3}, TC={1,3}, WT={1,2,3});
- 26-connected components of truth and prediction;
- the truth is dilated ``dilation_iterations`` times (structure ``generate_binary_structure(3, 2)`` as in the
  reference) and truth components whose dilations touch are merged into one GT lesion;
- a GT lesion's matches are the predicted components touching its dilation; its Dice and HD95 are taken
  against the union of those components (no match: Dice 0, HD95 374);
- predicted components matching no GT lesion are false positives (Dice 0, HD95 374 each);
- GT lesions of at most ``min_lesion_size`` voxels are left out of the score (their matches are still not
  false positives);
- score = sum over kept GT lesions and FPs / (kept GT lesions + FPs); nothing to score → Dice 1, HD95 0.

HD95 is the reference's: DeepMind's surface-distance definition (surfel-area weighted, larger of the two
directed 95th percentiles, spacing 1 mm), computed on the lesion pair's crop by :mod:`fedsim.metrics.surface`.
The BraTS 2021 set keeps MedPy's definition (:mod:`fedsim.metrics.hausdorff`). Deviation: this set's
voxel-wise (legacy) keys come from :func:`~fedsim.metrics.brats.case_metrics`, so their HD95 is MedPy's too,
whereas the reference's ``Legacy_HD95`` uses surface-distance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from fedsim.metrics.brats import HD95_PENALTY, case_metrics, encode_regions, penalty_row
from fedsim.metrics.hausdorff import bounding_box, nonzero_box, union_box
from fedsim.metrics.surface import hd95_cropped

if TYPE_CHECKING:
    from numpy.typing import NDArray

BRATS2023_REGIONS: dict[str, tuple[int, ...]] = {"ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}
DEFAULTS: dict[str, Any] = {"dilation_iterations": 3, "min_lesion_size": 50, "labels": BRATS2023_REGIONS}
_FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity for components
_DILATE = ndimage.generate_binary_structure(3, 2)  # what the reference dilates with


def _params(params: Mapping[str, Any] | None) -> tuple[int, int, dict[str, tuple[int, ...]]]:
    p = dict(DEFAULTS)
    p.update({k: v for k, v in (params or {}).items() if v is not None})
    unknown = set(p) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown lesion-wise parameter(s): {sorted(unknown)}")
    labels = {
        str(k): tuple(int(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
        for k, v in dict(p["labels"]).items()
    }
    dil, min_size = int(p["dilation_iterations"]), int(p["min_lesion_size"])
    if dil < 0 or min_size < 0:
        raise ValueError("dilation_iterations and min_lesion_size must be >= 0")
    return dil, min_size, labels


def region_lesionwise(
    pred: NDArray[np.bool_], truth: NDArray[np.bool_], dilation_iterations: int = 3, min_lesion_size: int = 50
) -> dict[str, float | int]:
    """Lesion-wise Dice/HD95 and lesion counts of one region (boolean masks of equal shape)."""
    box = union_box(bounding_box(pred), bounding_box(truth))
    if box is None:
        return {"Dice": 1.0, "Hausdorff95": 0.0, "NumGT": 0, "NumTP": 0, "NumFN": 0, "NumFP": 0}
    # Grow the box so the dilation is never clipped by the crop (the volume edge clips it anyway).
    g = dilation_iterations + 1
    box = tuple(slice(max(s.start - g, 0), min(s.stop + g, n)) for s, n in zip(box, truth.shape, strict=True))
    p = np.ascontiguousarray(pred[box])
    t = np.ascontiguousarray(truth[box])

    pred_cc, n_pred = ndimage.label(p, structure=_FULL)
    if t.any():
        dil = (
            ndimage.binary_dilation(t, structure=_DILATE, iterations=dilation_iterations) if dilation_iterations else t
        )
        dil_cc, n_gt = ndimage.label(dil, structure=_FULL)
    else:
        dil_cc, n_gt = np.zeros(t.shape, dtype=np.int32), 0
    # A merged GT lesion is the truth inside one component of the dilated truth; that component is also
    # exactly the lesion's own dilation, so no per-lesion dilation is needed.
    gt_cc = np.where(t, dil_cc, 0)

    touch = (dil_cc > 0) & (pred_cc > 0)
    pairs = np.unique(dil_cc[touch].astype(np.int64) * (n_pred + 1) + pred_cc[touch])
    matches: dict[int, list[int]] = {}
    for code in pairs.tolist():
        matches.setdefault(code // (n_pred + 1), []).append(code % (n_pred + 1))
    matched_pred = {c for comps in matches.values() for c in comps}
    n_fp = n_pred - len(matched_pred)

    sizes = np.bincount(gt_cc.ravel(), minlength=n_gt + 1)
    gt_slices = ndimage.find_objects(gt_cc)
    pred_slices = ndimage.find_objects(pred_cc)
    dice_sum = hd_sum = 0.0
    kept = tp = 0
    for lesion in range(1, n_gt + 1):
        if sizes[lesion] <= min_lesion_size:
            continue
        kept += 1
        comps = matches.get(lesion)
        if not comps:
            hd_sum += HD95_PENALTY
            continue
        tp += 1
        lbox = union_box(gt_slices[lesion - 1], *(pred_slices[c - 1] for c in comps))
        assert lbox is not None
        gl = gt_cc[lbox] == lesion
        pc = pred_cc[lbox]
        pl = np.isin(pc, comps) if len(comps) > 1 else pc == comps[0]
        inter = int(np.count_nonzero(gl & pl))
        dice_sum += 2.0 * inter / (int(sizes[lesion]) + int(np.count_nonzero(pl)))
        hd_sum += hd95_cropped(gl, pl)  # both non-empty: finite
    denom = kept + n_fp
    if denom == 0:
        dice, hd = 1.0, 0.0
    else:
        dice, hd = dice_sum / denom, (hd_sum + HD95_PENALTY * n_fp) / denom
    return {"Dice": dice, "Hausdorff95": hd, "NumGT": kept, "NumTP": tp, "NumFN": kept - tp, "NumFP": n_fp}


def lesionwise_metrics(
    pred: NDArray[np.generic] | None, truth: NDArray[np.generic], params: Mapping[str, Any] | None = None
) -> dict[str, float | int | bool]:
    """Lesion-wise keys per region plus the voxel-wise (legacy) keys on the same label mapping."""
    dil, min_size, regions = _params(params)
    truth = np.asarray(truth)
    missing = pred is None or np.shape(pred) != truth.shape
    row: dict[str, float | int | bool] = {}
    if missing:
        row.update(penalty_row(int(truth.size), regions))
        code_t = encode_regions(truth, regions)
        for bit, name in enumerate(regions):
            n_gt = region_lesionwise(np.zeros(truth.shape, bool), (code_t & (1 << bit)).astype(bool), dil, min_size)[
                "NumGT"
            ]
            row.update(
                {
                    f"LesionWise_Dice_{name}": 0.0,
                    f"LesionWise_Hausdorff95_{name}": HD95_PENALTY,
                    f"LesionWise_NumGT_{name}": n_gt,
                    f"LesionWise_NumTP_{name}": 0,
                    f"LesionWise_NumFN_{name}": n_gt,
                    f"LesionWise_NumFP_{name}": 0,
                }
            )
        row["missing_pred"] = True
        return row
    assert pred is not None
    pred = np.asarray(pred)
    row.update(case_metrics(pred, truth, regions))
    box = nonzero_box(pred, truth)
    if box is not None:
        # grow by the dilation reach, clipped to the volume (the reference's dilation stops at its edge)
        g = dil + 1
        box = tuple(slice(max(s.start - g, 0), min(s.stop + g, n)) for s, n in zip(box, truth.shape, strict=True))
        code_p = encode_regions(pred[box], regions)
        code_t = encode_regions(truth[box], regions)
    else:
        code_p = code_t = np.zeros((1, 1, 1), dtype=np.uint8)
    for bit, name in enumerate(regions):
        r = region_lesionwise((code_p & (1 << bit)).astype(bool), (code_t & (1 << bit)).astype(bool), dil, min_size)
        for key in ("Dice", "Hausdorff95"):
            row[f"LesionWise_{key}_{name}"] = float(r[key])
        for key in ("NumGT", "NumTP", "NumFN", "NumFP"):
            row[f"LesionWise_{key}_{name}"] = int(r[key])
    row["missing_pred"] = False
    return row


def lesionwise_regions(params: Mapping[str, Any] | None) -> Sequence[str]:
    """Region names the set reports for these parameters."""
    return list(_params(params)[2])
