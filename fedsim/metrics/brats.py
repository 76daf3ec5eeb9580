"""BraTS 2021 per-case metrics with CaPTk's edge-case semantics (docs/metrics.md).

Work is confined to the bounding box of the non-zero voxels of both volumes: outside it every region is
empty in both, so those voxels only ever add to TN, which is derived as ``voxels - TP - FP - FN``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from fedsim.metrics.hausdorff import PAD, crop_padded, hd95_ringed, nonzero_box

if TYPE_CHECKING:
    from numpy.typing import NDArray

BRATS2021_REGIONS: dict[str, tuple[int, ...]] = {"ET": (4,), "TC": (1, 4), "WT": (1, 2, 4)}
# CaPTk writes the diagonal of the 240x240x155 volume when exactly one of the two masks is empty.
HD95_ONE_EMPTY = 373.128664
# ...and 374 for a prediction it could not use at all.
HD95_PENALTY = 374.0

Metrics = dict[str, "float | int | bool"]


def penalty_row(n_voxels: int, regions: Mapping[str, Sequence[int]] = BRATS2021_REGIONS) -> Metrics:
    """Row for a missing, unreadable or misaligned prediction: worst scores, every voxel a false negative."""
    row: Metrics = {}
    for name in regions:
        row.update(
            {
                f"Dice_{name}": 0.0,
                f"Hausdorff95_{name}": HD95_PENALTY,
                f"Sensitivity_{name}": 0.0,
                f"Specificity_{name}": 0.0,
                f"Precision_{name}": 0.0,
            }
        )
    for name in regions:
        row.update({f"TP_{name}": 0, f"FP_{name}": 0, f"TN_{name}": 0, f"FN_{name}": int(n_voxels)})
    row["missing_pred"] = True
    return row


def encode_regions(labels: NDArray[np.generic], regions: Mapping[str, Sequence[int]]) -> NDArray[np.uint8]:
    """One uint8 per voxel with bit i set when the voxel's label belongs to region i (max 8 regions)."""
    if len(regions) > 8:
        raise ValueError("at most 8 regions")
    if labels.dtype == np.uint8:
        lut = np.zeros(256, dtype=np.uint8)
        for bit, values in enumerate(regions.values()):
            for v in values:
                if 0 <= v <= 255:
                    lut[v] |= 1 << bit
        coded: NDArray[np.uint8] = lut[labels]
        return coded
    code = np.zeros(labels.shape, dtype=np.uint8)
    for bit, values in enumerate(regions.values()):
        code[np.isin(labels, list(values))] |= np.uint8(1 << bit)
    return code


def _region_masks(labels: NDArray[np.generic], regions: Mapping[str, Sequence[int]]) -> list[NDArray[np.bool_]]:
    """One boolean mask per region of a (cropped) label volume (equality tests beat a lookup table)."""
    lo: float = -np.inf
    hi: float = np.inf
    if labels.dtype.kind in "iu":
        info = np.iinfo(cast("np.dtype[np.integer[Any]]", labels.dtype))  # kind i/u: an integer dtype
        lo, hi = info.min, info.max
    out = []
    for values in regions.values():
        mask = np.zeros(labels.shape, dtype=bool)
        for v in values:
            if lo <= v <= hi:  # a value the dtype cannot hold matches nothing
                mask |= labels == v
        out.append(mask)
    return out


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def region_metrics(
    a: NDArray[np.bool_], b: NDArray[np.bool_], n_voxels: int
) -> tuple[dict[str, float], dict[str, int]]:
    """Scores and confusion counts of prediction ``a`` vs truth ``b``: boolean crops holding every voxel of
    both masks and a background ring of ``PAD`` voxels (see :func:`fedsim.metrics.hausdorff.crop_padded`);
    TN is derived from the volume's ``n_voxels``."""
    n_pred = int(np.count_nonzero(a))
    n_true = int(np.count_nonzero(b))
    tp = int(np.count_nonzero(a & b)) if n_pred and n_true else 0
    fp = n_pred - tp
    fn = n_true - tp
    tn = n_voxels - tp - fp - fn
    counts = {"TP": tp, "FP": fp, "TN": tn, "FN": fn}
    if n_pred == 0 and n_true == 0:
        return {
            "Dice": 1.0,
            "Hausdorff95": 0.0,
            "Sensitivity": 1.0,
            "Specificity": 1.0,
            "Precision": float("nan"),
        }, counts
    spec = _ratio(tn, tn + fp)
    if n_true == 0 or n_pred == 0:
        return {
            "Dice": 0.0,
            "Hausdorff95": HD95_ONE_EMPTY,
            "Sensitivity": 0.0,
            "Specificity": spec,
            "Precision": 0.0 if n_pred else float("nan"),
        }, counts
    box = nonzero_box(a, b)
    assert box is not None
    grown = tuple(slice(s.start - PAD, s.stop + PAD) for s in box)  # the ring is inside the crop
    if any(g.start > 0 or g.stop < n for g, n in zip(grown, a.shape, strict=True)):
        a = np.ascontiguousarray(a[grown])
        b = np.ascontiguousarray(b[grown])
    scores = {
        "Dice": 2.0 * tp / (n_pred + n_true),
        "Hausdorff95": hd95_ringed(a, b),
        "Sensitivity": tp / n_true,
        "Specificity": spec,
        "Precision": tp / n_pred,
    }
    return scores, counts


def case_metrics(
    pred: NDArray[np.generic] | None,
    truth: NDArray[np.generic],
    regions: Mapping[str, Sequence[int]] = BRATS2021_REGIONS,
) -> Metrics:
    """Per-region Dice/HD95/sensitivity/specificity/precision and TP/FP/TN/FN; None or a shape mismatch
    scores the penalty row.

    One pass finds the bounding box of every labelled voxel of both volumes; the labels are cropped once
    (with a background ring) and every region's masks, counts and surfaces come from that crop.
    """
    truth = np.asarray(truth)
    n_voxels = int(truth.size)
    if pred is None or np.shape(pred) != truth.shape:
        return penalty_row(n_voxels, regions)
    pred = np.asarray(pred)
    box = nonzero_box(pred, truth)
    if box is None:
        masks_p = masks_t = [np.zeros((1,) * truth.ndim, dtype=bool)] * len(regions)
    else:
        masks_p = _region_masks(crop_padded(pred, box), regions)
        masks_t = _region_masks(crop_padded(truth, box), regions)
    scores: Metrics = {}
    counts: Metrics = {}
    for name, a, b in zip(regions, masks_p, masks_t, strict=True):
        s, c = region_metrics(a, b, n_voxels)
        for key in ("Dice", "Hausdorff95", "Sensitivity", "Specificity", "Precision"):
            scores[f"{key}_{name}"] = float(s[key])
        for key in ("TP", "FP", "TN", "FN"):
            counts[f"{key}_{name}"] = int(c[key])
    scores.update(counts)
    scores["missing_pred"] = False
    return scores
