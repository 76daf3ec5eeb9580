"""A skull-stripped, BraTS-like brain phantom with one glioma: four modalities and a label map.

Anatomy and tumour are built from continuous distance fields perturbed by smooth noise, so tissue
fractions come out soft (partial volume) without any full-resolution 3-D filtering; every smooth field is
drawn on a coarse grid and upsampled with ``scipy.ndimage.zoom``. That keeps a full 240×240×155 case to
about a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from .shift import SiteShift, apply_shift

if TYPE_CHECKING:
    from numpy.typing import NDArray

    F32 = NDArray[np.float32]

__all__ = ["FULL_SHAPE", "MODALITIES", "synthesize_case"]

FULL_SHAPE: tuple[int, int, int] = (240, 240, 155)
MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

# Relative tissue intensities per modality, roughly as they look in BraTS (WM of T1 = 1).
# Columns: WM, GM, CSF, oedema, enhancing tumour, necrosis.
_TISSUE = {
    "t1": (1.00, 0.72, 0.30, 0.62, 0.70, 0.42),
    "t1ce": (1.00, 0.74, 0.32, 0.66, 1.75, 0.38),
    "t2": (0.55, 0.80, 1.70, 1.35, 1.00, 1.55),
    "flair": (0.72, 0.88, 0.25, 1.55, 1.15, 0.95),
}
# Scanner units per modality, so the stored int16 ranges look like raw BraTS values.
_UNITS = {"t1": 600.0, "t1ce": 800.0, "t2": 1100.0, "flair": 500.0}
_PHANTOM_NOISE = 0.015  # intrinsic noise of the phantom (a real scan is never noise-free)


def _ramp(x: F32, edge: float, width: float) -> F32:
    """Soft membership: 1 well below ``edge``, 0 well above, linear over ``width`` (partial volume)."""
    out = (np.float32(edge + width / 2) - x) / np.float32(width)
    np.clip(out, 0, 1, out=out)
    return out


def _interp_matrix(n_out: int, n_in: int) -> F32:
    """Dense linear-interpolation weights mapping ``n_in`` coarse samples onto ``n_out`` (ends aligned)."""
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    w = np.zeros((n_out, n_in), dtype=np.float32)
    w[np.arange(n_out), lo] = 1.0 - frac
    w[np.arange(n_out), lo + 1] = frac
    return w


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cell: float) -> F32:
    """Zero-mean, unit-std smooth noise with correlation length ~``cell`` voxels.

    Drawn on a coarse grid and upsampled trilinearly as three small matrix products (separable), which is
    several times faster than ``ndimage.zoom`` on a full volume and gives the same field.
    """
    low = tuple(max(2, int(np.ceil(n / cell)) + 1) for n in shape)
    coarse = ndimage.gaussian_filter(rng.standard_normal(low).astype(np.float32), 0.8, mode="wrap")
    coarse -= coarse.mean()
    std = float(coarse.std())
    if std > 0:
        coarse /= np.float32(std)
    wx, wy, wz = (_interp_matrix(n, m) for n, m in zip(shape, low, strict=True))
    field = coarse @ wz.T  # (a, b, Z)
    field = np.einsum("yb,abz->ayz", wy, field, optimize=True)  # (a, Y, Z)
    field = (wx @ field.reshape(low[0], -1)).reshape(shape)  # (X, Y, Z)
    return np.ascontiguousarray(field, dtype=np.float32)


def _grid(shape: tuple[int, ...], centre: NDArray[np.float64], radii: NDArray[np.float64]) -> list[F32]:
    """Broadcastable normalised coordinates (x - c) / r per axis."""
    return [
        ((np.arange(n, dtype=np.float32) - np.float32(c)) / np.float32(r)).reshape(
            [-1 if a == i else 1 for a in range(3)]
        )
        for i, (n, c, r) in enumerate(zip(shape, centre, radii, strict=True))
    ]


def _ellipsoid_distance(shape: tuple[int, ...], centre: NDArray[np.float64], radii: NDArray[np.float64]) -> F32:
    """Normalised ellipsoidal radius (1 on the surface), float32."""
    x, y, z = _grid(shape, centre, radii)
    dist: F32 = np.sqrt(x * x + y * y + z * z)
    return dist


def _anatomy(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[NDArray[np.bool_], F32, F32]:
    """Brain mask plus soft GM and CSF fractions (WM is the rest)."""
    scale = np.array(shape, dtype=np.float64) / np.array(FULL_SHAPE)
    size = np.array(shape, dtype=np.float64)
    centre = size / 2 + rng.uniform(-0.02, 0.02, 3) * size
    radii = np.array([0.30, 0.36, 0.42]) * size * rng.uniform(0.94, 1.06, 3)
    r = _ellipsoid_distance(shape, centre, radii)
    cell = max(3.0, 14.0 * float(scale.mean()))
    surface = _smooth_noise(rng, shape, cell * 2)
    r *= np.float32(1.0) + np.float32(0.035) * surface  # wobbly, but smooth, brain outline
    brain = r < 1.0
    depth = np.float32(1.0) - r  # 0 at the surface, ~1 at the centre

    # Cortical folding: the zero level set of a smooth noise field is a set of thin, curved sheets, which
    # under the surface look like sulci (CSF lines) lined with grey matter on both sides.
    folds = _smooth_noise(rng, shape, cell * 0.6)
    near_surface = _ramp(depth, 0.16, 0.06)
    fold_dist = np.abs(folds)
    gm = _ramp(depth - np.float32(0.04) * folds, 0.07, 0.04)  # cortical ribbon of varying thickness
    np.maximum(gm, _ramp(fold_dist, 0.7, 0.3) * near_surface, out=gm)
    # Deep grey nuclei (thalamus / basal ganglia), one per hemisphere.
    for side in (-1.0, 1.0):
        c = centre + np.array([side * 0.28, 0.05, -0.05]) * radii
        gm = np.maximum(gm, _ramp(_ellipsoid_distance(shape, c, radii * np.array([0.16, 0.2, 0.16])), 1.0, 0.3))
    # CSF: a thin outer rim plus the sulci.
    csf = _ramp(depth, 0.02, 0.025)
    np.maximum(csf, _ramp(fold_dist, 0.12, 0.12) * near_surface, out=csf)
    # Lateral ventricles: two elongated, slightly curved ellipsoids next to the midline.
    for side in (-1.0, 1.0):
        c = centre + np.array([side * 0.13, 0.0, 0.12]) * radii
        vr = radii * np.array([0.09, 0.40, 0.16]) * rng.uniform(0.85, 1.15, 3)
        x, y, z = _grid(shape, c, vr)
        bend = np.float32(0.8) * y * y  # curve the horn downwards at both ends
        vent = np.sqrt(x * x + y * y + (z + bend) ** 2)
        csf = np.maximum(csf, _ramp(vent, 1.0, 0.35))
    return brain, gm, csf


def _tumour(
    rng: np.random.Generator, shape: tuple[int, int, int], brain: NDArray[np.bool_]
) -> tuple[tuple[slice, ...], F32, F32, F32]:
    """One glioma inside the brain: soft oedema, enhancing and necrosis fractions on a bounding box."""
    scale = np.array(shape, dtype=np.float64) / np.array(FULL_SHAPE)
    radius = rng.uniform(10.0, 30.0)
    radii = radius * scale * rng.uniform(0.8, 1.2, 3)
    # Pick a centre well inside the brain: a voxel whose distance to the outside exceeds ~60 % of the radius.
    inside = ndimage.distance_transform_edt(brain[::2, ::2, ::2]) * 2
    candidates = np.argwhere(inside >= max(2.0, 0.6 * float(radii.mean())))
    if candidates.size == 0:
        candidates = np.argwhere(inside >= inside.max())
    centre = candidates[rng.integers(len(candidates))] * 2 + rng.uniform(0, 2, 3)
    margin = np.ceil(radii * 1.45 + 2).astype(int)
    lo = np.maximum(0, np.floor(centre).astype(int) - margin)
    hi = np.minimum(shape, np.floor(centre).astype(int) + margin + 1)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    sub = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    d = _ellipsoid_distance(sub, centre - lo, radii)
    cell = max(2.0, float(radii.mean()) * 0.5)
    # Oedema spreads irregularly (finger-like along white matter): a strong but bounded boundary
    # perturbation, so the tumour never reaches the edge of its box.
    wobble: F32 = np.tanh(_smooth_noise(rng, sub, cell) * np.float32(0.6))
    edema = _ramp(d - np.float32(0.3) * wobble, 1.0, 0.12)
    core_r = rng.uniform(0.4, 0.6)
    bumps: F32 = np.tanh(_smooth_noise(rng, sub, cell))
    core_d = d - np.float32(0.08) * bumps
    core = _ramp(core_d, core_r, 0.08)
    necrosis = _ramp(core_d, core_r * rng.uniform(0.45, 0.7), 0.08)
    enhancing = core - necrosis  # the enhancing rim is the core minus its necrotic centre
    np.maximum(edema, core, out=edema)  # the core always sits inside the oedema (nested labels)
    inside_brain = brain[box].astype(np.float32)
    return box, edema * inside_brain, enhancing * inside_brain, necrosis * inside_brain


def _cavity(
    seed: int, chance: float, core: F32, support: F32
) -> F32 | None:
    """A post-operative resection cavity (soft fraction on the tumour's box) for a ``chance`` share of cases.

    Drawn from its own stream (``[seed, 2025]``), so a case without one is exactly the case synthesised
    without the option. The cavity is an ellipsoid of about the core's size, set off-centre in the core: the
    resected part of the tumour, with residual core and oedema around it.
    """
    if chance <= 0:
        return None
    rng = np.random.default_rng([int(seed), 2025])
    if rng.random() >= chance:
        return None
    weight = core if core.sum() >= 1 else support
    if weight.sum() < 1:
        return None
    idx = np.indices(weight.shape, dtype=np.float32).reshape(3, -1)
    w = weight.reshape(-1)
    centre = (idx @ w) / np.float32(w.sum())
    radius = max(1.5, float((3 * float(weight.sum()) / (4 * np.pi)) ** (1 / 3)))
    radii = radius * rng.uniform(0.7, 1.0, 3)
    centre = centre + rng.uniform(-0.5, 0.5, 3) * radius
    box = (int(weight.shape[0]), int(weight.shape[1]), int(weight.shape[2]))
    return _ramp(_ellipsoid_distance(box, centre, radii), 1.0, 0.15) * support


def synthesize_case(
    seed: int,
    shape: tuple[int, ...] = FULL_SHAPE,
    shift: SiteShift = SiteShift(),  # noqa: B008  (frozen dataclass: a safe default)
    labels: str = "fets",
    resection_cavity: float = 0.0,
) -> dict[str, NDArray[np.integer[Any]]]:
    """One case: ``{"t1","t1ce","t2","flair"}`` as int16 and ``"seg"`` as uint8.

    ``labels="fets"``: {0, 1 necrosis, 2 oedema, 4 enhancing}; ``"brats2025"``: {0, 1 NETC, 2 SNFH, 3 ET,
    4 RC}, where a ``resection_cavity`` share of the cases gets a CSF-like cavity (label 4) in the tumour.
    Anatomy and tumour depend only on ``(seed, shape)``; the shift's randomness (bias field, noise) comes
    from an independent stream, so the same seed at two sites gives the same patient seen by two scanners.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be 3-D with every side >= 8, got {shape}")
    if labels not in ("fets", "brats2025"):
        raise ValueError(f"labels must be 'fets' or 'brats2025', got {labels!r}")
    if resection_cavity > 0 and labels != "brats2025":
        raise ValueError("a resection cavity has a label only in the brats2025 convention")
    anatomy_seq, noise_seq = np.random.SeedSequence(int(seed)).spawn(2)
    rng = np.random.default_rng(anatomy_seq)
    noise_rng = np.random.default_rng(noise_seq)

    brain, gm, csf = _anatomy(rng, shape)
    box, edema, enhancing, necrosis = _tumour(rng, shape, brain)
    texture = _smooth_noise(rng, shape, max(2.0, 5.0 * float(np.mean(shape) / np.mean(FULL_SHAPE))))
    cavity = _cavity(seed, resection_cavity, enhancing + necrosis, brain[box].astype(np.float32))

    tumour = edema  # fraction of the voxel occupied by any tumour tissue
    images: dict[str, F32] = {}
    for name in MODALITIES:
        wm_i, gm_i, csf_i, ed_i, et_i, nec_i = _TISSUE[name]
        img = np.float32(wm_i) + np.float32(gm_i - wm_i) * gm
        img += (np.float32(csf_i) - img) * csf
        region = img[box]
        # Tumour composition inside its support: oedema where neither core part is.
        ed_only = np.clip(tumour - enhancing - necrosis, 0, 1)
        region *= np.float32(1.0) - tumour
        region += ed_only * np.float32(ed_i) + enhancing * np.float32(et_i) + necrosis * np.float32(nec_i)
        if cavity is not None:  # fluid: CSF-like in every modality
            region *= np.float32(1.0) - cavity
            region += cavity * np.float32(csf_i)
        img *= np.float32(1.0) + np.float32(0.03) * texture
        img += np.float32(_PHANTOM_NOISE) * noise_rng.standard_normal(shape, dtype=np.float32)
        img *= np.float32(_UNITS[name])
        img[~brain] = 0
        images[name] = img

    images = apply_shift(images, brain, shift, noise_rng)

    out: dict[str, NDArray[np.integer[Any]]] = {}
    for name in MODALITIES:
        img = images[name]
        np.clip(img, 1, 32767, out=img)  # keep brain voxels non-zero: background is exactly the outside
        img[~brain] = 0
        out[name] = np.rint(img).astype(np.int16)

    seg = np.zeros(shape, dtype=np.uint8)
    sub = seg[box]
    sub[edema >= 0.5] = 2
    sub[(enhancing + necrosis >= 0.5) & (enhancing >= necrosis)] = 4
    sub[(enhancing + necrosis >= 0.5) & (necrosis > enhancing)] = 1
    if labels == "brats2025":
        sub[sub == 4] = 3  # ET
        if cavity is not None:
            sub[cavity >= 0.5] = 4  # RC
    seg[~brain] = 0
    out["seg"] = seg
    return out
