"""BraTS 2025 metrics as ``brats-evaluate`` + ``brats-parse-metrics seg`` compute them (docs/metrics.md).

The reference (``brats-evaluation`` 0.0.10 on ``panoptica`` 2.1.7) scores each region of a configuration:
26-connected components of prediction and truth, a one-to-one maximum bipartite matching on Dice
(``scipy.optimize.linear_sum_assignment`` on the cost ``1 - Dice`` where Dice >= 1e-6, ``1 + 1e-6``
elsewhere; a pair is a match when its cost is below 1), then per region:

- ``all_instance_{tp,fp,fn,prec,rec,f1}``: matches, unmatched predictions, unmatched truths, tp/n_pred,
  tp/n_ref (NaN when the denominator is 0) and tp / (tp + (fp + fn) / 2) (0 when tp = 0 and something
  exists, NaN when nothing does);
- ``lesionwise_{dsc,nsd,hd95}_{mean,std}``: mean and population std over the *matched* pairs only; with no
  match the mean is Dice 0, NSD 0, HD95 inf (NaN when the region is empty in both) and the std NaN;
- ``global_{dsc,nsd,hd95}``: on the region masks; masks without a common voxel give Dice 0, NSD 0, HD95 inf
  (NaN when both are empty); the parser writes an infinite *global* HD95 as 373 (not the lesion-wise one).

Surfaces are ``mask ^ binary_erosion(mask, 6-connectivity)``, distances Euclidean between surface voxels,
HD95 MedPy's pooled 95th percentile. Two quirks of the reference are kept on purpose, since they decide the
numbers: (1) it reads NIfTI through SimpleITK, whose array is ``(z, y, x)`` while the spacing it passes is
``(x, y, z)``, so we work on ``label.T`` with the header spacing as given; (2) the *global* NSD and HD95 are
computed without spacing (voxel units, NSD tolerance 0.5 voxel: only coincident surface voxels count),
while the per-instance ones use the spacing and the tolerance ``min(spacing)``.

Work is confined to the bounding box of both volumes' non-zero voxels (plus a background ring), overlaps
come from one ``bincount`` of label pairs, per-pair metrics run on the pair's own box, and the NSD is
counted with shifted surface masks (a surface voxel is within ``min(spacing)`` of the other surface exactly
when that surface holds it or a face neighbour along an axis of minimal spacing), so no distance transform
is needed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from fedsim.errors import SpecError
from fedsim.metrics.brats import encode_regions
from fedsim.metrics.hausdorff import PAD, crop_padded, hd95_surfaces, nonzero_box, union_box

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Box = tuple[slice, ...]
    Mask = NDArray[np.bool_]

__all__ = [
    "BRATS2025_CONFIGS",
    "BRATS2025_REGIONS",
    "HD95_INF",
    "MATCHING_THRESHOLD",
    "brats2025_columns",
    "brats2025_label_values",
    "brats2025_metrics",
    "brats2025_regions",
]

#: The bundled configurations of brats-evaluation 0.0.10 (``configs/config_<name>.yaml``): region → labels,
#: in the configuration's order. All share the matcher, metrics and edge-case handling.
BRATS2025_CONFIGS: dict[str, dict[str, tuple[int, ...]]] = {
    "gli": {"snfh": (2,), "et": (3,), "netc": (1,), "rc": (4,), "tc": (1, 3), "wt": (1, 2, 3)},
    "mets": {"et": (3,), "rc": (4,), "tc": (1, 3), "wt": (1, 2, 3)},
    "ped": {"et": (1,), "netc": (2,), "cc": (3,), "ed": (4,), "tc": (1, 2, 3), "wt": (1, 2, 3, 4)},
    "MenRT": {"gtv": (1,)},
    "MenPre": {"et": (3,), "tc": (1, 3), "wt": (1, 2, 3)},
    "GoAT": {"et": (3,), "tc": (1, 3), "wt": (1, 2, 3)},
}
BRATS2025_REGIONS = BRATS2025_CONFIGS["gli"]
#: What ``brats-parse-metrics`` writes for an infinite global HD95, and for any HD95 of a missing case.
HD95_INF = 373.0
MATCHING_THRESHOLD = 1e-6
_UNMATCHED_COST = 1.0 + 1e-6
_FULL = np.ones((3, 3, 3), dtype=bool)  # cc3d's default 26-connectivity
_COUNTS = ("tp", "fp", "fn")
_RATES = ("prec", "rec", "f1")
_GLOBAL = ("dsc", "nsd", "hd95")


def _config(params: Mapping[str, Any] | None) -> dict[str, tuple[int, ...]]:
    p = dict(params or {})
    unknown = set(p) - {"config"}
    if unknown:
        raise SpecError(f"unknown brats2025 parameter(s): {sorted(unknown)}; known: config", field="brats2025")
    name = str(p.get("config") or "gli")
    if name not in BRATS2025_CONFIGS:
        raise SpecError(
            f"unknown brats2025 config {name!r}; choose one of {', '.join(BRATS2025_CONFIGS)}",
            field="brats2025.config",
        )
    return BRATS2025_CONFIGS[name]


def brats2025_regions(params: Mapping[str, Any] | None = None) -> list[str]:
    """Region names of the configuration ``params['config']`` (default ``gli``), in its order."""
    return list(_config(params))


def brats2025_label_values(params: Mapping[str, Any] | None = None) -> tuple[int, ...]:
    """Label values a prediction may hold under this configuration: 0 and every region's labels."""
    return tuple(sorted({0, *(v for labels in _config(params).values() for v in labels)}))


