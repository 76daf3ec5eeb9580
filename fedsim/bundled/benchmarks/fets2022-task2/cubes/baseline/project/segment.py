"""Classical brain-tumour segmentation: per-case normalisation, thresholds and morphology.

A participant's model, standalone: numpy, scipy and nibabel only (works with Debian bookworm's numpy 1.24,
scipy 1.10, nibabel 5.0). Every threshold is relative to the case's own normal-appearing brain, after a
smooth bias-field correction, so global scale, offset, contrast and bias changes between sites cancel out.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

MODALITIES = ("t1", "t1ce", "t2", "flair")

# Thresholds on intensities divided by the median of the (bias-corrected) brain.
FLAIR_WT = 1.40  # oedema and tumour are bright on FLAIR
T2_WT = 1.15  # ...and on T2 (guards FLAIR false positives in grey matter)
T1CE_ET = 1.45  # enhancing rim is bright on T1ce
MIN_COMPONENT_VOXELS = 20
_BALL = ndimage.generate_binary_structure(3, 1)


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


def _coords(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Broadcastable coordinates in [-1, 1] per axis."""
    return [
        np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape([-1 if a == i else 1 for a in range(3)])
        for i, n in enumerate(shape)
    ]


def _poly_terms(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> list[np.ndarray]:
    """Second-order polynomial basis (10 terms); a bias field is that smooth over a brain."""
    return [np.ones_like(x), x, y, z, x * x, y * y, z * z, x * y, x * z, y * z]


def bias_correct(img: np.ndarray, brain: np.ndarray, stride: int = 3) -> np.ndarray:
    """Divide out a smooth multiplicative field fitted to log-intensities of normal-looking brain.

    Voxels far from the median (tumour, CSF) are excluded, and the fit is repeated once without the
    outliers of the first fit, so the tumour does not pull the field.
    """
    sub = (slice(None, None, stride),) * 3
    mask = brain[sub]
    values = img[sub][mask]
    if values.size < 50:
        return img
    xs, ys, zs = (c[sub] for c in _coords(img.shape))
    idx = np.nonzero(mask)
    x, y, z = xs.ravel()[idx[0]], ys.ravel()[idx[1]], zs.ravel()[idx[2]]
    design = np.stack(_poly_terms(x, y, z), axis=1).astype(np.float64)
    logv = np.log(np.maximum(values, 1e-3)).astype(np.float64)
    keep = np.abs(logv - np.median(logv)) < 0.35
    coef = np.zeros(design.shape[1])
    for _ in range(3):
        if keep.sum() < design.shape[1] * 5:
            return img
        coef, *_ = np.linalg.lstsq(design[keep], logv[keep], rcond=None)
        resid = logv - design @ coef
        keep = np.abs(resid - np.median(resid[keep])) < 0.25
    coef[0] = 0.0  # keep the global level; only the spatial variation is removed
    x, y, z = _coords(img.shape)
    field = np.float32(0.0)
    for c, term in zip(coef, _poly_terms(x, y, z), strict=True):
        field = field + np.float32(c) * term
    return img * np.exp(-field).astype(np.float32)


def normalise(img: np.ndarray, brain: np.ndarray, smooth: bool = True) -> np.ndarray:
    """Bias-corrected intensities divided by the median of the brain, optionally lightly denoised."""
    img = bias_correct(img.astype(np.float32), brain)
    med = float(np.median(img[brain])) if brain.any() else 1.0
    img = img / np.float32(med if med > 0 else 1.0)
    if smooth:
        img = ndimage.uniform_filter(img, size=3)  # separable 3³ mean: cheap noise suppression
    img[~brain] = 0
    return img


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margin`` voxels (morphology runs on the crop only: faster)."""
    idx = np.nonzero(mask)
    return tuple(
        slice(max(0, int(i.min()) - margin), min(n, int(i.max()) + margin + 1))
        for i, n in zip(idx, mask.shape, strict=True)
    )


def _pick_component(candidate: np.ndarray, support: np.ndarray) -> np.ndarray:
    """The most plausible tumour component: the largest one, preferring those with enhancing voxels."""
    labels, n = ndimage.label(candidate, structure=_BALL)
    if n == 0:
        return candidate
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    enhancing = np.bincount(labels.ravel(), weights=support.ravel(), minlength=n + 1)
    sizes[0] = 0
    score = sizes * (1.0 + (enhancing > 5))
    best = int(np.argmax(score))
    if sizes[best] < MIN_COMPONENT_VOXELS:
        return np.zeros_like(candidate)
    return labels == best


def segment(volumes: dict[str, np.ndarray]) -> np.ndarray:
    """Labels {0, 1, 2, 4} (necrosis, oedema, enhancing) from the four modalities."""
    shape = volumes["t1"].shape
    brain = np.zeros(shape, dtype=bool)
    for mod in MODALITIES:
        brain |= volumes[mod] > 0
    seg = np.zeros(shape, dtype=np.uint8)
    if brain.sum() < 100:
        return seg
    brain = ndimage.binary_erosion(brain, structure=_BALL, iterations=1)  # drop the partial-volume rim
    flair = normalise(volumes["flair"], brain)
    t2 = normalise(volumes["t2"], brain)
    t1ce = normalise(volumes["t1ce"], brain, smooth=False)  # the rim is thin: do not blur it away

    wt_cand = (flair > FLAIR_WT) & (t2 > T2_WT)
    et_cand = (t1ce > T1CE_ET) & brain
    if not wt_cand.any():
        return seg
    box = _bbox(wt_cand, margin=3)
    wt = ndimage.binary_opening(wt_cand[box], structure=_BALL)
    et_box = et_cand[box]
    wt = _pick_component(wt | (et_box & ndimage.binary_dilation(wt, _BALL, 2)), et_box)
    if not wt.any():
        return seg
    wt = ndimage.binary_closing(wt, structure=_BALL, iterations=2)
    wt = ndimage.binary_fill_holes(wt) & brain[box]

    et = et_box & wt
    et = ndimage.binary_opening(et, structure=_BALL) if et.sum() > 200 else et
    # Tumour core: what the enhancing rim encloses (necrosis is dark on T1ce and sits inside the rim).
    core = ndimage.binary_fill_holes(ndimage.binary_closing(et, structure=_BALL, iterations=2)) & wt
    necrosis = core & ~et & (t1ce[box] < 1.1)
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
