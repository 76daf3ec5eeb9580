"""``fedsim check-submission`` and ``fedsim dry-run`` over the fixture submissions (tests/fixtures/submissions).

Each broken fixture is the valid toy model with one thing wrong; each must be caught by the right check with
the right cause, on docker (singularity-fidelity mode) and, where it makes sense, on the local runtime.
One dry run per runtime checks them all at once (short deadlines and a 1 GB RAM limit keep it quick).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES

SUBMISSIONS = FIXTURES / "submissions"
FAST = ["--timeout-per-case-s", "15", "--ram-gb", "1"]  # the hang costs 30 s; OOM under load can take ~15 s

# fixture -> (first failing check, phrase of its cause); None = must PASS
DOCKER_EXPECTED: dict[str, tuple[str, str] | None] = {
    "baseline": None,
    "toy_valid": None,
    "crashes": ("run", "simulated crash: model weights could not be loaded"),
    "hangs": ("run", "timeout: wall-clock limit of 30 s"),
    "no_output": ("output_files", "wrote no prediction"),
    "wrong_names": ("output_files", "unexpected FeTS22_Patient0001_seg.nii.gz"),
    "wrong_shape": ("output_geometry", "shape (48, 48, 32) != (96, 96, 64)"),
    "float_labels": ("output_labels", "non-integer values (stored as float32"),
    "out_of_range_labels": ("output_labels", "labels [3] outside {0, 1, 2, 4}"),
    "writes_outside": ("run", "wrote to scratch, outside output_path"),
    "relative_entrypoint": ("entrypoint", "ENTRYPOINT runs 'mlcube.py' by a relative path"),
    "root_only_checkpoint": ("image_permissions", "readable only by root: /mlcube_project/checkpoint.npy"),
    "exceeds_ram": ("run", "ram_exceeded"),
}
# what the local runtime (no containers) can catch: in its bubblewrap sandbox, writing outside output_path fails
# the run as in a container (the working directory is read-only)
LOCAL_EXPECTED = {k: v for k, v in DOCKER_EXPECTED.items() if k != "root_only_checkpoint"}
LOCAL_EXPECTED["exceeds_ram"] = ("run", "ram_exceeded: RAM")
# unsandboxed (check-submission of one's own cube without docker or bubblewrap) it shows up as containment
UNSANDBOXED_WRITES_OUTSIDE = ("containment", "wrote outside output_path: wrote cwd/scratch")
# other checks allowed to fail as well, because they are the same one problem seen from another side
SAME_CAUSE = {"relative_entrypoint": {"workdir", "run"}, "root_only_checkpoint": {"run"}}


def fedsim(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fedsim.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=400
    )


def by_name(path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(path.read_text())
    return {s["submission"]: s for s in data["submissions"]}


def assert_caught(reports: dict[str, dict[str, Any]], expected: dict[str, tuple[str, str] | None]) -> None:
    assert set(reports) == set(expected)
    for name, want in expected.items():
        r = reports[name]
        failed = [c["name"] for c in r["checks"] if c["status"] == "failed"]
        if want is None:
            assert r["verdict"] == "PASS", (name, r["reason"], r["checks"])
            continue
        check, phrase = want
        assert r["verdict"] == "FAIL", name
        assert r["reason"].startswith(f"{check}: "), (name, r["reason"])
        assert phrase in r["reason"], (name, r["reason"])
        assert set(failed) <= {check} | SAME_CAUSE.get(name, set()), (name, failed)
        failing = next(c for c in r["checks"] if c["name"] == check)
        assert failing["fix"], (name, "every problem comes with a fix")


@pytest.fixture(scope="module")
def docker_dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("dry-run-docker")
    proc = fedsim("dry-run", str(SUBMISSIONS), "--out", str(out), "--runtime", "docker", *FAST)
    return proc, out


@pytest.mark.docker
def test_dry_run_catches_every_fixture_on_docker(docker_dry_run: tuple[Any, Path]) -> None:
    proc, out = docker_dry_run
    assert proc.returncode == 0, proc.stderr + proc.stdout
    reports = by_name(out / "dry_run.json")
    assert_caught(reports, DOCKER_EXPECTED)
    assert all(r["runtime"] == "docker (singularity fidelity)" for r in reports.values())
    # the classic singularity failures also get diagnose's cause-and-fix line in the run check
    runs = {n: next(c for c in r["checks"] if c["name"] == "run") for n, r in reports.items()}
    assert "readable only by root" in runs["root_only_checkpoint"]["cause"]
    assert "ENTRYPOINT/CMD" in runs["relative_entrypoint"]["cause"]
    assert reports["exceeds_ram"]["peaks"]["ram_bytes"] > 0.5 * 1024**3
    assert reports["baseline"]["metrics_mean"]["Dice_WT"] > 0.5


@pytest.mark.docker
def test_dry_run_table_and_exports(docker_dry_run: tuple[Any, Path]) -> None:
    proc, out = docker_dry_run
    lines = proc.stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if "submission" in ln and "verdict" in ln)
    for col in ("reason", "s/case", "peak GPU", "peak RAM"):
        assert col in lines[header]
    forecast = next(i for i, ln in enumerate(lines) if ln.startswith("time-budget forecast"))
    rows = [ln for ln in lines[header + 1 : forecast] if ln.split("│")[0].strip() in DOCKER_EXPECTED]
    assert len(rows) == len(DOCKER_EXPECTED)
    # the forecast: a row per site of the bundled benchmark for every submission whose run succeeded
    per_site = {(c[0].strip(), c[1].strip()) for c in (ln.split("│") for ln in lines[forecast:]) if len(c) > 2}
    assert {("toy_valid", s) for s in ("site_a", "site_b", "site_c")} <= per_site
    verdicts = {ln.split("│")[0].strip(): ln.split("│")[1].strip() for ln in rows}
    assert verdicts == {n: "PASS" if w is None else "FAIL" for n, w in DOCKER_EXPECTED.items()}
    with open(out / "dry_run.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["submission"] for r in table] == sorted(DOCKER_EXPECTED)
    assert all(float(r["seconds_per_case"]) > 0 for r in table)
    assert json.loads((out / "dry_run.json").read_text())["counts"] == {"PASS": 2, "WARN": 0, "FAIL": 11, "ERROR": 0}


@pytest.mark.docker
def test_check_submission_of_a_bare_image_with_json(tmp_path: Path, docker_dry_run: Any) -> None:
    """An image (built by the dry run) follows the FeTS infer contract: entrypoint checked from its config."""
    report = tmp_path / "report.json"
    proc = fedsim("check-submission", "fedsim-test/sub-toy-valid:0.1", "--json", str(report), *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    checks = {c["name"]: c["status"] for c in data["checks"]}
    assert data["verdict"] == "PASS"
    assert (
        checks["mlcube"] == "skipped" and checks["entrypoint"] == "passed" and checks["image_permissions"] == "passed"
    )


@pytest.mark.e2e
@pytest.mark.sandbox
def test_dry_run_on_the_local_runtime(tmp_path: Path) -> None:
    """No containers: the same problems are caught (container-only checks are skipped, never passed)."""
    from fedsim.submission.check import resolve_target
    from fedsim.submission.dryrun import dry_run, load_submissions
    from fedsim.submission.options import CheckOptions
    from fedsim.submission.toydata import toy_data

    targets = load_submissions(SUBMISSIONS / "local_subset.yaml")
    targets = [t for t in targets if t.name != "baseline"] + [resolve_target(str(SUBMISSIONS / "baseline"))]
    options = CheckOptions(runtime="local", timeout_per_case_s=15, ram_gb=1, work_dir=tmp_path / "work")
    reports = dry_run(targets, options, toy_data())
    as_dicts = {r.submission: r.to_dict() for r in reports}
    assert_caught(as_dicts, LOCAL_EXPECTED)
    for r in reports:
        assert r.runtime == "local" and r.containment == "bwrap", (r.submission, r.runtime, r.containment)
        for name in ("image_permissions", "image_size"):
            check = r.check(name)
            assert check is not None and check.status.value == "skipped", (r.submission, name)


@pytest.mark.e2e
def test_check_submission_exit_codes_and_json(tmp_path: Path) -> None:
    ok = tmp_path / "ok.json"
    proc = fedsim("check-submission", str(SUBMISSIONS / "toy_valid"), "--runtime", "local", "--json", str(ok), *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout
    data = json.loads(ok.read_text())
    assert data["verdict"] == "PASS" and data["reason"] == "" and data["num_cases"] == 2
    assert data["timings"]["inference_s"] > 0 and data["timings"]["seconds_per_case"] > 0
    assert set(data["timings"]["case_seconds"]) == {"FeTS22_Patient0001", "FeTS22_Patient0002"}
    assert data["peaks"]["ram_bytes"] > 0
    assert set(data["metrics_mean"]) >= {"Dice_ET", "Dice_TC", "Dice_WT", "Hausdorff95_WT"}
    assert data["limits"]["timeout_per_case_s"] == 15 and data["limits"]["gpu_memory_gb"] == 11

    bad = tmp_path / "bad.json"
    proc = fedsim("check-submission", str(SUBMISSIONS / "crashes"), "--runtime", "local", "--json", str(bad), *FAST)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert json.loads(bad.read_text())["verdict"] == "FAIL"
    assert "FAIL" in proc.stdout and "simulated crash" in proc.stdout

    proc = fedsim("check-submission", str(tmp_path / "no-such-cube"), "--runtime", "local")
    assert proc.returncode == 2
    assert "no such MLCube folder" in proc.stderr

    proc = fedsim("check-submission", str(SUBMISSIONS / "toy_valid"), "--runtime", "podman")
    assert proc.returncode == 2
    assert "unknown runtime" in proc.stderr


NO_CONTAINMENT = {"FEDSIM_BWRAP": "off", "DOCKER_HOST": "unix:///nonexistent/docker.sock"}


@pytest.mark.e2e
def test_check_submission_of_ones_own_cube_runs_unsandboxed_and_says_so(tmp_path: Path) -> None:
    """Without docker and bubblewrap a participant's check still runs, as a plain process, and the report says so."""
    report = tmp_path / "r.json"
    proc = fedsim(
        "check-submission", str(SUBMISSIONS / "writes_outside"), "--json", str(report), *FAST, env=NO_CONTAINMENT
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["runtime"] == "local" and data["containment"] == "none"
    check, phrase = UNSANDBOXED_WRITES_OUTSIDE
    assert data["reason"].startswith(f"{check}: {phrase}"), data["reason"]
    assert any("UNSANDBOXED" in n and "bubblewrap" in n for n in data["notes"]), data["notes"]
    assert "UNSANDBOXED" in proc.stdout


def test_dry_run_refuses_unsandboxed_submissions(tmp_path: Path) -> None:
    """Organisers' dry run without docker and bubblewrap: exit 2, one line naming the cause and fix, nothing run."""
    proc = fedsim("dry-run", str(SUBMISSIONS / "local_subset.yaml"), "--out", str(tmp_path / "out"), env=NO_CONTAINMENT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "fix: unset FEDSIM_BWRAP" in line and "--allow-unsandboxed" in line, line
    assert not (tmp_path / "out" / "dry_run.csv").exists()


@pytest.mark.e2e
def test_check_submission_on_user_data(tmp_path: Path) -> None:
    """``--data`` with prepared cases and ``--labels``; without labels the metrics are skipped, not failed."""
    from fedsim.submission.toydata import toy_data

    toy = toy_data()
    report = tmp_path / "r.json"
    args = ["check-submission", str(SUBMISSIONS / "toy_valid"), "--runtime", "local", "--json", str(report)]
    proc = fedsim(*args, "--data", str(toy.data_dir), "--labels", str(toy.labels_dir), "--work-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(report.read_text())["metrics_mean"]
    proc = fedsim(*args, "--data", str(toy.data_dir), "--work-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = next(c for c in json.loads(report.read_text())["checks"] if c["name"] == "metrics")
    assert metrics["status"] == "skipped"
