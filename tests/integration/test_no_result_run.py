"""Issue 15, item 5, end to end: a bad case no longer drops a site without a word. The console names each sanity
problem with the site's own case name (the alias map stays at the site), a run in which every site's data prep
failed exits 1 instead of 0, ``--json`` puts the summary alone on stdout, and ``fedsim runs`` shows the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from fedsim.synth.writer import synthesize_site
from tests.conftest import CUBES, ROOT

pytestmark = pytest.mark.e2e

SHAPE = (48, 48, 32)


def _bad_site(root: Path, name: str, bad_case: int) -> Path:
    """Raw cases of a site where case ``bad_case`` has label 3 (not a BraTS label): prepare accepts the case,
    the sanity check refuses it."""
    data = root / f"{name}-data"
    ids = synthesize_site(data, n_cases=2, seed=7, shape=SHAPE, case_prefix=f"{name}_hospital")
    seg_path = data / ids[bad_case - 1] / f"{ids[bad_case - 1]}_seg.nii.gz"
    seg = nib.load(seg_path)
    labels = np.asarray(seg.dataobj).copy()
    labels[labels == 2] = 3
    nib.save(nib.Nifti1Image(labels, seg.affine, seg.header), seg_path)
    site = root / "sites" / f"{name}.yaml"
    site.parent.mkdir(exist_ok=True)
    site.write_text(yaml.safe_dump({"name": name, "data": {"path": str(data)}, "runtime": "local"}))
    return data / ids[bad_case - 1]


def test_a_run_without_any_result_exits_1_and_names_the_cases(tmp_path: Path) -> None:
    bad = [_bad_site(tmp_path, "s0", 2), _bad_site(tmp_path, "s1", 1)]
    bench = tmp_path / "benchmark.yaml"
    bench.write_text(
        yaml.safe_dump(
            {
                "name": "bad-data",
                "data_prep": {"cube": str(CUBES / "data_prep"), "parameters_file": "generated"},
                "metrics": {"cube": str(CUBES / "metrics"), "parameters_file": "generated"},
                "models": [{"name": "baseline", "cube": str(CUBES / "baseline")}],
                "limits": {"task_timeout_s": 120},
                "data": {"expected_shape": list(SHAPE)},
                "sites": ["sites"],
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "COLUMNS": "200"}
    runs = tmp_path / "runs"
    argv = [sys.executable, "-m", "fedsim.cli", "run", "benchmark", str(bench), "--runs-dir", str(runs)]
    argv += ["--run-id", "r1", "--json", "-j", "2"]
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # stdout holds the JSON document and nothing else
    assert summary["run_id"] == "r1" and summary["exit_code"] == 1 and summary["ranking"] is None
    jobs = {(j["site"], j["name"]): j for j in summary["jobs"]}
    for site in ("s0", "s1"):
        assert jobs[(site, "sanity_check")]["status"] == "failed"
        assert jobs[(site, "infer.baseline")]["status"] == "skipped"
    console = proc.stderr
    assert "Traceback" not in console
    for site, case_dir in zip(("s0", "s1"), bad, strict=True):
        # the site's own case name, beside the alias the cube used, on the site's line
        line = next(ln for ln in console.splitlines() if ln.strip().startswith(f"{site}: {case_dir.name} ("))
        assert "FeTS22_Patient" in line and "label values [3]" in line, line
    assert "the run produced no result" in console
    # the alias map never left the site: not in what leaves it, nor in the summary
    assert "hospital" not in json.dumps(summary["jobs"])
    # run history
    listed = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "runs", "list", "--runs-dir", str(runs), "--json"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    (info,) = json.loads(listed.stdout)["runs"]
    assert (info["run_id"], info["state"], info["benchmark"]) == ("r1", "no result", "bad-data")
    assert info["jobs_failed"] == 2 and info["jobs_skipped"] >= 4
    shown = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "runs", "show", "r1", "--runs-dir", str(runs)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0 and "s0/sanity_check" in shown.stdout and "no ranking" in shown.stdout


@pytest.mark.sandbox
def test_check_submission_json_on_stdout(tmp_path: Path) -> None:
    """``--json -``: the report alone on stdout (jq-able), the table and notes on stderr; ``--json FILE`` as before."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cube = ROOT / "tests" / "fixtures" / "submissions" / "toy_valid"
    argv = [sys.executable, "-m", "fedsim.cli", "check-submission", str(cube), "--runtime", "local"]
    run = {"env": env, "cwd": tmp_path, "capture_output": True, "text": True, "timeout": 300}
    proc = subprocess.run([*argv, "--json", "-"], **run)  # type: ignore[call-overload]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["verdict"] == "PASS" and report["submission"] == "toy_valid"
    assert "PASS" in proc.stderr  # the human view went to stderr
    out = tmp_path / "report.json"
    proc = subprocess.run([*argv, "--json", str(out)], **run)  # type: ignore[call-overload]
    assert proc.returncode == 0 and json.loads(out.read_text())["verdict"] == "PASS"
    assert f"wrote {out}" in proc.stdout
