"""Run a launched job to its end under a set of guards; the only place that decides to kill."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from fedsim.guard.base import Guard, Usage, Violation
from fedsim.runtimes.base import ProcessHandle


@dataclass
class Outcome:
    exit_code: int | None
    violation: Violation | None
    duration_s: float
    usage: Usage
    interrupted: bool = False


def supervise(
    handle: ProcessHandle,
    guards: list[Guard],
    *,
    tick_s: float = 0.1,
    grace_s: float = 0.5,
    stop_event: threading.Event | None = None,
) -> Outcome:
    """Wait for ``handle``; on the first violation (or ``stop_event``), terminate its whole tree."""
    alarm = threading.Event()

    def _wake_on_exit() -> None:  # so a job that ends is noticed at once, not at the next tick
        handle.wait(None)
        alarm.set()

    threading.Thread(target=_wake_on_exit, name="fedsim-exit-waiter", daemon=True).start()
    watches = []
    for g in guards:
        w = g.watch(handle)
        w.alarm = alarm
        watches.append(w)
    usage = Usage()
    violation: Violation | None = None
    interrupted = False
    exit_code: int | None = None
    try:
        while True:
            exit_code = handle.wait(timeout=0)
            if exit_code is not None:
                break
            if stop_event is not None and stop_event.is_set():
                interrupted = True
                break
            for w in watches:
                violation = w.poll()
                if violation is not None:
                    break
            if violation is not None:
                break
            alarm.wait(tick_s)  # a watcher with news wakes us at once (GPU sampler)
    finally:
        if exit_code is None:
            handle.terminate(grace_s=grace_s)
            exit_code = handle.wait(timeout=5)
        duration = time.monotonic() - handle.started_at
        for w in watches:
            w.stop(usage)
        if violation is None and handle.oom_killed():
            violation = Violation("ram_exceeded", "killed by the container's memory limit (OOMKilled)")
    return Outcome(exit_code, violation, duration, usage, interrupted)