def brats2025_columns(params: Mapping[str, Any] | None = None) -> list[str]:
    """The columns ``brats-parse-metrics seg`` writes per case, in its order (without ``subject_id``)."""
    return _columns_of(brats2025_regions(params))


def _missing_row(regions: Sequence[str]) -> dict[str, float | int | bool]:
    """The parser's row for a case without a prediction: 0 everywhere, 373 for every non-std HD95."""
    row: dict[str, float | int | bool] = {}
    for r in regions:
        row.update({f"all_instance_{k}_{r}": 0 for k in _COUNTS})
        row.update({f"all_instance_{k}_{r}": 0.0 for k in _RATES})
        row.update({f"global_{k}_{r}": HD95_INF if k == "hd95" else 0.0 for k in _GLOBAL})
        for k in _GLOBAL:
            row[f"lesionwise_{k}_mean_{r}"] = HD95_INF if k == "hd95" else 0.0
            row[f"lesionwise_{k}_std_{r}"] = 0.0
    row["missing_pred"] = True
    return row


def _columns_of(regions: Sequence[str]) -> list[str]:
    out: list[str] = []
    for r in regions:
        out += [f"all_instance_{k}_{r}" for k in (*_COUNTS, *_RATES)]
        out += [f"global_{k}_{r}" for k in _GLOBAL]
        out += [f"lesionwise_{k}_{s}_{r}" for k in _GLOBAL for s in ("mean", "std")]
    return out


def _border(mask: Mask) -> Mask:
    """``mask ^ binary_erosion(mask, cross)`` of a C-contiguous mask whose outer voxel layer is background."""
    core = (slice(1, -1),) * 3
    inner = mask[core]
    eroded = inner.copy()
    for ax in range(3):
        for start in (0, 2):
            idx = [slice(1, -1)] * 3
            idx[ax] = slice(start, mask.shape[ax] - 2 + start)
            eroded &= mask[tuple(idx)]
    out = np.zeros_like(mask)
    out[core] = inner & ~eroded
    return out


def _within(border_a: Mask, border_b: Mask, axes: Sequence[int]) -> int:
    """Surface voxels of A at distance <= min(spacing) of B's surface: on it, or a face neighbour of it along
    one of ``axes`` (those of minimal spacing). Both borders have a background ring, so nothing wraps."""
    near = border_b.copy()
    for ax in axes:
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        near[tuple(lo)] |= border_b[tuple(hi)]
        near[tuple(hi)] |= border_b[tuple(lo)]
    return int(np.count_nonzero(border_a & near))


def _nsd(br: Mask, bp: Mask, axes: Sequence[int]) -> float:
    """Panoptica's NSD from the surfaces (:func:`_border`) of two ringed masks; ``axes`` empty means the
    0.5-voxel tolerance (coincidence only)."""
    n_a, n_b = int(np.count_nonzero(br)), int(np.count_nonzero(bp))
    in_a, in_b = _within(br, bp, axes), _within(bp, br, axes)
    # the reference's arithmetic, in its order
    tp_a, tp_b = in_a / n_a, in_b / n_b
    fp, fn = (n_a - in_a) / n_a, (n_b - in_b) / n_b
    return (tp_a + tp_b) / (tp_a + tp_b + fp + fn + sys.float_info.min)


def _empty_region() -> dict[str, float | int]:
    nan = math.nan
    out: dict[str, float | int] = {"tp": 0, "fp": 0, "fn": 0, "prec": nan, "rec": nan, "f1": nan}
    out.update({f"global_{k}": nan for k in _GLOBAL})
    out.update({f"{k}_{s}": nan for k in _GLOBAL for s in ("mean", "std")})
    return out


