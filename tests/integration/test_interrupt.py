"""Ctrl-C: running jobs (processes or containers) are killed, the ledger says interrupted, resume works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsim.runtimes.orphans import orphan_processes
from fedsim.store.ledger import Ledger
from tests.conftest import CUBES, FIXTURES, ROOT, containers_of_run, small_benchmark


def _interrupt_run(tmp_path: Path, runtime: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    bench = small_benchmark(
        tmp_path,
        models={"sleeper": FIXTURES / "cubes" / "hanging_model", "baseline": CUBES / "baseline"},
        runtime=runtime,
        sites=1,
        cases=1,
        timeout_per_case_s=300,
    )
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedsim.cli", "run", "benchmark", str(bench), "--runs-dir", str(runs), "--run-id", "r"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    log = runs / "r" / "sites" / "s0" / "logs" / "infer.sleeper.log"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (log.exists() and "still working" in log.read_text()):
        time.sleep(0.2)
    assert log.exists(), "the hanging model never started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), runs


def _check(result: subprocess.CompletedProcess[str], runs: Path) -> None:
    assert result.returncode == 130, result.stderr
    assert "--resume r" in result.stderr and "Traceback" not in result.stderr
    ledger = Ledger(runs / "r" / Ledger.FILE)
    assert ledger.run_state("r") == "interrupted"
    done = ledger.done()
    assert "s0/prepare" in done and "s0/infer.sleeper" not in done
    ledger.close()
    assert not orphan_processes("r")


@pytest.mark.e2e
def test_ctrl_c_on_local_runtime(tmp_path: Path) -> None:
    result, runs = _interrupt_run(tmp_path, "local")
    _check(result, runs)


@pytest.mark.docker
@pytest.mark.e2e
def test_ctrl_c_kills_containers(tmp_path: Path) -> None:
    result, runs = _interrupt_run(tmp_path, "docker")
    _check(result, runs)
    assert containers_of_run("r") == []
