"""The fast paths of fedsim.metrics (shell search, percentile short-cut, k-d tree fallback, bounding boxes,
label dtypes and memory layouts) reproduce MedPy bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

mb = pytest.importorskip("medpy.metric.binary")

from fedsim.metrics import case_metrics, hd95  # noqa: E402
from fedsim.metrics.hausdorff import bounding_box, nonzero_box, surface_distances  # noqa: E402

SHAPE = (40, 36, 30)
medpy_surface_distances = getattr(mb, "__surface_distances")


def _ball(center: tuple[float, ...], radius: float, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    c = np.array(center, dtype=float).reshape((-1,) + (1,) * len(shape))
    return np.sqrt(((grid - c) ** 2).sum(0)) < radius


def _pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(99)
    out = []
    base = _ball((20, 18, 15), 9)
    # small HD95: every distance the percentile needs lies within the first shells
    out.append(("near", base, ndimage.binary_dilation(base)))
    # HD95 between sqrt(8) and sqrt(35): the wider shell stage
    out.append(("mid", base, _ball((23, 18, 15), 10)))
    # far false-positive component plus a shift: HD95 beyond the shells, k-d tree fallback
    far = np.roll(base, 7, axis=0)
    far[1:5, 1:5, 1:5] = True
    out.append(("far", base, far))
    # speckle everywhere
    noisy = base ^ (rng.random(SHAPE) < 0.01)
    out.append(("speckle", base, noisy))
    # touching every face of the volume
    out.append(("faces", np.ones(SHAPE, bool), _ball((20, 18, 15), 24)))
    return out


@pytest.mark.parametrize("case", _pairs(), ids=lambda c: c[0])
def test_hd95_bit_exact(case: tuple[str, np.ndarray, np.ndarray]) -> None:
    _, a, b = case
    assert hd95(a, b) == mb.hd95(a, b)
    assert hd95(b, a) == mb.hd95(b, a)
    spacing = (1.0, 0.8, 2.5)
    assert hd95(a, b, voxelspacing=spacing) == pytest.approx(mb.hd95(a, b, voxelspacing=spacing), rel=0, abs=1e-12)


@pytest.mark.parametrize("case", _pairs(), ids=lambda c: c[0])
def test_surface_distances_equal_medpy_in_order(case: tuple[str, np.ndarray, np.ndarray]) -> None:
    _, a, b = case
    d_ab, d_ba = surface_distances(a, b)
    np.testing.assert_array_equal(d_ab, medpy_surface_distances(a, b, None, 1))
    np.testing.assert_array_equal(d_ba, medpy_surface_distances(b, a, None, 1))


def test_hd95_two_dimensional() -> None:
    a = _ball((20, 18), 8, shape=(40, 36))
    b = _ball((24, 16), 6, shape=(40, 36))
    b[0:3, 30:36] = True
    assert hd95(a, b) == mb.hd95(a, b)


def test_nonzero_box_matches_argwhere() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        shape = tuple(int(x) for x in rng.integers(1, 12, size=3))
        vols = [(rng.random(shape) < 0.02).astype(np.uint8) * int(rng.integers(1, 5)) for _ in range(2)]
        for layout in (np.ascontiguousarray, np.asfortranarray):
            arrays = [layout(v) for v in vols]
            hits = np.argwhere(vols[0] | vols[1])
            expected = (
                None
                if hits.size == 0
                else tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(hits.min(0), hits.max(0), strict=True))
            )
            assert nonzero_box(*arrays) == expected
        single = np.argwhere(vols[0])
        assert bounding_box(vols[0].astype(float)) == (
            None
            if single.size == 0
            else tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(single.min(0), single.max(0), strict=True))
        )


def _labels() -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros(SHAPE, np.uint8)
    truth[_ball((20, 18, 15), 11)] = 2
    truth[_ball((20, 18, 15), 7)] = 1
    truth[_ball((21, 18, 15), 4)] = 4
    pred = np.roll(truth, (2, -1, 1), axis=(0, 1, 2))
    pred[0:3, 0:4, 25:30] = 4  # at the volume corner
    pred[30:33, 30:33, 2:4] = 3  # a label in no region
    return truth, pred


def test_case_metrics_independent_of_dtype_and_layout() -> None:
    truth, pred = _labels()
    ref = case_metrics(pred, truth)
    variants = [
        (pred.astype(np.int16), truth.astype(np.int32)),
        (pred.astype(np.float32), truth.astype(np.float64)),
        (np.asfortranarray(pred), np.asfortranarray(truth)),
        (np.asfortranarray(pred), truth),
        (pred[::-1, :, :][::-1, :, :], truth),  # a non-contiguous view
    ]
    for p, t in variants:
        got = case_metrics(p, t)
        assert set(got) == set(ref)
        for key, value in ref.items():
            assert got[key] == value or (value != value and got[key] != got[key]), (key, p.dtype)


def test_case_metrics_exact_against_medpy() -> None:
    truth, pred = _labels()
    m = case_metrics(pred, truth)
    for name, values in (("ET", (4,)), ("TC", (1, 4)), ("WT", (1, 2, 4))):
        a, b = np.isin(pred, values), np.isin(truth, values)
        assert m[f"Hausdorff95_{name}"] == mb.hd95(a, b)
        assert m[f"Dice_{name}"] == mb.dc(a, b)
        assert m[f"Sensitivity_{name}"] == mb.sensitivity(a, b)
        assert m[f"Specificity_{name}"] == mb.specificity(a, b)
        assert m[f"Precision_{name}"] == mb.precision(a, b)


def test_labels_out_of_dtype_range_match_nothing() -> None:
    truth, pred = _labels()
    regions = {"big": (300, 4), "neg": (-1,)}
    m = case_metrics(pred, truth, regions)
    assert m["TP_big"] == case_metrics(pred, truth, {"x": (4,)})["TP_x"]
    assert m["Dice_neg"] == 1.0 and m["TP_neg"] == 0
