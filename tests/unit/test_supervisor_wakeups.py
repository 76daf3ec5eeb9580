"""The supervisor wakes on events, not on a poll: a job's exit, a stop and the deadline end it within ~50 ms,
whatever the sampling tick; and a long run leaves no supervision threads behind."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from fedsim.cube import Invocation, bind, load_cube
from fedsim.guard import DeadlineGuard, Guard, RamGuard, Violation, Watch, supervise
from fedsim.guard.supervisor import _StopRelay
from fedsim.runtimes.base import ProcessHandle
from fedsim.runtimes.process import HostProcess
from fedsim.testing import FakeHandle, Script
from tests.conftest import CUBES

PROMPT_S = 0.05
SLOW_TICK_S = 5.0  # a poll at this period could never meet PROMPT_S


@pytest.fixture
def inv(tmp_path: Path) -> Invocation:
    return bind(load_cube(CUBES / "baseline"), "infer", {"data_path": tmp_path / "d", "output_path": tmp_path / "o"})


def _fake(script: Script, inv: Invocation, tmp_path: Path) -> FakeHandle:
    return FakeHandle(script, inv, tmp_path / "job.log")


def test_a_real_process_exit_is_noticed_at_once(tmp_path: Path) -> None:
    # CLOCK_MONOTONIC is the same clock in every process: the child says when it is about to exit
    code = "import time\ntime.sleep(0.2)\nprint(time.monotonic(), flush=True)\n"
    handle = HostProcess([sys.executable, "-c", code], log_path=tmp_path / "l.log", cwd=tmp_path, env={})
    outcome = supervise(handle, [DeadlineGuard(30), RamGuard(None)], tick_s=SLOW_TICK_S)
    returned = time.monotonic()
    assert outcome.exit_code == 0 and outcome.violation is None
    assert returned - float((tmp_path / "l.log").read_text()) < PROMPT_S


def test_a_fake_exit_is_noticed_at_once(tmp_path: Path, inv: Invocation) -> None:
    handle = _fake(Script(duration_s=0.2), inv, tmp_path)
    outcome = supervise(handle, [DeadlineGuard(30), RamGuard(None)], tick_s=SLOW_TICK_S)
    assert outcome.exit_code == 0
    assert time.monotonic() - (handle.started_at + 0.2) < PROMPT_S


def test_stop_event_is_noticed_at_once(tmp_path: Path, inv: Invocation) -> None:
    stop, set_at = threading.Event(), []

    def _stop() -> None:
        set_at.append(time.monotonic())
        stop.set()

    threading.Timer(0.2, _stop).start()
    handle = _fake(Script(duration_s=30), inv, tmp_path)
    outcome = supervise(handle, [DeadlineGuard(30), RamGuard(None)], tick_s=SLOW_TICK_S, stop_event=stop)
    assert outcome.interrupted and handle.terminated
    assert time.monotonic() - set_at[0] < PROMPT_S


def test_stop_event_stops_a_real_process_at_once(tmp_path: Path) -> None:
    stop = threading.Event()
    handle = HostProcess(
        [sys.executable, "-c", "import time; time.sleep(30)"], log_path=tmp_path / "l.log", cwd=tmp_path, env={}
    )
    threading.Timer(0.2, stop.set).start()
    outcome = supervise(handle, [DeadlineGuard(30)], tick_s=SLOW_TICK_S, stop_event=stop)
    assert outcome.interrupted and handle.wait(0) is not None
    assert outcome.duration_s < 0.2 + 0.2  # noticed at once; the rest is SIGTERM and reaping


def test_an_already_set_stop_event_returns_at_once(tmp_path: Path, inv: Invocation) -> None:
    stop = threading.Event()
    stop.set()
    start = time.monotonic()
    outcome = supervise(_fake(Script(duration_s=30), inv, tmp_path), [DeadlineGuard(30)], stop_event=stop)
    assert outcome.interrupted and time.monotonic() - start < PROMPT_S


def test_the_deadline_wakes_the_supervisor_when_it_expires(tmp_path: Path, inv: Invocation) -> None:
    handle = _fake(Script(duration_s=30), inv, tmp_path)
    outcome = supervise(handle, [DeadlineGuard(0.3), RamGuard(None)], tick_s=SLOW_TICK_S)
    assert outcome.violation is not None and outcome.violation.status == "timeout"
    assert 0.3 <= outcome.duration_s < 0.3 + PROMPT_S


class _Counting(Guard):
    def __init__(self) -> None:
        self.polls: list[float] = []

    def watch(self, handle: ProcessHandle) -> Watch:
        guard = self

        class _W(Watch):
            def poll(self) -> Violation | None:
                guard.polls.append(time.monotonic())
                return None

        return _W()


def test_samplers_keep_their_cadence(tmp_path: Path, inv: Invocation) -> None:
    counting = _Counting()
    supervise(_fake(Script(duration_s=0.55), inv, tmp_path), [DeadlineGuard(30), counting], tick_s=0.1)
    assert 4 <= len(counting.polls) <= 6  # every 0.1 s, none at the start and none after the exit
    gaps = [b - a for a, b in zip(counting.polls, counting.polls[1:], strict=False)]
    assert all(0.09 <= g < 0.1 + PROMPT_S for g in gaps)


def test_many_jobs_leave_no_supervision_threads(
    tmp_path: Path, inv: Invocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_StopRelay, "IDLE_S", 0.1)
    stop = threading.Event()
    for _ in range(50):
        supervise(_fake(Script(duration_s=0), inv, tmp_path), [DeadlineGuard(30), RamGuard(None)], stop_event=stop)
    names = [t.name for t in threading.enumerate()]
    assert names.count("fedsim-stop-relay") == 1  # one for the run's stop event, not one per job
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(
        t.name in ("fedsim-stop-relay", "fedsim-exit-waiter") for t in threading.enumerate()
    ):
        time.sleep(0.02)
    assert not [t.name for t in threading.enumerate() if t.name in ("fedsim-stop-relay", "fedsim-exit-waiter")]
    assert not _StopRelay._alarms
