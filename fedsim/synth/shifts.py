"""Controlled acquisition shifts with severity levels, applied to the four modalities of one case.

Each shift models one way a hospital's scans differ from the training data. Every shift has severity levels
``0..max_level`` (level 0 is the identity) and a seed; the seed picks the *direction* of the shift (which
modality, the sign of a scale, the shape of a bias field, the noise realisation) and the level only its
*magnitude*, so the levels of one seed form a monotone sweep. Labels are never read or changed: any key other
than the four modalities (``seg``) is passed through as the same object. Shape and dtype are kept; background
(voxels that are zero in every modality, i.e. outside the skull-stripped brain) stays zero, except where a
misregistered modality moves its own brain over it.

================  ===  ==================  ==================  ==================  ==================
shift             0    1                   2                   3                   4
================  ===  ==================  ==================  ==================  ==================
intensity         id   ×e^±0.10, ±5 %      ×e^±0.25, ±10 %     ×e^±0.50, ±20 %     ×e^±0.80, ±30 %
bias              id   ±10 %               ±20 %               ±30 %               ±45 %
noise             id   σ = 2 %             σ = 5 %             σ = 10 %            σ = 20 %
thick_slices      id   2 mm, σxy 0.5       3 mm, σxy 0.75      5 mm, σxy 1.0       7 mm, σxy 1.25
gamma             id   γ = e^±0.15         γ = e^±0.30         γ = e^±0.50         γ = e^±0.75
missing           id   1 zeroed            2 zeroed            3 zeroed            -
swap              id   T1↔T1ce             + T2↔FLAIR          T1w↔T2w families    -
misregistration   id   1°, 1 mm            2°, 2 mm            3°, 3 mm            5°, 5 mm
================  ===  ==================  ==================  ==================  ==================

Physical meaning and parameter:

- ``intensity``: scanner gain / reconstruction scaling differs per sequence (MR intensities have no unit):
  per-modality scale e^(±a) and offset ±b of the brain mean.
- ``bias``: receive-coil (B1) inhomogeneity: one smooth multiplicative field, exactly 1 ± a over the brain,
  shared by the four sequences (same coil, same session).
- ``noise``: thermal noise of a magnitude image: Rician (complex Gaussian, then modulus) inside the brain,
  σ in % of each modality's brain mean (at high SNR the measured std is σ).
- ``thick_slices``: a 2-D acquisition with thick slices resampled to 1 mm: each slab of t slices (along z,
  the through-plane axis) is averaged, the slab centres are linearly interpolated back to every slice; plus an
  in-plane Gaussian blur σxy (voxels) for the lower in-plane resolution of fast 2-D sequences.
- ``gamma``: other sequence parameters (TR/TE/TI, flip angle) change tissue contrast non-linearly:
  m·(x/m)^γ per modality around the brain mean m.
- ``missing``: a sequence was not acquired or failed conversion: the modalities drawn by the seed (nested
  across levels) become all zeros.
- ``swap``: mislabelled series (DICOM series description mapped to the wrong modality); the seed is unused.
- ``misregistration``: motion between sequences or failed co-registration: one of T1, T2, FLAIR (seed) is
  rotated about its brain centre by the level in degrees and translated by the level in mm (1 mm voxels);
  T1ce, the BraTS registration target, stays.

``±`` means a sign drawn per modality from the seed. :data:`SHIFTS` holds these values; :func:`shift_table`
renders them (a test keeps this docstring and the code in agreement).

A site's synthetic data can use the same transforms: :func:`apply_shift_list` applies a list of
``{name, level, seed}`` to one case. Imports only numpy, scipy and the stdlib (it runs inside minimal images).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
from scipy import ndimage

from .shift import bias_field

if TYPE_CHECKING:
    from numpy.typing import NDArray

_Scalar = TypeVar("_Scalar", bound=np.generic)  # a case's dtypes are kept: shifted volumes come back as they came

__all__ = [
    "MODALITIES",
    "SHIFTS",
    "Shift",
    "ShiftRef",
    "apply_shift",
    "apply_shift_list",
    "parse_shift_list",
    "shift_table",
]

MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
# float32 working copies of the modalities (the names are real aliases; NDArray is only named as a string)
Images = dict[str, "NDArray[np.float32]"]
_Transform = Callable[[Images, "NDArray[np.bool_]", float, np.random.Generator], Images]


@dataclass(frozen=True)
class Shift:
    """One kind of acquisition shift: its meaning and its parameter at every severity level."""

    name: str
    meaning: str
    parameter: str
    values: tuple[float, ...]
    """The parameter at each level; ``values[0]`` is the identity."""
    labels: tuple[str, ...]
    """Human-readable parameter at each level (the table above)."""
    transform: _Transform

    @property
    def max_level(self) -> int:
        return len(self.values) - 1

    def describe(self, level: int) -> str:
        return "identity" if level == 0 else self.labels[level]


@dataclass(frozen=True)
class ShiftRef:
    """One entry of a shift list (``{name, level, seed}``), as a site or the stress test gives it."""

    name: str
    level: int
    seed: int = 0

    def __post_init__(self) -> None:
        shift = SHIFTS.get(self.name)
        if shift is None:
            raise ValueError(f"unknown shift {self.name!r}; choose one of {', '.join(SHIFTS)}")
        if not 0 <= int(self.level) <= shift.max_level:
            raise ValueError(f"shift {self.name!r} has levels 0..{shift.max_level}, got {self.level}")


# --------------------------------------------------------------------------------------------- helpers


def _brain_mean(img: NDArray[np.float32], brain: NDArray[np.bool_]) -> float:
    values = img[brain]
    mean = float(values.mean()) if values.size else 1.0
    return mean if mean > 0 and math.isfinite(mean) else 1.0


def _signs(rng: np.random.Generator, n: int = len(MODALITIES)) -> NDArray[np.float64]:
    return rng.choice(np.array([-1.0, 1.0]), size=n)


def _finish(
    img: NDArray[np.float32], like: NDArray[_Scalar], brain: NDArray[np.bool_] | None
) -> NDArray[_Scalar]:
    """Back to ``like``'s dtype; with ``brain``, the background is zeroed and (integers) brain voxels kept >= 1,
    so that "non-zero" still means "brain" as after skull stripping."""
    if brain is not None:
        img = np.where(brain, img, np.float32(0))
    if np.issubdtype(like.dtype, np.integer):
        info = np.iinfo(cast("np.dtype[np.integer[Any]]", like.dtype))  # issubdtype: an integer dtype
        out = np.rint(img)
        if brain is not None:
            out[brain] = np.clip(out[brain], max(1, info.min), info.max)
        np.clip(out, info.min, info.max, out=out)
        return np.asarray(out.astype(like.dtype))
    return np.asarray(img.astype(like.dtype, copy=False))


# ------------------------------------------------------------------------------------------ transforms


def _intensity(images: Images, brain: NDArray[np.bool_], level: float, rng: np.random.Generator) -> Images:
    scale_signs, offset_signs = _signs(rng), _signs(rng)
    offset = {1: 0.05, 2: 0.10, 3: 0.20, 4: 0.30}.get(_level_index("intensity", level), 0.0)
    for i, mod in enumerate(MODALITIES):
        img = images[mod]
        m = _brain_mean(img, brain)
        img *= np.float32(math.exp(scale_signs[i] * level))
        img += np.float32(offset_signs[i] * offset * m)
    return images


def _bias(images: Images, brain: NDArray[np.bool_], level: float, rng: np.random.Generator) -> Images:
    field = bias_field(rng, brain.shape)
    inside = field[brain]
    if inside.size:
        lo, hi = float(inside.min()), float(inside.max())
        if hi > lo:  # exactly 1 ± level over the brain
            field -= np.float32((hi + lo) / 2)
            field *= np.float32(2 / (hi - lo))
    field *= np.float32(level)
    field += np.float32(1)
    for mod in MODALITIES:
        images[mod] *= field
    return images


def _noise(images: Images, brain: NDArray[np.bool_], level: float, rng: np.random.Generator) -> Images:
    n = int(brain.sum())
    for mod in MODALITIES:
        img = images[mod]
        sigma = np.float32(level * _brain_mean(img, brain))
        values = img[brain]
        real = values + sigma * rng.standard_normal(n, dtype=np.float32)
        imag = sigma * rng.standard_normal(n, dtype=np.float32)
        img[brain] = np.sqrt(real * real + imag * imag)
    return images


def _thick_slices(images: Images, brain: NDArray[np.bool_], level: float, rng: np.random.Generator) -> Images:
    thickness = round(level)
    sigma_xy = {2: 0.5, 3: 0.75, 5: 1.0, 7: 1.25}.get(thickness, 0.0)
    nz = brain.shape[2]
    phase = int(rng.integers(thickness))  # where the slice grid starts: slabs [phase + k·t, phase + (k+1)·t)
    bounds = np.array(sorted({0, *range(phase, nz, thickness)}))
    counts = np.diff(np.append(bounds, nz)).astype(np.float32)
    centres = bounds + (counts - 1) / 2  # the z each (possibly partial, at the ends) slab is centred on
    pos = np.interp(np.arange(nz, dtype=np.float64), centres, np.arange(centres.size, dtype=np.float64))
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, centres.size - 1)
    w = (pos - lo).astype(np.float32)
    for mod in MODALITIES:
        img = images[mod]
        if sigma_xy > 0:
            img = ndimage.gaussian_filter(img, (sigma_xy, sigma_xy, 0), mode="constant", truncate=3.0)
        slabs = np.add.reduceat(img, bounds, axis=2) / counts  # each thick slice: the mean over its slab
        images[mod] = slabs[:, :, lo] * (np.float32(1) - w) + slabs[:, :, hi] * w
    return images


def _gamma(images: Images, brain: NDArray[np.bool_], level: float, rng: np.random.Generator) -> Images:
    signs = _signs(rng)
    for i, mod in enumerate(MODALITIES):
        img = images[mod]
        m = _brain_mean(img, brain)
        values = np.maximum(img[brain], 0) / np.float32(m)
        values **= np.float32(math.exp(signs[i] * level))
        img[brain] = values * np.float32(m)
    return images


def _missing(images: Images, brain: NDArray[np.bool_], level: float, rng: np.random.Generator) -> Images:
    order = rng.permutation(len(MODALITIES))
    for i in order[: int(level)]:
        images[MODALITIES[i]] = np.zeros_like(images[MODALITIES[i]])
    return images


_SWAPS: dict[int, dict[str, str]] = {  # target modality -> the modality whose image it receives
    1: {"t1": "t1ce", "t1ce": "t1"},
    2: {"t1": "t1ce", "t1ce": "t1", "t2": "flair", "flair": "t2"},
    3: {"t1": "t2", "t2": "t1", "t1ce": "flair", "flair": "t1ce"},
}


def _swap(images: Images, brain: NDArray[np.bool_], level: float, rng: np.random.Generator) -> Images:
    source = dict(images)
    for target, origin in _SWAPS[int(level)].items():
        images[target] = source[origin]
    return images


def _rotation(axis: NDArray[np.float64], degrees: float) -> NDArray[np.float64]:
    """Rodrigues' rotation matrix about the unit vector ``axis``."""
    a = math.radians(degrees)
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.asarray(np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k))


