"""CaPTk edge-case table (docs/metrics.md), misalignment penalties and decompression bombs."""

from __future__ import annotations

import gzip
import math
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fedsim.metrics import HD95_ONE_EMPTY, case_metrics, evaluate_dir, load_label
from fedsim.metrics.nifti import UnreadableVolume

SHAPE = (24, 20, 16)
N = int(np.prod(SHAPE))
AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


def _vol(**blocks: tuple[slice, ...]) -> np.ndarray:
    v = np.zeros(SHAPE, dtype=np.uint8)
    for label, box in blocks.items():
        v[box] = int(label[1:])
    return v


def test_both_empty_row() -> None:
    m = case_metrics(np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8))
    for r in ("ET", "TC", "WT"):
        assert (m[f"Dice_{r}"], m[f"Hausdorff95_{r}"], m[f"Sensitivity_{r}"], m[f"Specificity_{r}"]) == (
            1,
            0,
            1,
            1,
        )
        assert math.isnan(m[f"Precision_{r}"])
        assert (m[f"TP_{r}"], m[f"FP_{r}"], m[f"TN_{r}"], m[f"FN_{r}"]) == (0, 0, N, 0)
    assert m["missing_pred"] is False


def test_truth_empty_prediction_not() -> None:
    pred = _vol(l4=np.s_[2:5, 2:5, 2:5])  # 27 voxels of ET
    m = case_metrics(pred, np.zeros(SHAPE, np.uint8))
    assert m["Dice_ET"] == 0.0
    assert m["Hausdorff95_ET"] == HD95_ONE_EMPTY == 373.128664
    assert m["Sensitivity_ET"] == 0.0
    assert m["Specificity_ET"] == pytest.approx((N - 27) / N)
    assert m["Precision_ET"] == 0.0
    assert (m["TP_ET"], m["FP_ET"], m["TN_ET"], m["FN_ET"]) == (0, 27, N - 27, 0)


def test_truth_not_empty_prediction_empty() -> None:
    truth = _vol(l1=np.s_[2:5, 2:5, 2:5])  # TC and WT, no ET
    m = case_metrics(np.zeros(SHAPE, np.uint8), truth)
    for r in ("TC", "WT"):
        assert (m[f"Dice_{r}"], m[f"Hausdorff95_{r}"], m[f"Sensitivity_{r}"], m[f"Specificity_{r}"]) == (
            0.0,
            373.128664,
            0.0,
            1.0,
        )
        assert math.isnan(m[f"Precision_{r}"])
        assert (m[f"TP_{r}"], m[f"FP_{r}"], m[f"TN_{r}"], m[f"FN_{r}"]) == (0, 0, N - 27, 27)
    assert m["Dice_ET"] == 1.0 and m["Hausdorff95_ET"] == 0.0  # ET empty in both


def _assert_penalty(m: dict) -> None:
    for r in ("ET", "TC", "WT"):
        assert (
            m[f"Dice_{r}"],
            m[f"Hausdorff95_{r}"],
            m[f"Sensitivity_{r}"],
            m[f"Specificity_{r}"],
            m[f"Precision_{r}"],
        ) == (0.0, 374.0, 0.0, 0.0, 0.0)
        assert (m[f"TP_{r}"], m[f"FP_{r}"], m[f"TN_{r}"], m[f"FN_{r}"]) == (0, 0, 0, N)
    assert m["missing_pred"] is True


def test_missing_prediction_penalty() -> None:
    _assert_penalty(case_metrics(None, _vol(l2=np.s_[1:9, 1:9, 1:9])))


def test_types_are_plain_python() -> None:
    m = case_metrics(_vol(l4=np.s_[2:6, 2:6, 2:6]), _vol(l4=np.s_[3:7, 2:6, 2:6]))
    for k, v in m.items():
        assert type(v) is (bool if k == "missing_pred" else int if k[:2] in ("TP", "FP", "TN", "FN") else float)
    assert m["Dice_ET"] == pytest.approx(2 * 48 / 128)


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE, dtype: type = np.uint8) -> Path:
    img = nib.Nifti1Image(data.astype(dtype), affine)
    img.set_data_dtype(dtype)
    nib.save(img, str(path))
    return path


