"""The metrics cube's entry point, run as a real subprocess the way a container would run it."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
CUBE = REPO / "benchmarks" / "fets2022-task2" / "cubes" / "metrics"
SHAPE = (32, 30, 24)
AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    img = nib.Nifti1Image(data.astype(np.uint8), affine)
    img.set_data_dtype(np.uint8)
    nib.save(img, str(path))


def _truth(label_et: int = 4) -> np.ndarray:
    v = np.zeros(SHAPE, np.uint8)
    v[4:20, 4:20, 4:16] = 2
    v[8:16, 8:16, 6:12] = label_et
    v[10:14, 10:14, 8:10] = 1
    return v


def _run(tmp: Path, params: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    (tmp / "parameters.yaml").write_text(params)
    out = tmp / "out" / "results.yaml"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    argv = [
        sys.executable,
        str(CUBE / "project" / "mlcube.py"),
        "evaluate",
        f"--predictions={tmp / 'preds'}",
        f"--labels={tmp / 'labels'}",
        f"--parameters_file={tmp / 'parameters.yaml'}",
        f"--output_path={out}",
    ]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False), out


def _setup(tmp: Path, label_et: int) -> None:
    (tmp / "labels").mkdir()
    (tmp / "preds").mkdir()
    truth = _truth(label_et)
    for case in ("FeTS22_Patient0003", "FeTS22_Patient0001", "FeTS22_Patient0002", "FeTS22_Patient0004"):
        _save(tmp / "labels" / f"{case}_final_seg.nii.gz", truth)
    _save(tmp / "preds" / "FeTS22_Patient0001.nii.gz", truth)  # perfect
    shifted = np.roll(truth, 2, axis=0)
    shifted[:, :, :] = np.where(shifted == label_et, 0, shifted)  # no ET predicted
    _save(tmp / "preds" / "FeTS22_Patient0002.nii.gz", shifted)
    moved = AFFINE.copy()
    moved[:3, 3] = [0.0, 3.0, 0.0]
    _save(tmp / "preds" / "FeTS22_Patient0003.nii.gz", truth, moved)  # misaligned
    # FeTS22_Patient0004: missing


def test_cube_brats2021(tmp_path: Path) -> None:
    _setup(tmp_path, 4)
    proc, out = _run(tmp_path, "metric_set: brats2021\n")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    doc = yaml.safe_load(text)
    assert list(doc) == [f"FeTS22_Patient000{i}" for i in range(1, 5)]
    perfect, shifted, misaligned, missing = doc.values()
    assert perfect["Dice_ET"] == 1.0 and perfect["Hausdorff95_WT"] == 0.0 and perfect["missing_pred"] is False
    assert shifted["Dice_ET"] == 0.0 and shifted["Hausdorff95_ET"] == 373.128664
    assert math.isnan(shifted["Precision_ET"]) and ".nan" in text
    assert 0 < shifted["Dice_WT"] < 1 and shifted["missing_pred"] is False
    for row in (misaligned, missing):
        assert row["missing_pred"] is True and row["Hausdorff95_TC"] == 374.0
        assert row["FN_WT"] == int(np.prod(SHAPE)) and row["TP_WT"] == 0
    assert not list(out.parent.glob(".*tmp"))  # no leftover temporary file


def test_cube_lesionwise(tmp_path: Path) -> None:
    _setup(tmp_path, 3)
    proc, out = _run(tmp_path, "metric_set: lesionwise\nlesionwise: {dilation_iterations: 1, min_lesion_size: 10}\n")
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(out.read_text())
    assert doc["FeTS22_Patient0001"]["LesionWise_Dice_ET"] == 1.0
    assert doc["FeTS22_Patient0002"]["LesionWise_Dice_ET"] == 0.0
    assert doc["FeTS22_Patient0002"]["LesionWise_NumFN_ET"] == 1
    assert doc["FeTS22_Patient0004"]["missing_pred"] is True


def test_cube_rejects_unknown_metric_set(tmp_path: Path) -> None:
    _setup(tmp_path, 4)
    proc, out = _run(tmp_path, "metric_set: nope\n")
    assert proc.returncode == 2 and "metric_set" in proc.stderr and not out.exists()
