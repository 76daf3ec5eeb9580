"""Region-growing brain-tumour segmentation: z-scores, seeds and 3D hysteresis thresholds.

A second participant's model, deliberately unlike the baseline (which bias-corrects and thresholds on
median ratios): every modality is z-scored over the brain with sigma-clipped statistics, the tumour is grown
from the brightest FLAIR region, and every threshold is a fraction of the contrast of that region, so scale,
offset and contrast changes between sites cancel out. Standalone: numpy, scipy and nibabel only (works with
Debian bookworm's numpy 1.24, scipy 1.10, nibabel 5.0).
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

MODALITIES = ("t1", "t1ce", "t2", "flair")

SEED_PERCENTILE = 99.9  # the brightest 0.1 % of the brain's FLAIR: inside any glioma worth the name
WT_HIGH = 0.75  # FLAIR seeds: at least this fraction of the seed region's contrast over the brain
WT_LOW = 0.45  # FLAIR growth: about half the contrast, i.e. the 50 % partial-volume edge
ET_HIGH = 3.0  # T1ce seeds (z over the brain): the enhancing rim is far brighter than white matter
ET_LOW_FRAC = 0.5  # T1ce growth: half-way between the tumour's T1ce median and the seeds' level
MIN_SEED_VOXELS = 10
_CONN6 = ndimage.generate_binary_structure(3, 1)
_CONN26 = ndimage.generate_binary_structure(3, 3)


def find_cases(data_path: Path) -> dict[str, dict[str, Path]]:
    """Map case id → modality → file, for ``<case>/<case>_brain_<mod>.nii.gz`` (or without ``_brain``)."""
    cases: dict[str, dict[str, Path]] = {}
    for case_dir in sorted(p for p in data_path.iterdir() if p.is_dir()):
        case = case_dir.name
        files: dict[str, Path] = {}
        for mod in MODALITIES:
            for stem in (f"{case}_brain_{mod}", f"{case}_{mod}"):
                for ext in (".nii.gz", ".nii"):
                    candidate = case_dir / f"{stem}{ext}"
                    if candidate.is_file():
                        files.setdefault(mod, candidate)
        if len(files) == len(MODALITIES):
            cases[case] = files
    return cases


def zscore(img: np.ndarray, brain: np.ndarray, sigma: float) -> np.ndarray:
    """Lightly smoothed z-scores over the brain, with sigma-clipped mean and std.

    Clipping keeps the tumour (and CSF) from inflating the std, so a small and a large tumour end up on the
    same scale; smoothing first keeps site noise from dominating that std.
    """
    img = img.astype(np.float32)
    if sigma > 0:
        img = ndimage.gaussian_filter(img, sigma)
    values = img[brain]
    mean, std = float(values.mean()), float(values.std())
    for _ in range(5):
        kept = values[np.abs(values - mean) < 2.5 * std]
        if kept.size < 100:
            break
        mean, std = float(kept.mean()), float(kept.std())
    z = (img - np.float32(mean)) / np.float32(std if std > 0 else 1.0)
    z[~brain] = 0
    return z


def hysteresis(image: np.ndarray, low: float, high: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Voxels above ``low`` that are 26-connected to a voxel above ``high`` (3D region growing)."""
    grow = image > low
    if mask is not None:
        grow &= mask
    labels, n = ndimage.label(grow, structure=_CONN26)
    if n == 0:
        return grow
    seeded = np.unique(labels[grow & (image > high)])
    return np.isin(labels, seeded[seeded > 0])


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margin`` voxels (the morphology runs on the crop: faster)."""
    idx = np.nonzero(mask)
    return tuple(
        slice(max(0, int(i.min()) - margin), min(n, int(i.max()) + margin + 1))
        for i, n in zip(idx, mask.shape, strict=True)
    )


def _brightest_region(z: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The connected part of the brightest FLAIR voxels with the largest total brightness."""
    cut = float(np.percentile(z[brain], SEED_PERCENTILE))
    labels, n = ndimage.label((z >= cut) & brain, structure=_CONN26)
    if n == 0:
        return np.zeros_like(brain)
    mass = ndimage.sum_labels(z, labels, index=np.arange(1, n + 1))
    return labels == int(np.argmax(mass)) + 1


