"""Host RAM of a job's process tree (local and singularity jobs; docker has its own cgroup limit).

The sum of RSS over the job's processes is sampled on each tick; above the limit the job is stopped.
RSS double-counts shared pages, so the recorded peak is an upper bound — the safe side for a limit.
"""

from __future__ import annotations

import contextlib

import psutil

from fedsim.guard.base import Guard, Usage, Violation, Watch
from fedsim.runtimes.base import ProcessHandle

GiB = 1024**3


class _RamWatch(Watch):
    def __init__(self, handle: ProcessHandle, limit_bytes: int | None) -> None:
        self._handle = handle
        self._limit = limit_bytes
        self._peak = 0
        self._procs: dict[int, psutil.Process] = {}

    def poll(self) -> Violation | None:
        total = 0
        for pid in self._handle.host_pids():
            proc = self._procs.get(pid)
            if proc is None:
                try:
                    proc = self._procs[pid] = psutil.Process(pid)
                except psutil.Error:
                    continue
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        self._peak = max(self._peak, total)
        if self._limit is not None and total > self._limit:
            return Violation(
                "ram_exceeded", f"RAM {total / GiB:.2f} GiB exceeded the limit of {self._limit / GiB:.2f} GiB"
            )
        return None

    def stop(self, usage: Usage) -> None:
        if self._peak:
            usage.peak_rss_bytes = max(usage.peak_rss_bytes or 0, self._peak)


class RamGuard(Guard):
    def __init__(self, limit_bytes: int | None) -> None:
        self.limit_bytes = limit_bytes

    def watch(self, handle: ProcessHandle) -> _RamWatch:
        return _RamWatch(handle, self.limit_bytes)