def _label(mask: Mask) -> tuple[NDArray[np.int32], int]:
    """26-connected components; an empty mask (one side of a region is often empty in a blob) costs nothing."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32), 0
    labels, n = ndimage.label(mask, structure=_FULL)
    return labels, int(n)


class _Side:
    """The components of one side (prediction or truth) of one region, numbered as the reference numbers them:
    in raster order of each component's first voxel over the whole (z, y, x) array, as ``cc3d`` and
    ``ndimage.label`` do; ``where[g]`` = (blob, local label) of global component ``g``."""

    def __init__(self) -> None:
        self.first: list[tuple[int, int, int]] = []
        self.where: list[tuple[int, int]] = []
        self.size: list[int] = []

    def add(self, blob: int, offset: Sequence[int], labels: NDArray[np.int32], n: int) -> list[Box | None]:
        boxes: list[Box | None] = ndimage.find_objects(labels)  # None only for a label that is absent
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        for c in range(1, n + 1):
            b = boxes[c - 1]
            assert b is not None  # labels 1..n are all present
            plane = labels[b[0].start, b[1], b[2]] == c
            j, k = np.unravel_index(int(np.argmax(plane)), plane.shape)
            self.first.append(
                (offset[0] + b[0].start, offset[1] + b[1].start + int(j), offset[2] + b[2].start + int(k))
            )
            self.where.append((blob, c))
            self.size.append(int(sizes[c]))
        return boxes

    def order(self) -> dict[tuple[int, int], int]:
        """(blob, local label) -> global label (1-based)."""
        ranks = sorted(range(len(self.first)), key=self.first.__getitem__)
        return {self.where[g]: i + 1 for i, g in enumerate(ranks)}


def region_metrics(
    pred: Mask,
    truth: Mask,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    blobs: Sequence[tuple[Box, Mask]] | None = None,
) -> dict[str, float | int]:
    """One region's values (keys ``tp fp fn prec rec f1 global_* <metric>_{mean,std}``) for boolean masks that
    carry a background ring of :data:`~fedsim.metrics.hausdorff.PAD` voxels; ``spacing`` per array axis.

    ``blobs``: (padded box, membership mask in that box) of each 26-connected component of everything
    non-zero in either volume; every component of a region lies in one blob, so labelling and overlaps are
    done per blob, on a fraction of the voxels (default: the whole array as one blob)."""
    if blobs is None:
        blobs = [(tuple(slice(0, n) for n in truth.shape), np.ones(truth.shape, dtype=bool))]
    return _region([(box, truth[box] & member, pred[box] & member) for box, member in blobs], spacing)


def _region(
    per_blob: Sequence[tuple[Box, Mask, Mask]], spacing: Sequence[float]
) -> dict[str, float | int]:
    """:func:`region_metrics` from each blob's (box, truth mask, prediction mask), already restricted to it."""
    per_blob = [(box, t, p) for box, t, p in per_blob if t.any() or p.any()]
    if not per_blob:
        return _empty_region()
    sides = (_Side(), _Side())  # reference, prediction
    local: list[tuple[NDArray[np.int32], NDArray[np.int32], list[Box | None], list[Box | None], NDArray[np.int64]]] = []
    n_inter = n_ref_vox = n_pred_vox = 0
    border_counts = [0, 0, 0]  # |dT|, |dP|, |dT & dP|
    borders: list[tuple[Box, Mask, Mask]] = []  # per blob: box, dT, dP
    for b, (box, t, p) in enumerate(per_blob):
        ref_cc, n_r = _label(t)
        pred_cc, n_p = _label(p)
        offset = [sl.start for sl in box]
        ref_boxes = sides[0].add(b, offset, ref_cc, n_r)
        pred_boxes = sides[1].add(b, offset, pred_cc, n_p)
        both = t & p
        inter: NDArray[np.int64] = np.zeros((n_r + 1, n_p + 1), dtype=np.int64)
        if n_r and n_p:
            codes = ref_cc[both].astype(np.int64) * (n_p + 1) + pred_cc[both]
            inter = np.bincount(codes, minlength=(n_r + 1) * (n_p + 1)).reshape(n_r + 1, n_p + 1)
        local.append((ref_cc, pred_cc, ref_boxes, pred_boxes, inter))
        n_inter += int(np.count_nonzero(both))
        n_ref_vox += sum(sides[0].size[-n_r:]) if n_r else 0
        n_pred_vox += sum(sides[1].size[-n_p:]) if n_p else 0
        bt, bp = _border(t), _border(p)
        borders.append((box, bt, bp))
        border_counts[0] += int(np.count_nonzero(bt))
        border_counts[1] += int(np.count_nonzero(bp))
        border_counts[2] += int(np.count_nonzero(bt & bp))
    n_r, n_p = len(sides[0].size), len(sides[1].size)
    ref_id, pred_id = sides[0].order(), sides[1].order()
    matches: list[tuple[int, int]] = []
    if n_r and n_p:
        inter_all = np.zeros((n_r, n_p), dtype=np.int64)
        for b, (_, _, _, _, inter) in enumerate(local):
            rr, pp = np.nonzero(inter[1:, 1:])
            for i, j in zip(rr.tolist(), pp.tolist(), strict=True):
                inter_all[ref_id[(b, i + 1)] - 1, pred_id[(b, j + 1)] - 1] = inter[i + 1, j + 1]
        ref_size = np.zeros(n_r)
        pred_size = np.zeros(n_p)
        for g, key in enumerate(sides[0].where):
            ref_size[ref_id[key] - 1] = sides[0].size[g]
        for g, key in enumerate(sides[1].where):
            pred_size[pred_id[key] - 1] = sides[1].size[g]
        dice = 2.0 * inter_all / (ref_size[:, None] + pred_size[None, :])
        cost = np.where((inter_all > 0) & (dice >= MATCHING_THRESHOLD), 1.0 - dice, _UNMATCHED_COST)
        rows, cols = linear_sum_assignment(cost)
        matches = [(int(i) + 1, int(j) + 1) for i, j in zip(rows, cols, strict=True) if cost[i, j] < 1.0]
    tp = len(matches)
    fp, fn = n_p - tp, n_r - tp
    s = tuple(float(x) for x in spacing)
    min_axes = [ax for ax in range(3) if s[ax] == min(s)]
    hd_spacing = None if s == (1.0, 1.0, 1.0) else s  # unit sampling is voxel units: the fast exact path
    out: dict[str, float | int] = {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "prec": tp / n_p if n_p else math.nan,
        "rec": tp / n_r if n_r else math.nan,
        "f1": tp / (tp + 0.5 * fp + 0.5 * fn) if tp else 0.0,
    }
    # global: on the whole region masks, in voxel units (the reference passes no spacing here)
    if n_inter == 0:
        out.update({"global_dsc": 0.0, "global_nsd": 0.0, "global_hd95": math.inf})
    else:
        out["global_dsc"] = 2 * n_inter / (n_ref_vox + n_pred_vox)
        n_a, n_b, both_b = border_counts[0], border_counts[1], border_counts[2]
        tp_a, tp_b = both_b / n_a, both_b / n_b
        fp_a, fn_b = (n_a - both_b) / n_a, (n_b - both_b) / n_b
        out["global_nsd"] = (tp_a + tp_b) / (tp_a + tp_b + fp_a + fn_b + sys.float_info.min)
        # blobs hold whole 26-components, so the region's surface is its blobs' surfaces side by side
        out["global_hd95"] = hd95_surfaces(*_pasted(borders), None)
    # lesion-wise: the matched pairs, in reference-label order, each on its own box
    ref_of = {g: key for key, g in ref_id.items()}
    pred_of = {g: key for key, g in pred_id.items()}
    scores: dict[str, list[float]] = {"dsc": [], "nsd": [], "hd95": []}
    for ref_g, pred_g in sorted(matches):
        (b, lr), (_, lp) = ref_of[ref_g], pred_of[pred_g]
        ref_cc, pred_cc, ref_boxes, pred_boxes, inter = local[b]
        pair = union_box(ref_boxes[lr - 1], pred_boxes[lp - 1])
        assert pair is not None
        rm = crop_padded(ref_cc, pair) == lr
        pm = crop_padded(pred_cc, pair) == lp
        scores["dsc"].append(2 * int(inter[lr, lp]) / (int(np.count_nonzero(rm)) + int(np.count_nonzero(pm))))
        br, bp = _border(rm), _border(pm)
        scores["nsd"].append(_nsd(br, bp, min_axes))
        scores["hd95"].append(hd95_surfaces(br, bp, hd_spacing))
    for metric, values in scores.items():
        if values:
            out[f"{metric}_mean"] = float(np.average(values))
            out[f"{metric}_std"] = float(np.std(values))
        else:
            out[f"{metric}_mean"] = math.inf if metric == "hd95" else 0.0
            out[f"{metric}_std"] = math.nan
    return out