def _misregistration(images: Images, brain: NDArray[np.bool_], level: float, rng: np.random.Generator) -> Images:
    moving = ("t1", "t2", "flair")[int(rng.integers(3))]
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    img = images[moving]
    support = img > 0
    centre = np.array(ndimage.center_of_mass(support)) if support.any() else (np.array(img.shape) - 1) / 2
    rot = _rotation(axis, level)
    shift = direction * level  # 1 mm voxels (FeTS data are resampled to 1 mm isotropic)
    # out(o) = in(R^T (o - c - t) + c): rotate about c, then translate by t.
    inverse = rot.T
    offset = centre - inverse @ (centre + shift)
    moved = ndimage.affine_transform(img, inverse, offset=offset, order=1, mode="constant", cval=0.0)
    # The moved brain is the moved mask (nearest neighbour): no half-dark fringe, still skull-stripped.
    inside = ndimage.affine_transform(support.view(np.uint8), inverse, offset=offset, order=0).astype(bool)
    lowest = float(img[support].min()) if support.any() else 0.0
    moved[~inside] = 0
    np.maximum(moved, np.float32(lowest), out=moved, where=inside)
    images[moving] = moved
    return images


def _level_index(name: str, value: float) -> int:
    return SHIFTS[name].values.index(value)


SHIFTS: dict[str, Shift] = {
    s.name: s
    for s in (
        Shift(
            "intensity",
            "scanner gain / reconstruction scaling per sequence: per-modality scale e^(±a) and offset ±b·mean",
            "a (log scale); b = 5, 10, 20, 30 % of the brain mean",
            (0.0, 0.10, 0.25, 0.50, 0.80),
            ("identity", "×e^±0.10, ±5 %", "×e^±0.25, ±10 %", "×e^±0.50, ±20 %", "×e^±0.80, ±30 %"),
            _intensity,
        ),
        Shift(
            "bias",
            "receive-coil (B1) inhomogeneity: smooth multiplicative field 1 ± a over the brain, all sequences",
            "a (field amplitude)",
            (0.0, 0.10, 0.20, 0.30, 0.45),
            ("identity", "±10 %", "±20 %", "±30 %", "±45 %"),
            _bias,
        ),
        Shift(
            "noise",
            "thermal noise of a magnitude image: Rician, σ relative to each modality's brain mean",
            "σ (fraction of the brain mean)",
            (0.0, 0.02, 0.05, 0.10, 0.20),
            ("identity", "σ = 2 %", "σ = 5 %", "σ = 10 %", "σ = 20 %"),
            _noise,
        ),
        Shift(
            "thick_slices",
            "2-D thick-slice acquisition resampled to 1 mm: slab average, z-subsampling, linear upsampling, "
            "in-plane blur",
            "slice thickness (mm along z); in-plane Gaussian σ 0.5, 0.75, 1.0, 1.25 voxels",
            (1.0, 2.0, 3.0, 5.0, 7.0),
            ("identity", "2 mm, σxy 0.5", "3 mm, σxy 0.75", "5 mm, σxy 1.0", "7 mm, σxy 1.25"),
            _thick_slices,
        ),
        Shift(
            "gamma",
            "sequence parameters (TR/TE/TI, flip angle) change tissue contrast: m·(x/m)^γ per modality",
            "|log γ|",
            (0.0, 0.15, 0.30, 0.50, 0.75),
            ("identity", "γ = e^±0.15", "γ = e^±0.30", "γ = e^±0.50", "γ = e^±0.75"),
            _gamma,
        ),
        Shift(
            "missing",
            "a sequence was not acquired or failed conversion: modalities drawn by the seed become zeros",
            "number of missing modalities",
            (0.0, 1.0, 2.0, 3.0),
            ("identity", "1 zeroed", "2 zeroed", "3 zeroed"),
            _missing,
        ),
        Shift(
            "swap",
            "mislabelled series (DICOM series description mapped to the wrong modality)",
            "which series are exchanged",
            (0.0, 1.0, 2.0, 3.0),
            ("identity", "T1↔T1ce", "+ T2↔FLAIR", "T1w↔T2w families"),
            _swap,
        ),
        Shift(
            "misregistration",
            "motion between sequences / failed co-registration: one of T1, T2, FLAIR rotated and translated",
            "rotation (degrees) = translation (mm)",
            (0.0, 1.0, 2.0, 3.0, 5.0),
            ("identity", "1°, 1 mm", "2°, 2 mm", "3°, 3 mm", "5°, 5 mm"),
            _misregistration,
        ),
    )
}


