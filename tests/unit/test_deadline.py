"""Wall-clock deadlines: a chatty job dies exactly like a silent one, within a second of the deadline."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from fedsim.guard import DeadlineGuard, supervise
from fedsim.runtimes.process import HostProcess

SILENT = "import time\ntime.sleep(60)\n"
CHATTY = "import time\nwhile True:\n    print('progress ...', flush=True)\n    time.sleep(0.1)\n"
STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "while True:\n    print('x', flush=True)\n    time.sleep(0.1)\n"
)


@pytest.mark.parametrize("code", [SILENT, CHATTY, STUBBORN], ids=["silent", "chatty", "ignores-sigterm"])
def test_killed_within_one_second_of_the_deadline(tmp_path: Path, code: str) -> None:
    handle = HostProcess([sys.executable, "-c", code], log_path=tmp_path / "l.log", cwd=tmp_path, env={})
    start = time.monotonic()
    outcome = supervise(handle, [DeadlineGuard(1.5)])
    gone = time.monotonic() - start
    assert outcome.violation is not None and outcome.violation.status == "timeout"
    assert "after 1.5 s" in outcome.violation.reason
    assert 1.5 <= outcome.duration_s < 2.5
    assert gone < 2.5
    assert handle.wait(0) is not None