def _pasted(per_blob: Sequence[tuple[Box, Mask, Mask]]) -> tuple[Mask, Mask]:
    """Per-blob truth and prediction masks (or their surfaces) pasted on the union of the blobs' boxes."""
    box = union_box(*(b for b, _, _ in per_blob))
    assert box is not None
    shape = tuple(sl.stop - sl.start for sl in box)
    t_all, p_all = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    for b, t, p in per_blob:
        at = tuple(slice(x.start - o.start, x.stop - o.start) for x, o in zip(b, box, strict=True))
        t_all[at] |= t
        p_all[at] |= p
    return t_all, p_all


def _blobs(code_p: NDArray[np.uint8], code_t: NDArray[np.uint8]) -> list[tuple[Box, Mask]]:
    """(box grown by PAD, membership) of groups of whole 26-connected components of what is non-zero in either
    volume: the components of its 2×2×2 block-OR. Two 26-neighbours fall into the same or 26-adjacent blocks,
    so every component lies in one group; labelling an eighth of the voxels is what makes this cheap."""
    mask = (code_p | code_t) != 0
    shape = mask.shape
    pooled = np.zeros(tuple((n + 1) // 2 for n in shape), dtype=bool)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                part = mask[i::2, j::2, k::2]
                pooled[: part.shape[0], : part.shape[1], : part.shape[2]] |= part
    low, _ = ndimage.label(pooled, structure=_FULL)
    out = []
    for c, box in enumerate(ndimage.find_objects(low), start=1):
        full = tuple(slice(sl.start * 2, min(sl.stop * 2, n)) for sl, n in zip(box, shape, strict=True))
        grown = tuple(slice(max(f.start - PAD, 0), min(f.stop + PAD, n)) for f, n in zip(full, shape, strict=True))
        block = low[box] == c
        for ax in range(3):
            block = np.repeat(block, 2, axis=ax)
        member = np.zeros(tuple(g.stop - g.start for g in grown), dtype=bool)
        at = tuple(slice(f.start - g.start, f.stop - g.start) for f, g in zip(full, grown, strict=True))
        member[at] = block[tuple(slice(0, f.stop - f.start) for f in full)]
        out.append((grown, member))
    return out


def brats2025_metrics(
    pred: NDArray[np.generic] | None,
    truth: NDArray[np.generic],
    params: Mapping[str, Any] | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> dict[str, float | int | bool]:
    """The ``brats-parse-metrics seg`` columns of one case (plus ``missing_pred``).

    ``pred`` and ``truth`` are label volumes in NIfTI (x, y, z) order as :func:`~fedsim.metrics.nifti.load_label`
    returns them, ``spacing`` the header's (x, y, z) spacing; ``pred=None`` (missing, unreadable or
    misaligned) gives the parser's row for a missing case. ``params``: ``{"config": "gli"}`` (default) or
    another bundled configuration.
    """
    regions = _config(params)
    truth = np.asarray(truth)
    if pred is None or np.shape(pred) != truth.shape:
        return _missing_row(list(regions))
    pred = np.asarray(pred)
    # SimpleITK's (z, y, x) view of the volume, with the (x, y, z) spacing as the reference applies it
    p_t, t_t = pred.T, truth.T
    box = nonzero_box(p_t, t_t)
    if box is None:
        box = tuple(slice(0, 1) for _ in range(3))
    code_p = encode_regions(crop_padded(p_t, box, PAD), regions)
    code_t = encode_regions(crop_padded(t_t, box, PAD), regions)
    coded = [
        (box, np.where(member, code_t[box], 0), np.where(member, code_p[box], 0))
        for box, member in _blobs(code_p, code_t)
    ]
    row: dict[str, float | int | bool] = {}
    for bit, name in enumerate(regions):
        m = np.uint8(1 << bit)
        r = _region([(box, (ct & m) != 0, (cp & m) != 0) for box, ct, cp in coded], spacing)
        for k in _COUNTS:
            row[f"all_instance_{k}_{name}"] = int(r[k])
        for k in _RATES:
            row[f"all_instance_{k}_{name}"] = float(r[k])
        for k in _GLOBAL:
            v = float(r[f"global_{k}"])
            row[f"global_{k}_{name}"] = HD95_INF if k == "hd95" and math.isinf(v) else v
        for k in _GLOBAL:
            for s in ("mean", "std"):
                row[f"lesionwise_{k}_{s}_{name}"] = float(r[f"{k}_{s}"])
    row["missing_pred"] = False
    return row
