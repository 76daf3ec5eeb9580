"""Run a launched job to its end under a set of guards; the only place that decides to kill.

The supervisor sleeps on one alarm, never in fixed ticks: until the earliest moment one of its watchers asked to
be polled (:meth:`fedsim.guard.base.Watch.due_in`: the deadline's expiry, the RAM sampler's 10 Hz), or until the
alarm rings — the job's exit (a waiter thread blocked in ``handle.wait``), ``stop_event`` (one relay thread per
stop event, shared by every job that watches it), or a watcher that learned of a violation by itself (the GPU
sampler). A job that ends is therefore noticed within a millisecond or so, and a stop at once.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from fedsim.guard.base import Guard, Usage, Violation, Watch
from fedsim.runtimes.base import ProcessHandle


@dataclass
class Outcome:
    exit_code: int | None
    violation: Violation | None
    duration_s: float
    usage: Usage
    interrupted: bool = False


class _StopRelay:
    """Rings the alarms of every supervisor watching one stop event when it is set.

    One daemon thread per stop event (a run has one), whatever the number of jobs: it blocks on the event and
    exits once the event is set, or after ``IDLE_S`` without a job watching it (the next job starts a new one;
    an executor with one event per job, as Ray's tasks, has at most the jobs of the last ``IDLE_S`` seconds).
    """

    IDLE_S = 5.0
    _lock = threading.Lock()
    _alarms: dict[int, tuple[threading.Event, set[threading.Event]]] = {}  # noqa: RUF012 - guarded by _lock

    @classmethod
    def listen(cls, event: threading.Event, alarm: threading.Event) -> None:
        with cls._lock:
            if event.is_set():
                alarm.set()
                return
            entry = cls._alarms.get(id(event))
            if entry is None:  # the entry holds the event, so its id cannot be reused while it is here
                entry = cls._alarms[id(event)] = (event, set())
                threading.Thread(target=cls._relay, args=(event,), name="fedsim-stop-relay", daemon=True).start()
            entry[1].add(alarm)

    @classmethod
    def forget(cls, event: threading.Event, alarm: threading.Event) -> None:
        with cls._lock:
            entry = cls._alarms.get(id(event))
            if entry is not None:
                entry[1].discard(alarm)

    @classmethod
    def _relay(cls, event: threading.Event) -> None:
        while True:
            fired = event.wait(cls.IDLE_S)
            with cls._lock:
                alarms = cls._alarms[id(event)][1]
                if fired or not alarms:
                    for alarm in alarms:
                        alarm.set()
                    del cls._alarms[id(event)]  # later listeners see the event set, or start a new relay
                    return


def supervise(
    handle: ProcessHandle,
    guards: list[Guard],
    *,
    tick_s: float = 0.1,
    grace_s: float = 0.5,
    stop_event: threading.Event | None = None,
) -> Outcome:
    """Wait for ``handle``; on the first violation (or ``stop_event``), terminate its whole tree.

    ``tick_s`` is the period of watchers that sample (RAM); the deadline wakes the supervisor when it expires.
    """
    alarm = threading.Event()

    def _wake_on_exit() -> None:  # so a job that ends is noticed at once
        try:
            handle.wait(None)
        finally:
            alarm.set()

    waiter = threading.Thread(target=_wake_on_exit, name="fedsim-exit-waiter", daemon=True)
    waiter.start()
    watches: list[Watch] = []
    usage = Usage()
    violation: Violation | None = None
    interrupted = False
    exit_code: int | None = None
    try:
        for g in guards:
            w = g.watch(handle)
            w.alarm = alarm
            watches.append(w)
        if stop_event is not None:
            _StopRelay.listen(stop_event, alarm)
        now = time.monotonic()
        due = [_next(w, now, tick_s) for w in watches]  # None: polled whenever the alarm rings
        while True:
            alarm.clear()  # before looking: whatever rings from here on ends the wait below
            exit_code = handle.wait(timeout=0)
            if exit_code is not None:
                break
            if stop_event is not None and stop_event.is_set():
                interrupted = True
                break
            for i, w in enumerate(watches):
                if alarm.is_set():
                    break  # the job ended (or must stop) meanwhile: look at that first
                when = due[i]
                if when is None or when <= time.monotonic():
                    violation = w.poll()
                    if violation is not None:
                        break
                    due[i] = _next(w, time.monotonic(), tick_s)
            if violation is not None:
                break
            pending = [t for t in due if t is not None]
            if not waiter.is_alive():  # the wait itself failed: fall back to looking every tick
                pending.append(time.monotonic() + tick_s)
            alarm.wait(max(0.0, min(pending) - time.monotonic()) if pending else None)
    finally:
        if stop_event is not None:
            _StopRelay.forget(stop_event, alarm)
        if exit_code is None:
            handle.terminate(grace_s=grace_s)
            exit_code = handle.wait(timeout=5)
        duration = time.monotonic() - handle.started_at
        for w in watches:
            w.stop(usage)
        if violation is None and handle.oom_killed():
            violation = Violation("ram_exceeded", "killed by the container's memory limit (OOMKilled)")
    return Outcome(exit_code, violation, duration, usage, interrupted)


def _next(w: Watch, now: float, tick_s: float) -> float | None:
    d = w.due_in(tick_s)
    return None if d is None or math.isinf(d) else now + d
