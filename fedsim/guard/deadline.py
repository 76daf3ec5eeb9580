"""Wall-clock deadline from the moment the job's process started.

Unlike MedPerf's inactivity timeout, output does not extend it: a job printing every second dies exactly
like a silent one. Image build, pull and conversion happen before ``started_at`` and are never charged.
"""

from __future__ import annotations

import time

from fedsim.guard.base import Guard, Violation, Watch
from fedsim.runtimes.base import ProcessHandle


class _DeadlineWatch(Watch):
    def __init__(self, handle: ProcessHandle, seconds: float) -> None:
        self._handle = handle
        self._seconds = seconds

    def poll(self) -> Violation | None:
        elapsed = time.monotonic() - self._handle.started_at
        if elapsed >= self._seconds:
            return Violation("timeout", f"wall-clock limit of {self._seconds:g} s reached after {elapsed:.1f} s")
        return None

    def remaining(self) -> float:
        return self._seconds - (time.monotonic() - self._handle.started_at)

    def due_in(self, tick_s: float) -> float:  # the supervisor sleeps until the deadline itself, not in ticks
        return max(0.0, self.remaining())


class DeadlineGuard(Guard):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def watch(self, handle: ProcessHandle) -> _DeadlineWatch:
        return _DeadlineWatch(handle, self.seconds)
