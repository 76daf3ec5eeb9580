"""The guard seam: watchers observe a running job and report violations; one supervisor kills.

A watcher knows limits and PIDs, never docker or benchmarks. ``poll`` must be cheap: the supervisor calls
every watcher on each tick (default 10 Hz).
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

    def stop(self, usage: Usage) -> None:  # noqa: B027 - optional hook
        """Fold this watcher's peaks into ``usage`` after the job ended."""


class Guard(abc.ABC):
    @abc.abstractmethod
    def watch(self, handle: ProcessHandle) -> Watch:
        """Start watching one job."""