# ------------------------------------------------------------------------------------------ public API


def _rng(name: str, seed: int) -> np.random.Generator:
    """A stream per (shift, seed), independent of the level: the levels of one seed share a direction."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())]))


def apply_shift(
    case: Mapping[str, NDArray[_Scalar]], name: str, level: int, seed: int = 0
) -> dict[str, NDArray[_Scalar]]:
    """``case`` with shift ``name`` at ``level`` applied to its four modalities; a new dict, input untouched.

    Keys other than the modalities (the label map) are passed through as the same objects. Level 0 returns
    the input arrays themselves. Deterministic in ``(case, name, level, seed)``.
    """
    ref = ShiftRef(name, int(level), int(seed))  # validates
    out = dict(case)
    if ref.level == 0:
        return out
    missing = [m for m in MODALITIES if m not in case]
    if missing:
        raise ValueError(f"the case lacks modalities {missing}; expected {list(MODALITIES)}")
    shapes = {np.shape(case[m]) for m in MODALITIES}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"the four modalities must be 3-D volumes of one shape, got {sorted(shapes)}")
    shift = SHIFTS[name]
    originals = {m: np.asarray(case[m]) for m in MODALITIES}
    brain = np.zeros(next(iter(shapes)), dtype=bool)
    for img in originals.values():
        brain |= img != 0
    work = {m: img.astype(np.float32) for m, img in originals.items()}  # always a copy
    work = shift.transform(work, brain, shift.values[ref.level], _rng(name, ref.seed))
    keep_mask = name not in ("misregistration", "missing", "swap")
    for m in MODALITIES:
        out[m] = _finish(work[m], originals[m], brain if keep_mask else None)
    return out


def parse_shift_list(items: Sequence[Mapping[str, object] | ShiftRef]) -> tuple[ShiftRef, ...]:
    """Validate a ``shifts:`` list (``[{name: noise, level: 2, seed: 7}, ...]``); raises ``ValueError``."""
    refs: list[ShiftRef] = []
    for i, item in enumerate(items):
        if isinstance(item, ShiftRef):
            refs.append(item)
            continue
        unknown = set(item) - {"name", "level", "seed"}
        if unknown or "name" not in item or "level" not in item:
            raise ValueError(f"shifts[{i}]: give name, level and optionally seed (got {sorted(item)})")
        try:
            refs.append(ShiftRef(str(item["name"]), int(item["level"]), int(item.get("seed", 0))))  # type: ignore[call-overload]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"shifts[{i}]: {exc}") from exc
    return tuple(refs)


def apply_shift_list(
    case: Mapping[str, NDArray[_Scalar]],
    shifts: Sequence[Mapping[str, object] | ShiftRef],
    case_seed: int = 0,
) -> dict[str, NDArray[_Scalar]]:
    """Apply a site's ``shifts:`` list to one case, in list order (labels untouched).

    Each entry's seed is mixed with ``case_seed`` so every case of a site gets its own field and noise
    while the site stays reproducible; pass the case's synthesis seed (``fedsim.synth.writer.case_seed``).
    """
    out = dict(case)
    for ref in parse_shift_list(shifts):
        mixed = int(np.random.SeedSequence([ref.seed & 0xFFFFFFFF, int(case_seed) & 0xFFFFFFFF]).generate_state(1)[0])
        out = apply_shift(out, ref.name, ref.level, mixed)
    return out


def shift_table() -> list[tuple[str, str, list[str]]]:
    """``(name, physical meaning, parameter per level)`` for every shift (docs, ``--help``, reports)."""
    return [(s.name, s.meaning, list(s.labels)) for s in SHIFTS.values()]
