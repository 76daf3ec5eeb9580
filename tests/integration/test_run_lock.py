"""Locked runs, end to end through the CLI on the local runtime: a live run cannot be resumed (or started
again) under its feet, a killed run's lock is gone with it, a run id is a plain name inside ``--runs-dir``,
``--retry-failed`` reruns exactly the jobs that did not succeed and their dependants, and ``summary.json``
records every segment.

The model is ``tests/fixtures/cubes/controlled_model``, copied per test and steered by files beside its
script: ``hold`` keeps it waiting, ``fail_at_<site>`` makes it fail at that site.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from fedsim.cli import main
from fedsim.runtimes.orphans import orphan_processes
from fedsim.store.ledger import Ledger
from tests.conftest import CUBES, FIXTURES, ROOT, small_benchmark

pytestmark = pytest.mark.e2e

IN_USE = (
    r"error: run {id} is in use by pid {pid} on host {host} since \d\d:\d\d:\d\d \(wait for it to finish, or stop it\)"
)


def _bench(tmp: Path, *, sites: int = 1) -> tuple[Path, Path]:
    """A small benchmark with the controlled model first (it runs before the baseline at each site)."""
    ctl = tmp / "ctl"
    shutil.copytree(FIXTURES / "cubes" / "controlled_model", ctl)
    bench = small_benchmark(
        tmp, models={"ctl": ctl, "baseline": CUBES / "baseline"}, sites=sites, cases=1, timeout_per_case_s=300
    )
    return bench, ctl / "project"


def _argv(*args: str) -> list[str]:
    # --allow-unsandboxed only matters where bubblewrap cannot run; with it the sandbox is used as usual
    return [sys.executable, "-m", "fedsim.cli", "run", "benchmark", *args, "--allow-unsandboxed"]


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _argv(*args), cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_argv(*args), cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=timeout)


def _wait_for_hold(log: Path, proc: subprocess.Popen[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (log.exists() and "holding" in log.read_text()):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert log.exists() and "holding" in log.read_text(), "the controlled model never started"


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _statuses(run: Path) -> dict[str, str]:
    return {f"{j['site']}/{j['name']}": j["status"] for j in _summary(run)["jobs"]}


def _starts(run: Path) -> Counter[str]:
    ledger = Ledger(run / Ledger.FILE)
    try:
        return Counter(k for k, _a, e in ledger.events() if e == "started")
    finally:
        ledger.close()


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("NVML unavailable")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_live_run_cannot_be_resumed_or_started_again(tmp_path: Path) -> None:
    bench, ctl = _bench(tmp_path)
    runs = tmp_path / "runs"
    (ctl / "hold").touch()
    live = _start(str(bench), "--runs-dir", str(runs), "--run-id", "live")
    try:
        log = runs / "live" / "sites" / "s0" / "logs" / "infer.ctl.log"
        _wait_for_hold(log, live)
        expected = IN_USE.format(id="live", pid=live.pid, host=re.escape(socket.gethostname()))

        resumed = _run("--runs-dir", str(runs), "--resume", "live")
        assert resumed.returncode == 1, resumed.stderr
        assert re.fullmatch(expected, _one_error_line(resumed)), resumed.stderr

        again = _run(str(bench), "--runs-dir", str(runs), "--run-id", "live")  # same id, no --resume
        assert again.returncode == 1, again.stderr
        assert re.fullmatch(expected, _one_error_line(again)), again.stderr

        # the live run and its model were left alone: no orphan cleanup, no second writer
        assert live.poll() is None
        size = log.stat().st_size
        time.sleep(1.0)
        assert log.stat().st_size > size, "the live run's model stopped"
    finally:
        (ctl / "hold").unlink()
        try:
            _out, err = live.communicate(timeout=240)
        finally:
            if live.poll() is None:
                live.kill()
                live.communicate()
    assert live.returncode == 0, err
    run = runs / "live"
    assert set(_statuses(run).values()) == {"succeeded"}
    assert set(_starts(run).values()) == {1}, "a job ran twice"
    segments = _summary(run)["segments"]
    assert [(s["resumed"], s["state"], s["jobs_run"]) for s in segments] == [(False, "completed", 7)]
    assert (run / "run.lock").read_text() == ""  # released on the way out


def test_a_killed_runs_lock_is_released_and_the_summary_keeps_every_segment(tmp_path: Path) -> None:
    bench, ctl = _bench(tmp_path)
    runs = tmp_path / "runs"
    (ctl / "hold").touch()
    killed = _start(str(bench), "--runs-dir", str(runs), "--run-id", "k")
    _wait_for_hold(runs / "k" / "sites" / "s0" / "logs" / "infer.ctl.log", killed)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert json.loads((runs / "k" / "run.lock").read_text())["pid"] == killed.pid  # a stale name, no lock
    (ctl / "hold").unlink()

    resumed = _run("--runs-dir", str(runs), "--resume", "k")
    assert resumed.returncode == 0, resumed.stderr
    run = runs / "k"
    assert set(_statuses(run).values()) == {"succeeded"}
    assert not orphan_processes("k")
    summary = _summary(run)
    first, second = summary["segments"]
    assert (first["resumed"], first["state"], second["resumed"], second["state"]) == (
        False,
        "aborted",
        True,
        "completed",
    )
    assert first["jobs_run"] == 4 and second["jobs_run"] == 4  # data prep + infer.ctl; infer.ctl again + the rest
    assert first["started"] < second["started"] and first["finished"] <= second["started"]
    assert summary["total_duration_s"] == pytest.approx(first["duration_s"] + second["duration_s"], abs=0.01)
    assert summary["duration_s"] <= summary["total_duration_s"]  # the existing keys describe the last segment
    assert summary["started_at"] == second["started"]

    # the finished run's id is taken: a new run under it is refused, and nothing of the run changes
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "run.lock"}
    again = _run(str(bench), "--runs-dir", str(runs), "--run-id", "k")
    assert again.returncode == 2, again.stderr
    assert _one_error_line(again) == (
        f"error: run k already exists in {runs}; continue it with --resume k, or pick another --run-id"
    )
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "run.lock"} == before


@pytest.mark.parametrize("bad", ["../escape", "a/b", "..", ""])
@pytest.mark.parametrize("option", ["--run-id", "--resume"])
def test_invalid_run_ids_are_refused_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str, option: str
) -> None:
    bench = small_benchmark(tmp_path / "b", models={"baseline": CUBES / "baseline"}, sites=1, cases=1)
    runs = tmp_path / "here" / "runs"

    def tree() -> list[str]:
        return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    before = tree()
    args = ["run", "benchmark", "--runs-dir", str(runs), option, bad]
    args += [str(bench)] if option == "--run-id" else []
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {option} {bad!r} is not a valid run id: use letters, digits, '.', '_' and '-', starting with a "
        "letter or digit (no path separators, no '..', at most 128 characters); it names a directory in --runs-dir"
    )
    assert tree() == before  # nothing written, inside --runs-dir or outside it


def test_retry_failed_needs_resume(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "benchmark", "--retry-failed"])
    assert info.value.code == 2
    assert "--retry-failed" in capsys.readouterr().err


def test_retry_failed_reruns_exactly_the_failed_jobs_and_their_dependants(tmp_path: Path) -> None:
    bench, ctl = _bench(tmp_path, sites=2)
    runs = tmp_path / "runs"
    run = runs / "f"
    (ctl / "fail_at_s0").touch()
    first = _run(str(bench), "--runs-dir", str(runs), "--run-id", "f")
    assert first.returncode == 0, first.stderr  # a failed model is a result
    statuses = _statuses(run)
    assert statuses.pop("s0/infer.ctl") == "failed"
    assert set(statuses.values()) == {"succeeded"}  # s0/evaluate.ctl scored the penalty rows
    penalty = yaml.safe_load((run / "results" / "s0.yaml").read_text())
    assert all(case["ctl"]["missing_pred"] for case in penalty.values())

    # a plain resume keeps the failure, even once the model would pass
    (ctl / "fail_at_s0").unlink()
    kept = _run("--runs-dir", str(runs), "--resume", "f")
    assert kept.returncode == 0, kept.stderr
    assert _statuses(run)["s0/infer.ctl"] == "failed"
    starts_before = _starts(run)

    retried = _run("--runs-dir", str(runs), "--resume", "f", "--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert (
        "retrying 2 jobs that did not succeed, with their dependants: s0/evaluate.ctl, s0/infer.ctl" in retried.stdout
    )
    assert _starts(run) - starts_before == Counter({"s0/infer.ctl": 1, "s0/evaluate.ctl": 1})
    assert set(_statuses(run).values()) == {"succeeded"}
    scored = yaml.safe_load((run / "results" / "s0.yaml").read_text())
    assert not any(case["ctl"]["missing_pred"] for case in scored.values())
    assert scored.keys() == penalty.keys()
    assert all(case["baseline"] == penalty[c]["baseline"] for c, case in scored.items())  # kept, not rerun

    summary = _summary(run)
    segs = summary["segments"]
    assert [(s["resumed"], s["retry_failed"], s["state"], s["jobs_run"]) for s in segs] == [
        (False, False, "completed", 14),
        (True, False, "completed", 0),
        (True, True, "completed", 2),
    ]
    assert summary["total_duration_s"] == pytest.approx(sum(s["duration_s"] for s in segs), abs=0.01)
    for key in ("run_id", "fedsim_version", "benchmark", "sites", "models", "started_at", "duration_s", "jobs"):
        assert key in summary
    assert summary["interrupted"] is False
