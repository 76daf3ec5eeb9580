"""Per-site acquisition shift: how one simulated scanner distorts the ideal phantom intensities.

Real multi-site data differs mostly in global scale, contrast, noise and bias field; these are the knobs
that make one site's images look unlike another's, which is what "generalization in the wild" is about.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["SiteShift", "apply_shift", "bias_field"]


@dataclass(frozen=True)
class SiteShift:
    """Per-site acquisition "domain shift"; the defaults leave the phantom unchanged."""

    intensity_scale: float = 1.0
    """Global multiplicative scale of all modalities."""
    intensity_offset: float = 0.0
    """Additive offset in units of the brain's mean intensity (0.1 = +10 % of the mean)."""
    noise_std: float = 0.0
    """Rician noise std as a fraction of the brain's mean intensity."""
    bias_field: float = 0.0
    """Amplitude of a smooth multiplicative bias field (0.2 = ±20 %)."""
    contrast_gamma: float = 1.0
    """Gamma applied to the mean-normalised intensities (contrast change)."""

    def __post_init__(self) -> None:
        # Validate here (no pydantic: this module runs inside minimal Debian images).
        values = {
            "intensity_scale": self.intensity_scale,
            "intensity_offset": self.intensity_offset,
            "noise_std": self.noise_std,
            "bias_field": self.bias_field,
            "contrast_gamma": self.contrast_gamma,
        }
        for name, value in values.items():
            if not math.isfinite(value):
                raise ValueError(f"SiteShift.{name} must be finite, got {value!r}")
        if self.intensity_scale <= 0:
            raise ValueError("SiteShift.intensity_scale must be > 0")
        if self.contrast_gamma <= 0:
            raise ValueError("SiteShift.contrast_gamma must be > 0")
        if self.noise_std < 0:
            raise ValueError("SiteShift.noise_std must be >= 0")
        if not 0 <= self.bias_field < 1:
            raise ValueError("SiteShift.bias_field must be in [0, 1)")

    @property
    def is_identity(self) -> bool:
        """True when applying the shift changes nothing (lets callers skip the work)."""
        return self == SiteShift()


def bias_field(rng: np.random.Generator, shape: tuple[int, ...], n_terms: int = 4) -> NDArray[np.float32]:
    """A smooth field in [-1, 1]: a few random low-frequency cosines, cheap by broadcasting.

    Scanner bias fields vary over tens of centimetres, so one or two periods across the volume is realistic;
    building it analytically avoids any full-resolution filtering.
    """
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    x, y, z = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    field = np.zeros(shape, dtype=np.float32)
    for _ in range(n_terms):
        k = rng.uniform(0.3, 1.0, size=3) * rng.choice([-1.0, 1.0], size=3)
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(0.5, 1.0)
        # cos(a + b + c) expanded would not help; broadcasting the sum is cheap enough (float32).
        field += np.float32(amp) * np.cos(
            np.float32(np.pi * k[0]) * x
            + np.float32(np.pi * k[1]) * y
            + np.float32(np.pi * k[2]) * z
            + np.float32(phase)
        )
    peak = float(np.abs(field).max())
    if peak > 0:
        field /= np.float32(peak)
    return field


def apply_shift(
    images: dict[str, NDArray[np.float32]],
    brain: NDArray[np.bool_],
    shift: SiteShift,
    rng: np.random.Generator,
) -> dict[str, NDArray[np.float32]]:
    """Distort float32 phantom images in place as ``shift`` says; background stays 0.

    Order follows the physics loosely: tissue contrast (gamma) first, then the receive-coil bias field, then
    the scanner's global scale/offset, and the noise last (it is added to the measured signal).
    """
    if shift.is_identity:
        return images
    field = None
    if shift.bias_field > 0:
        field = bias_field(rng, brain.shape)
        field *= np.float32(shift.bias_field)
        field += np.float32(1.0)
    for img in images.values():
        values = img[brain]
        mean = float(values.mean()) if values.size else 1.0
        if mean <= 0:
            mean = 1.0
        values = values / np.float32(mean)
        if shift.contrast_gamma != 1.0:
            np.maximum(values, 0, out=values)
            values **= np.float32(shift.contrast_gamma)
        if field is not None:
            values *= field[brain]
        values += np.float32(shift.intensity_offset)
        values *= np.float32(shift.intensity_scale)
        if shift.noise_std > 0:
            sigma = np.float32(shift.noise_std * shift.intensity_scale)
            real = values + sigma * rng.standard_normal(values.shape, dtype=np.float32)
            imag = sigma * rng.standard_normal(values.shape, dtype=np.float32)
            values = np.sqrt(real * real + imag * imag)
        values *= np.float32(mean)
        img[brain] = values  # the background is never touched: it stays exactly 0
    return images
