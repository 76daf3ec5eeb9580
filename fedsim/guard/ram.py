"""Host RAM of a job, sampled every supervisor tick (10 Hz); above the limit the job is stopped.

Two sources, by what the runtime provides:
- a container (its own memory cgroup): the cgroup's usage without reclaimable page cache. The kernel
  already caps it at the limit, but a job pinned at the limit thrashes for many seconds before the OOM
  killer acts; anonymous memory at >= 90 % of the limit while the cgroup keeps hitting its limit for a
  second counts as exceeding it, so the job is recorded as ``ram_exceeded`` instead of running into its
  deadline. (A job whose page cache fills the cgroup is not affected: page cache is not anonymous.)
- plain processes (local, singularity): the sum of PSS over the process tree, which splits pages shared
  between forked processes instead of counting them once per process as RSS would.
"""

from __future__ import annotations

import contextlib
import time

import psutil

from fedsim.guard.base import Guard, Usage, Violation, Watch
from fedsim.guard.cgroup import CgroupMemory
from fedsim.runtimes.base import ProcessHandle

GiB = 1024**3
PINNED_FRACTION = 0.90
PINNED_SECONDS = 1.0


class _RamWatch(Watch):
    def __init__(self, handle: ProcessHandle, limit_bytes: int | None, use_cgroup: bool) -> None:
        self._handle = handle
        self._limit = limit_bytes
        self._peak = 0
        self._procs: dict[int, psutil.Process] = {}
        self._use_cgroup = use_cgroup
        self._cgroup: CgroupMemory | None = None
        self._pinned_since: float | None = None
        self._failures: int | None = None

    def _cgroup_usage(self) -> int | None:
        if self._cgroup is None:
            root = self._handle.root_pid()
            if root is None:
                return None
            self._cgroup = CgroupMemory.of_pid(root)
            if self._cgroup is None:
                self._use_cgroup = False  # unreadable here: fall back to the process tree
                return None
        return self._cgroup.usage()

    def _tree_usage(self) -> int:
        total = 0
        for pid in self._handle.host_pids():
            if self.alarm is not None and self.alarm.is_set():
                break  # the job exited (or must stop): a partial sample, but no delay in noticing it
            proc = self._procs.get(pid)
            if proc is None:
                try:
                    proc = self._procs[pid] = psutil.Process(pid)
                except psutil.Error:
                    continue
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                total += getattr(info, "pss", info.rss)
        return total

    def poll(self) -> Violation | None:
        total = self._cgroup_usage() if self._use_cgroup else None
        if total is None:
            total = self._tree_usage()
        self._peak = max(self._peak, total)
        if self._limit is None:
            return None
        if total > self._limit:
            return Violation(
                "ram_exceeded", f"RAM {total / GiB:.2f} GiB exceeded the limit of {self._limit / GiB:.2f} GiB"
            )
        if self._use_cgroup and self._cgroup is not None:
            return self._pinned(self._cgroup)
        return None

    def _pinned(self, cg: CgroupMemory) -> Violation | None:
        assert self._limit is not None
        anon, failures = cg.anon(), cg.failures()
        hitting = failures is not None and self._failures is not None and failures > self._failures
        self._failures = failures if failures is not None else self._failures
        now = time.monotonic()
        if anon >= PINNED_FRACTION * self._limit and (hitting or self._pinned_since is not None):
            self._pinned_since = self._pinned_since or now
            if now - self._pinned_since >= PINNED_SECONDS and hitting:
                return Violation(
                    "ram_exceeded",
                    f"RAM held at the limit of {self._limit / GiB:.2f} GiB ({anon / GiB:.2f} GiB in use, the "
                    f"container hitting its limit for {now - self._pinned_since:.1f} s): the job needs more "
                    "memory than the federation allows",
                )
        else:
            self._pinned_since = None
        return None

    def stop(self, usage: Usage) -> None:
        if self._peak:
            usage.peak_rss_bytes = max(usage.peak_rss_bytes or 0, self._peak)


class RamGuard(Guard):
    def __init__(self, limit_bytes: int | None, *, use_cgroup: bool = False) -> None:
        self.limit_bytes = limit_bytes
        self.use_cgroup = use_cgroup

    def watch(self, handle: ProcessHandle) -> _RamWatch:
        return _RamWatch(handle, self.limit_bytes, self.use_cgroup)
