"""fedsim's cropped HD95 and overlap scores agree with MedPy (what CaPTk calls) on full volumes."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import ndimage

mb = pytest.importorskip("medpy.metric.binary")

from fedsim.metrics import case_metrics, hd95  # noqa: E402

SHAPE = (48, 44, 36)


def _blobby(rng: np.random.Generator, shape: tuple[int, ...] = SHAPE, scale: float = 0.5) -> np.ndarray:
    """Tumour-like blob: a thresholded smooth random field around a random centre."""
    grid = np.indices(shape).astype(float)
    c = np.array([rng.uniform(0.3, 0.7) * s for s in shape])
    r = np.array([rng.uniform(0.12, 0.3) * s for s in shape])
    dist = np.sqrt((((grid - c[:, None, None, None]) / r[:, None, None, None]) ** 2).sum(0))
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 3)
    return dist + scale * noise / (noise.std() + 1e-12) < 1.0


def _perturb(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    out = np.roll(mask, tuple(int(x) for x in rng.integers(-2, 3, size=3)), axis=(0, 1, 2))
    out = ndimage.binary_dilation(out) if rng.random() < 0.5 else ndimage.binary_erosion(out)
    out ^= rng.random(mask.shape) < 0.003  # speckle: extra components and holes
    return out


@functools.cache
def _random_pairs(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1234)
    pairs = []
    while len(pairs) < n:
        a = _blobby(rng)
        b = _perturb(rng, a)
        if a.any() and b.any():
            pairs.append((b, a))
    return pairs


def _border_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    z = np.zeros(SHAPE, bool)
    for axis in range(3):
        for side in (0, -1):
            a = z.copy()
            b = z.copy()
            idx = [slice(10, 20)] * 3
            idx[axis] = slice(0, 6) if side == 0 else slice(SHAPE[axis] - 6, SHAPE[axis])
            a[tuple(idx)] = True
            idx2 = [slice(12, 25)] * 3
            idx2[axis] = slice(0, 3) if side == 0 else slice(SHAPE[axis] - 3, SHAPE[axis])
            b[tuple(idx2)] = True
            out.append((f"face{axis}{side}", a, b))
    single_a, single_b = z.copy(), z.copy()
    single_a[5, 6, 7] = True
    single_b[30, 2, 20] = True
    out.append(("single voxels", single_a, single_b))
    corner_a, corner_b = z.copy(), z.copy()
    corner_a[0, 0, 0] = True
    corner_b[-1, -1, -1] = True
    out.append(("opposite corners", corner_a, corner_b))
    several_a, several_b = z.copy(), z.copy()
    several_a[2:6, 2:6, 2:6] = several_a[30:40, 30:40, 20:30] = several_a[10, 35, 5] = True
    several_b[3:7, 2:6, 2:6] = several_b[28:38, 31:41, 20:30] = True
    out.append(("several components", several_a, several_b))
    ball = np.sqrt(((np.indices(SHAPE) - np.array([24, 22, 18])[:, None, None, None]) ** 2).sum(0))
    out.append(("thin rims", (ball >= 10) & (ball < 11), (ball >= 12) & (ball < 13)))
    out.append(("rim vs ball", (ball >= 10) & (ball < 11), ball < 11))
    full_a = np.ones(SHAPE, bool)
    full_a[20:25, 20:25, 15:20] = False
    full_b = np.ones(SHAPE, bool)
    full_b[:, :, -2:] = False
    out.append(("full-ish", full_a, full_b))
    out.append(("full vs full-ish", np.ones(SHAPE, bool), full_b))
    out.append(("identical", ball < 8, ball < 8))
    return out


@pytest.mark.parametrize("idx", range(30))
def test_hd95_random_pairs(idx: int) -> None:
    a, b = _random_pairs(30)[idx]
    assert hd95(a, b) == pytest.approx(mb.hd95(a, b), abs=1e-6)
    assert hd95(a, b, voxelspacing=(1.0, 0.8, 2.5)) == pytest.approx(
        mb.hd95(a, b, voxelspacing=(1.0, 0.8, 2.5)), abs=1e-6
    )


@pytest.mark.parametrize("case", _border_pairs(), ids=lambda c: c[0])
def test_hd95_border_cases(case: tuple[str, np.ndarray, np.ndarray]) -> None:
    _, a, b = case
    assert hd95(a, b) == pytest.approx(mb.hd95(a, b), abs=1e-6)
    assert hd95(b, a) == pytest.approx(mb.hd95(b, a), abs=1e-6)


def test_hd95_rejects_empty() -> None:
    z = np.zeros(SHAPE, bool)
    with pytest.raises(ValueError):
        hd95(z, z)


def test_case_metrics_match_medpy_scores() -> None:
    rng = np.random.default_rng(7)
    for _ in range(8):
        wt_t = _blobby(rng)
        tc_t = wt_t & ndimage.binary_erosion(wt_t, iterations=3)
        et_t = tc_t & ~ndimage.binary_erosion(tc_t, iterations=2)
        truth = np.where(et_t, 4, np.where(tc_t, 1, np.where(wt_t, 2, 0))).astype(np.uint8)
        pred = np.zeros_like(truth)
        for value in (2, 1, 4):
            pred[_perturb(rng, truth == value) & (pred == 0)] = value
        pred[(truth == 1) & (rng.random(SHAPE) < 0.02)] = 3  # a stray label in no region
        m = case_metrics(pred, truth)
        for name, values in (("ET", (4,)), ("TC", (1, 4)), ("WT", (1, 2, 4))):
            a, b = np.isin(pred, values), np.isin(truth, values)
            if not (a.any() and b.any()):
                continue
            assert m[f"Dice_{name}"] == pytest.approx(mb.dc(a, b), abs=1e-12)
            assert m[f"Hausdorff95_{name}"] == pytest.approx(mb.hd95(a, b), abs=1e-6)
            assert m[f"Sensitivity_{name}"] == pytest.approx(mb.sensitivity(a, b), abs=1e-12)
            assert m[f"Specificity_{name}"] == pytest.approx(mb.specificity(a, b), abs=1e-12)
            assert m[f"Precision_{name}"] == pytest.approx(mb.precision(a, b), abs=1e-12)
            assert m[f"TP_{name}"] + m[f"FP_{name}"] + m[f"TN_{name}"] + m[f"FN_{name}"] == truth.size
