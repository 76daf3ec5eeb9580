"""The reference baseline model cube, run as a real subprocess on synthetic sites with domain shift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fedsim.synth import SiteShift, synthesize_site

CUBE = Path(__file__).resolve().parents[2] / "benchmarks" / "fets2022-task2" / "cubes" / "baseline"
SHAPE = (96, 96, 64)
SHIFTS = {
    "plain": SiteShift(),
    "bright": SiteShift(
        intensity_scale=1.4, intensity_offset=0.05, noise_std=0.03, bias_field=0.15, contrast_gamma=1.1
    ),
    "dark": SiteShift(intensity_scale=0.7, noise_std=0.06, bias_field=0.25, contrast_gamma=0.85),
}
REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * float((pred & truth).sum()) / total


def _to_fets_layout(raw: Path, data: Path, labels: Path, cases: list[str]) -> None:
    """Raw BraTS names → ``<case>/<case>_brain_<mod>.nii.gz`` and ``labels/<case>_final_seg.nii.gz``."""
    for case in cases:
        (data / case).mkdir(parents=True)
        for mod in ("t1", "t1ce", "t2", "flair"):
            (raw / case / f"{case}_{mod}.nii.gz").rename(data / case / f"{case}_brain_{mod}.nii.gz")
        labels.mkdir(exist_ok=True)
        (raw / case / f"{case}_seg.nii.gz").rename(labels / f"{case}_final_seg.nii.gz")


@pytest.mark.e2e
def test_baseline_cube_segments_shifted_sites(tmp_path: Path) -> None:
    outside = tmp_path / "cwd"  # run from an unrelated cwd: the cube must not rely on it
    outside.mkdir()
    for index, (site, shift) in enumerate(SHIFTS.items()):
        raw, data, labels, out = (tmp_path / site / d for d in ("raw", "data", "labels", "predictions"))
        cases = synthesize_site(raw, 2, seed=100 + index, shape=SHAPE, shift=shift, case_prefix=site)
        _to_fets_layout(raw, data, labels, cases)
        data.chmod(0o555)  # the data mount is read-only at the sites
        proc = subprocess.run(
            [
                sys.executable,
                str(CUBE / "project" / "mlcube.py"),
                "infer",
                f"--data_path={data}",
                f"--output_path={out}",
                "--parameters_file=/nonexistent/parameters.yaml",
            ],
            cwd=outside,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        data.chmod(0o755)
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{c}.nii.gz" for c in cases)
        scores: dict[str, list[float]] = {r: [] for r in REGIONS}
        for case in cases:
            truth_img = nib.load(labels / f"{case}_final_seg.nii.gz")
            pred_img = nib.load(out / f"{case}.nii.gz")
            t1 = nib.load(data / case / f"{case}_brain_t1.nii.gz")
            assert pred_img.shape == t1.shape
            assert np.allclose(pred_img.affine, t1.affine)
            assert pred_img.get_data_dtype() == np.uint8
            pred = np.asarray(pred_img.dataobj)
            truth = np.asarray(truth_img.dataobj)
            assert set(np.unique(pred).tolist()) <= {0, 1, 2, 4}
            for region, labels_in in REGIONS.items():
                scores[region].append(_dice(np.isin(pred, labels_in), np.isin(truth, labels_in)))
        means = {r: float(np.mean(v)) for r, v in scores.items()}
        print(f"{site}: " + " ".join(f"{r}={m:.3f}" for r, m in means.items()))
        assert means["WT"] >= 0.7, (site, means)
    assert list(outside.iterdir()) == []  # nothing written to the cwd


def test_baseline_cube_fails_cleanly_without_cases(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(CUBE / "project" / "mlcube.py"),
            "infer",
            f"--data_path={tmp_path}",
            f"--output_path={tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "no cases" in proc.stderr


def test_baseline_cube_is_standalone() -> None:
    """A participant's model: only numpy, scipy, nibabel and the stdlib — never fedsim."""
    for source in (CUBE / "project").glob("*.py"):
        text = source.read_text()
        assert "fedsim" not in text, source
        assert "os.getcwd" not in text and "Path.cwd" not in text, source
