"""``fedsim score``: predictions matched to labels by case id, the metrics cube's YAML out, one-line errors."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from fedsim.errors import SpecError
from fedsim.score import match_cases, score_folders

SHAPE = (24, 24, 16)


def _save(path: Path, data: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(data.astype(np.uint8), np.eye(4)), str(path))


def _case(et: int = 3) -> np.ndarray:
    v = np.zeros(SHAPE, np.uint8)
    v[4:14, 4:14, 4:12] = 2
    v[6:12, 6:12, 6:10] = et
    v[8:10, 8:10, 7:9] = 1
    return v


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    preds, labels = tmp_path / "preds", tmp_path / "labels"
    preds.mkdir()
    labels.mkdir()
    for name, suffix in (("A", ".nii.gz"), ("B", "_seg.nii.gz"), ("C", "_final_seg.nii.gz")):
        _save(labels / f"{name}{suffix}", _case())
        _save(preds / f"{name}.nii.gz", _case())
    return preds, labels


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "score", *args], capture_output=True, text=True, timeout=120
    )


def test_scores_every_naming_and_writes_the_cubes_yaml(folders: tuple[Path, Path], tmp_path: Path) -> None:
    preds, labels = folders
    assert sorted(match_cases(preds, labels)) == ["A", "B", "C"]
    out = tmp_path / "results.yaml"
    proc = _cli(str(preds), str(labels), "--metric-set", "brats2025", "-j", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(out.read_text())
    assert sorted(doc) == ["A", "B", "C"]
    assert doc["A"]["lesionwise_dsc_mean_et"] == 1.0 and doc["A"]["all_instance_tp_wt"] == 1
    assert math.isnan(doc["A"]["lesionwise_dsc_mean_rc"]) and doc["A"]["missing_pred"] is False
    # stdout by default, and the other sets: FeTS labels make ET label 4, so 3 is reported, not fatal
    proc = _cli(str(preds), str(labels))
    assert proc.returncode == 0 and "Dice_ET" in proc.stdout
    assert "labels [3] outside {0, 1, 2, 4} (scored as written)" in proc.stderr


def test_one_line_errors(folders: tuple[Path, Path]) -> None:
    preds, labels = folders
    (preds / "B.nii.gz").unlink()
    (preds / "D.nii.gz").write_bytes(b"not a nifti")
    proc = _cli(str(preds), str(labels), "-m", "brats2025")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "1 case(s) without a prediction: B" in proc.stderr and "1 prediction(s) without a label: D" in proc.stderr
    _save(labels / "D.nii.gz", _case())
    _save(preds / "B.nii.gz", _case())
    with pytest.raises(SpecError, match=r"1 prediction\(s\) cannot be scored: D: unreadable NIfTI"):
        score_folders(preds, labels, "brats2025")
    with pytest.raises(SpecError, match="unknown brats2025 config"):
        score_folders(preds, labels, "brats2025", {"config": "nope"})
    _save(preds / "D.nii.gz", np.zeros((8, 8, 8)))
    with pytest.raises(SpecError, match=r"D: shape \(8, 8, 8\) != \(24, 24, 16\)"):
        score_folders(preds, labels, "brats2025")
