"""The guard seam: watchers observe a running job and report violations; one supervisor kills.

A watcher knows limits and PIDs, never docker or benchmarks. The supervisor does not tick: it sleeps until the
earliest moment a watcher asked for (:meth:`Watch.due_in`: the deadline's expiry, the RAM sampler's next sample,
by default the supervisor's ``tick_s``, 10 Hz) or until something rings its alarm (the job's exit, ``stop_event``,
a watcher with news of its own), so ``poll`` is called only when due and must stay cheap.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass

from fedsim.runtimes.base import ProcessHandle


@dataclass(frozen=True)
class Violation:
    """Why a job must die: a status for the record and a one-line reason with the observed value."""

    status: str
    reason: str


@dataclass
class Usage:
    """Peaks observed while a job ran; None where nothing could be measured."""

    peak_rss_bytes: int | None = None
    peak_gpu_memory_bytes: int | None = None


class Watch(abc.ABC):
    #: set by the supervisor; a watcher that learns of a violation asynchronously sets it to wake the supervisor
    alarm: threading.Event | None = None

    @abc.abstractmethod
    def poll(self) -> Violation | None:
        """Sample once; a violation means the job must be stopped now."""

    def due_in(self, tick_s: float) -> float | None:
        """Seconds from now until this watcher wants :meth:`poll` called (again). None: only when the alarm
        rings (a watcher told asynchronously, which sets :attr:`alarm`); the default samples every ``tick_s``."""
        return tick_s

    def stop(self, usage: Usage) -> None:  # noqa: B027 - optional hook
        """Fold this watcher's peaks into ``usage`` after the job ended."""


class Guard(abc.ABC):
    @abc.abstractmethod
    def watch(self, handle: ProcessHandle) -> Watch:
        """Start watching one job."""
