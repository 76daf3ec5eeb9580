"""``HostProcess.terminate`` owns the stop rule: below one second of grace SIGKILL at once (a limit kill: the cube
never sees a SIGTERM), from one second on SIGTERM, the grace, then SIGKILL."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from fedsim.runtimes.process import KILL_AT_ONCE_BELOW_S, HostProcess, kills_at_once

TRAPS_TERM = (
    "import signal, sys, time\n"
    "def term(*_):\n"
    "    print('got SIGTERM', flush=True)\n"
    "    sys.exit(3)\n"
    "signal.signal(signal.SIGTERM, term)\n"
    "print('up', flush=True)\n"
    "time.sleep(60)\n"
)


def _started(tmp_path: Path) -> tuple[HostProcess, Path]:
    log = tmp_path / "job.log"
    handle = HostProcess([sys.executable, "-c", TRAPS_TERM], log_path=log, cwd=tmp_path, env={})
    deadline = time.monotonic() + 10
    while "up" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "up" in log.read_text()
    return handle, log


@pytest.mark.parametrize("grace_s", [0.0, 0.5, 0.99])
def test_below_one_second_is_sigkill_at_once(tmp_path: Path, grace_s: float) -> None:
    handle, log = _started(tmp_path)
    handle.terminate(grace_s)
    assert handle.wait(0) == -9
    assert "got SIGTERM" not in log.read_text()


def test_one_second_or_more_is_sigterm_first(tmp_path: Path) -> None:
    handle, log = _started(tmp_path)
    started = time.monotonic()
    handle.terminate(1.0)
    # its own SIGTERM handler ran and exited (3), or was still exiting when the tree's last SIGTERM came (-15)
    assert handle.wait(0) in (3, -15)
    assert "got SIGTERM" in log.read_text()
    assert time.monotonic() - started < 1.0  # it left at once: the grace is a limit, not a wait


def test_the_threshold() -> None:
    assert KILL_AT_ONCE_BELOW_S == 1.0
    assert kills_at_once(0.999) and not kills_at_once(1.0)
