"""The data-prep cube's entry point run as a real process, as MLCube would call it (minus the container)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CUBE = REPO / "benchmarks" / "fets2022-task2" / "cubes" / "data_prep"
ENTRY = CUBE / "project" / "mlcube.py"
SHAPE = (8, 8, 6)


def cube(task: str, **params: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, str(ENTRY), task, *(f"--{k}={v}" for k, v in params.items())]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for i in range(5):
        case = f"Site7_{i:03d}"
        (data / case).mkdir(parents=True)
        for m in ("t1", "t1ce", "t2", "flair"):
            img = nib.Nifti1Image(np.full(SHAPE, i, dtype=np.int16), np.eye(4))
            nib.save(img, str(data / case / f"{case}_{m}.nii.gz"))
        seg = np.zeros(SHAPE, dtype=np.uint8)
        seg[0, 0, :2] = 4
        nib.save(nib.Nifti1Image(seg, np.eye(4)), str(data / case / f"{case}_seg.nii.gz"))
    (data / "split.csv").write_text("subject_id\nSite7_004\n")
    (tmp_path / "parameters.yaml").write_text(
        f"max_val_size: 3\nseed: 11\nsplit_file: split.csv\nexpected_shape: {list(SHAPE)}\n"
    )
    return tmp_path


def test_mlcube_yaml_declares_the_three_tasks() -> None:
    spec = yaml.safe_load((CUBE / "mlcube.yaml").read_text())
    assert set(spec["tasks"]) == {"prepare", "sanity_check", "statistics"}
    assert spec["platform"]["accelerator_count"] == 0
    assert (CUBE / "workspace" / "parameters.yaml").is_file()


def test_prepare_sanity_check_statistics(workspace: Path) -> None:
    ws = workspace
    params = ws / "parameters.yaml"
    done = cube(
        "prepare",
        data_path=ws / "data",
        parameters_file=params,
        output_path=ws / "prepared",
        output_labels_path=ws / "labels",
        metadata_path=ws / "metadata",
    )
    assert done.returncode == 0, done.stderr
    assert "selected 3 of 5 valid cases" in done.stdout
    assert sorted(p.name for p in (ws / "prepared").iterdir()) == [f"FeTS22_Patient000{i}" for i in (1, 2, 3)]
    report = yaml.safe_load((ws / "metadata" / "prepare_report.yaml").read_text())
    assert report["selected"][0] == {"alias": "FeTS22_Patient0001", "original": "Site7_004"}
    assert (ws / "metadata" / "alias_map.csv").is_file()

    ok = cube("sanity_check", data_path=ws / "prepared", labels_path=ws / "labels", parameters_file=params)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout

    stats_path = ws / "out" / "statistics.yaml"
    st = cube(
        "statistics",
        data_path=ws / "prepared",
        labels_path=ws / "labels",
        parameters_file=params,
        output_path=stats_path,
    )
    assert st.returncode == 0, st.stderr
    stats = yaml.safe_load(stats_path.read_text())
    assert stats["num_valid_subjects"] == 3 and stats["num_invalid_subjects"] == 0
    assert stats["label_voxels"] == {1: 0.0, 2: 0.0, 4: 2.0}
    assert [p.name for p in stats_path.parent.iterdir()] == ["statistics.yaml"]  # no temp file left

    # Break two cases: sanity_check lists every problem on stderr and exits 1.
    (ws / "prepared" / "FeTS22_Patient0001" / "FeTS22_Patient0001_brain_t1.nii.gz").unlink()
    (ws / "labels" / "FeTS22_Patient0002_final_seg.nii.gz").unlink()
    bad = cube("sanity_check", data_path=ws / "prepared", labels_path=ws / "labels", parameters_file=params)
    assert bad.returncode == 1
    lines = bad.stderr.splitlines()
    assert any(line.startswith("FeTS22_Patient0001: missing t1") for line in lines)
    assert any(line.startswith("FeTS22_Patient0002: missing label") for line in lines)

    st = cube(
        "statistics",
        data_path=ws / "prepared",
        labels_path=ws / "labels",
        parameters_file=params,
        output_path=stats_path,
    )
    assert st.returncode == 0, st.stderr
    assert yaml.safe_load(stats_path.read_text())["num_invalid_subjects"] == 2


def test_bad_parameters_exit_2_with_one_line(workspace: Path) -> None:
    params = workspace / "parameters.yaml"
    params.write_text("max_val_sise: 3\n")
    done = cube("sanity_check", data_path=workspace / "data", labels_path=workspace, parameters_file=params)
    assert done.returncode == 2
    assert "max_val_sise" in done.stderr and str(params) in done.stderr
    assert "Traceback" not in done.stderr