def segment(volumes: dict[str, np.ndarray]) -> np.ndarray:
    """Labels {0, 1, 2, 4} (necrosis, oedema, enhancing) from the four modalities."""
    shape = volumes["t1"].shape
    brain = np.zeros(shape, dtype=bool)
    for mod in MODALITIES:
        brain |= volumes[mod] > 0
    seg = np.zeros(shape, dtype=np.uint8)
    if brain.sum() < 1000:
        return seg
    inner = ndimage.binary_erosion(brain, structure=_CONN6, iterations=2)  # no partial-volume rim
    flair = zscore(volumes["flair"], inner, sigma=1.0)
    t1ce = zscore(volumes["t1ce"], inner, sigma=0.5)  # the rim is thin: blur it only a little

    seeds = _brightest_region(flair, inner)
    if seeds.sum() < MIN_SEED_VOXELS:
        return seg
    level = float(np.median(flair[seeds]))
    if level <= 0:
        return seg
    # Whole tumour: FLAIR grown from the seeds, keeping only what connects to the brightest region.
    wt = hysteresis(flair, WT_LOW * level, WT_HIGH * level, mask=brain)
    labels, _ = ndimage.label(wt, structure=_CONN26)
    wt = np.isin(labels, np.unique(labels[seeds & wt]))
    if not wt.any():
        return seg
    box = _bbox(wt, margin=4)
    wt, t1ce_b, brain_b = wt[box], t1ce[box], brain[box]
    near = ndimage.binary_dilation(wt, structure=_CONN6, iterations=2) & brain_b

    # Enhancing tumour: T1ce grown from its brightest voxels near the FLAIR region. The core (dark on
    # FLAIR relative to oedema) can sit outside the FLAIR mask, so the rim is searched in a dilated shell.
    et = np.zeros_like(wt)
    et_seeds = (t1ce_b > ET_HIGH) & near
    if et_seeds.sum() >= MIN_SEED_VOXELS:
        base = float(np.median(t1ce_b[wt]))
        top = float(np.median(t1ce_b[et_seeds]))
        et = hysteresis(t1ce_b, base + ET_LOW_FRAC * (top - base), ET_HIGH, mask=near)
    # Necrosis: the dark holes the enhancing rim encloses (3D, then slice by slice for open rims).
    closed = ndimage.binary_closing(et, structure=_CONN6, iterations=2)
    core = ndimage.binary_fill_holes(closed)
    for k in range(core.shape[2]):
        core[:, :, k] |= ndimage.binary_fill_holes(closed[:, :, k])
    necrosis = core & ~et & brain_b
    wt = ndimage.binary_fill_holes(ndimage.binary_closing(wt | core, structure=_CONN6, iterations=1)) & brain_b

    out = np.zeros(wt.shape, dtype=np.uint8)
    out[wt] = 2
    out[necrosis] = 1
    out[et] = 4
    seg[box] = out
    return seg


# Label conventions the model can write: FeTS/BraTS 2021 (1 necrosis, 2 oedema, 4 enhancing) or BraTS 2025
# (1 NETC, 2 SNFH, 3 ET; 4 is the resection cavity, which this model does not predict).
LABEL_CONVENTIONS = ("fets", "brats2025")


def segment_case(files: dict[str, Path], out_file: Path, labels: str = "fets") -> None:
    """Segment one case and write ``out_file`` atomically, on the grid and affine of its T1."""
    ref = nib.load(str(files["t1"]))
    volumes = {mod: np.asarray(nib.load(str(path)).dataobj, dtype=np.float32) for mod, path in files.items()}
    seg = segment(volumes)
    if labels == "brats2025":
        seg[seg == 4] = 3  # enhancing tumour is label 3 in BraTS 2025
    header = ref.header.copy()
    header.set_data_dtype(np.uint8)
    header["scl_slope"] = 1.0
    header["scl_inter"] = 0.0
    img = nib.Nifti1Image(seg, ref.affine, header)
    tmp = out_file.with_name(f".{out_file.name[: -len('.nii.gz')]}.part.nii.gz")
    nib.save(img, str(tmp))
    os.replace(tmp, out_file)