@pytest.fixture
def case_dirs(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    labels, preds = tmp_path / "labels", tmp_path / "preds"
    labels.mkdir()
    preds.mkdir()
    truth = _vol(l2=np.s_[2:14, 2:14, 2:12], l1=np.s_[5:9, 5:9, 4:8], l4=np.s_[9:12, 5:9, 4:8])
    _save(labels / "C_final_seg.nii.gz", truth)
    return preds, labels, truth


def _spacing(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out[2, 2] = 1.2
    return out


def _origin(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out[:3, 3] = [5.0, 0.0, 0.0]
    return out


def _direction(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out[:3, :3] = np.diag([1.0, -1.0, 1.0])
    return out


@pytest.mark.parametrize("kind", ["shape", "spacing", "origin", "direction"])
def test_misaligned_prediction_is_penalised(case_dirs: tuple[Path, Path, np.ndarray], kind: str) -> None:
    preds, labels, truth = case_dirs
    data, affine = truth, AFFINE
    if kind == "shape":
        data = np.zeros((24, 20, 17), np.uint8)
        data[:, :, :16] = truth
    else:
        affine = {"spacing": _spacing, "origin": _origin, "direction": _direction}[kind](AFFINE)
    _save(preds / "C.nii.gz", data, affine)
    _assert_penalty(evaluate_dir(preds, labels)["C"])


def test_aligned_prediction_within_tolerance_and_float_dtype(
    case_dirs: tuple[Path, Path, np.ndarray],
) -> None:
    preds, labels, truth = case_dirs
    affine = AFFINE.copy()
    affine[0, 3] += 1e-5
    _save(preds / "C.nii.gz", truth, affine, dtype=np.float32)
    m = evaluate_dir(preds, labels)["C"]
    assert m["missing_pred"] is False and m["Dice_WT"] == 1.0 and m["Hausdorff95_ET"] == 0.0


def test_scl_slope_is_applied(tmp_path: Path) -> None:
    truth = _vol(l2=np.s_[2:5, 2:5, 2:5])
    img = nib.Nifti1Image((truth * 10).astype(np.int16), AFFINE)
    img.header.set_slope_inter(0.1, 0)
    nib.save(img, str(tmp_path / "x.nii.gz"))
    data, geom = load_label(tmp_path / "x.nii.gz")
    assert data.dtype == np.uint8 and np.array_equal(data, truth) and geom.shape == SHAPE


def test_load_label_matches_nibabel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vol = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=SHAPE)
    for dtype in (np.uint8, np.int16, np.int32, np.float32, np.float64):
        path = _save(tmp_path / f"x_{np.dtype(dtype).name}.nii.gz", vol, dtype=dtype)
        data, geom = load_label(path)
        assert np.array_equal(data, np.asanyarray(nib.load(str(path)).dataobj)), dtype
        assert np.allclose(geom.affine, AFFINE)
    plain = _save(tmp_path / "plain.nii", vol)
    assert np.array_equal(load_label(plain)[0], vol)


def test_missing_unreadable_and_non_regular_predictions(case_dirs: tuple[Path, Path, np.ndarray]) -> None:
    preds, labels, _ = case_dirs
    assert evaluate_dir(preds, labels)["C"]["missing_pred"] is True  # missing
    (preds / "C.nii.gz").write_bytes(b"\x1f\x8b garbage")
    _assert_penalty(evaluate_dir(preds, labels)["C"])
    (preds / "C.nii.gz").unlink()
    (preds / "C.nii.gz").mkdir()
    _assert_penalty(evaluate_dir(preds, labels)["C"])


def test_truncated_prediction_is_unreadable(case_dirs: tuple[Path, Path, np.ndarray]) -> None:
    preds, labels, truth = case_dirs
    full = _save(preds / "full.nii.gz", truth).read_bytes()
    raw = gzip.decompress(full)
    (preds / "C.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    _assert_penalty(evaluate_dir(preds, labels)["C"])


def _bomb_header(shape: tuple[int, ...]) -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.uint8)
    hdr.set_qform(AFFINE, code=1)
    hdr.set_sform(AFFINE, code=1)
    return hdr.binaryblock + b"\x00" * 4


def _bomb(path: Path, header: bytes, gib: int) -> None:
    """``header`` then ``gib`` GiB of zeros as repeated gzip members: a ~1 MiB file, built in milliseconds."""
    member = gzip.compress(b"\x04" * (1 << 24), compresslevel=9)
    path.write_bytes(gzip.compress(header) + member * (64 * gib))


def test_decompression_bomb_right_shape(case_dirs: tuple[Path, Path, np.ndarray]) -> None:
    """Header matches the label but the stream inflates to 1 GiB: refused after inflating what it declares."""
    preds, labels, _ = case_dirs
    path = preds / "C.nii.gz"
    _bomb(path, _bomb_header(SHAPE), gib=1)
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    t0 = time.perf_counter()
    m = evaluate_dir(preds, labels)["C"]
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    _assert_penalty(m)
    assert elapsed < 5 and peak < 64 << 20


def test_decompression_bomb_huge_header(case_dirs: tuple[Path, Path, np.ndarray]) -> None:
    """Header claims 2048³ voxels: refused before any data is inflated."""
    preds, labels, _ = case_dirs
    path = preds / "C.nii.gz"
    _bomb(path, _bomb_header((2048, 2048, 2048)), gib=1)
    t0 = time.perf_counter()
    _assert_penalty(evaluate_dir(preds, labels)["C"])
    assert time.perf_counter() - t0 < 5
    with pytest.raises(UnreadableVolume, match="voxels"):
        load_label(path, max_voxels=N)


def test_results_are_sorted_and_label_errors_raise(tmp_path: Path) -> None:
    labels, preds = tmp_path / "labels", tmp_path / "preds"
    labels.mkdir()
    preds.mkdir()
    for case in ("b", "a", "c"):
        _save(labels / f"{case}_final_seg.nii.gz", _vol(l2=np.s_[1:3, 1:3, 1:3]))
    assert list(evaluate_dir(preds, labels)) == ["a", "b", "c"]
    (labels / "d_final_seg.nii.gz").write_bytes(b"nope")
    from fedsim.errors import SpecError

    with pytest.raises(SpecError):
        evaluate_dir(preds, labels)
