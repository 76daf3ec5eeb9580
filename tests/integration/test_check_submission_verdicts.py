"""``check-submission`` verdicts as the federation would give them, and the time-budget forecast, end to end.

Each submission is the valid toy fixture with a few lines appended: one that leaves a heartbeat file beside its
predictions (the metrics cube ignores it: PASS with warnings, exit 0), one that tries the network and a write
outside ``output_path`` and goes on (refused in the sandbox: warnings), and the forecast against a benchmark
whose deadline is too short for it (a warning, not a failure).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import small_benchmark
from tests.integration.test_check_submission import FAST, SUBMISSIONS, fedsim

HEARTBEAT = '\n(OUT / "heartbeat.txt").write_text("alive\\n")  # a progress file beside the predictions\n'
TOLERATED = """
import os, socket  # noqa: E401

try:
    socket.getaddrinfo("example.com", 443)
except OSError as exc:
    print(f"could not fetch weights: {exc}", flush=True)
try:
    os.makedirs("/mlcube_project/cache", exist_ok=True)
except OSError as exc:
    print(f"no cache: {exc}", flush=True)
"""


def variant(tmp_path: Path, name: str, code: str) -> Path:
    cube = tmp_path / name
    shutil.copytree(SUBMISSIONS / "toy_valid", cube)
    with open(cube / "project" / "mlcube.py", "a") as fh:
        fh.write(code)
    return cube


@pytest.mark.e2e
def test_extra_file_in_output_path_is_a_warning_with_exit_0(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    cube = variant(tmp_path, "heartbeat", HEARTBEAT)
    proc = fedsim("check-submission", str(cube), "--runtime", "local", "--json", str(report), *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS with warnings — 1 warning(s): output_files" in proc.stdout
    assert "unexpected heartbeat.txt" in proc.stdout and "ignored by the metrics cube" in proc.stdout
    data = json.loads(report.read_text())
    assert data["verdict"] == "WARN" and data["accepted"] is True
    assert data["reason"].startswith("output_files: one <case>.nii.gz per case (2), and also unexpected heartbeat.txt")
    files = next(c for c in data["checks"] if c["name"] == "output_files")
    assert files["status"] == "warning" and files["details"] == ["unexpected heartbeat.txt"]
    assert data["metrics_mean"]  # the predictions were scored as usual


@pytest.mark.e2e
@pytest.mark.sandbox
def test_tolerated_network_and_write_attempts_are_warnings(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    cube = variant(tmp_path, "tries", TOLERATED)
    proc = fedsim("check-submission", str(cube), "--runtime", "local", "--json", str(report), *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["containment"] == "bwrap" and data["verdict"] == "WARN", data["checks"]
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["network_attempts"]["status"] == "warning"
    assert "Temporary failure in name resolution" in checks["network_attempts"]["cause"]
    assert checks["write_attempts"]["status"] == "warning"
    assert "Read-only file system" in checks["write_attempts"]["cause"]
    assert checks["output_files"]["status"] == "passed" and checks["containment"]["status"] == "passed"
    assert "2 warning(s): write_attempts; network_attempts" in proc.stdout


@pytest.mark.e2e
def test_forecast_per_site_of_the_bundled_and_of_a_given_benchmark(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    args = ["check-submission", str(SUBMISSIONS / "toy_valid"), "--runtime", "local", "--json", str(report), *FAST]
    proc = fedsim(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["verdict"] == "PASS", data["checks"]
    assert [s["site"] for s in data["forecast"]["sites"]] == ["site_a", "site_b", "site_c"]
    site_c = data["forecast"]["sites"][2]
    assert site_c["budget_s"] == 540 and site_c["ram_limit_gb"] == 16 and site_c["gpu_limit_gb"] is None
    assert site_c["scale"] == pytest.approx(15.14, abs=0.01) and site_c["time_margin_pct"] > 25
    assert "time-budget forecast" in proc.stdout and "×15.14 by voxel count" in proc.stdout

    # 0.5 s per case at 240x240x155 is far below what the toy model needs once scaled: a warning, still exit 0
    bench = small_benchmark(tmp_path, shape=(240, 240, 155), sites=2, cases=40, timeout_per_case_s=0.5)
    proc = fedsim(*args, "--benchmark", str(bench))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["verdict"] == "WARN" and data["reason"].startswith("forecast: s0: predicted"), data["reason"]
    sites = data["forecast"]["sites"]
    assert [(s["site"], s["cases"], s["budget_s"]) for s in sites] == [("s0", 40, 20.0), ("s1", 40, 20.0)]
    assert all(s["time_margin_pct"] < 25 and s["warnings"] for s in sites)
    assert "warning: s0: predicted" in proc.stdout and "PASS with warnings" in proc.stdout

    proc = fedsim(*args, "--benchmark", str(tmp_path / "no-such-benchmark"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
