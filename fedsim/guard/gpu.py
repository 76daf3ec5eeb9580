"""GPU memory per job from NVML, enforced: one sampler thread serves every job on the machine.

Each tick makes one NVML process-list call per watched device (~10 µs on real hardware) and attributes
the listed PIDs to jobs. Attribution walks a PID's ancestry to a job's root process (the container's
init or the local process-group leader) once per PID and caches the answer keyed by (pid, start time), so
the per-tick cost does not grow with the size of the jobs' process trees.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field

import psutil

from fedsim.guard.base import Guard, Usage, Violation, Watch
from fedsim.guard.nvml import NvmlBackend
from fedsim.runtimes.base import ProcessHandle

log = logging.getLogger("fedsim.guard")
GiB = 1024**3
REVALIDATE_S = 1.0


@dataclass(eq=False)
class GpuWatch(Watch):
    sampler: GpuSampler
    handle: ProcessHandle
    uuids: tuple[str, ...]
    limit_bytes: int | None
    current: int = 0
    peak: int = 0
    violation: Violation | None = None
    note: str = ""
    crossed_at: float | None = None
    roots: set[int] = field(default_factory=set)

    def poll(self) -> Violation | None:
        return self.violation

    def due_in(self, tick_s: float) -> None:  # the sampler rings the alarm when it sets ``violation``
        return None

    def stop(self, usage: Usage) -> None:
        self.sampler.unregister(self)
        if self.peak:
            usage.peak_gpu_memory_bytes = max(usage.peak_gpu_memory_bytes or 0, self.peak)


class GpuSampler:
    """Samples every registered job's GPU memory at ``hz`` and raises the job's alarm above its limit."""

    def __init__(self, backend: NvmlBackend, hz: float = 50.0) -> None:
        self.backend = backend
        self.period = 1.0 / hz
        self._watches: list[GpuWatch] = []
        self._lock = threading.Lock()
        self._owner: dict[int, tuple[float, GpuWatch | None, float]] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.cpu_seconds = 0.0  # CPU time the sampler thread used, for overhead reports
        self.ticks = 0

    def register(self, handle: ProcessHandle, uuids: tuple[str, ...], limit_bytes: int | None) -> GpuWatch:
        watch = GpuWatch(self, handle, uuids, limit_bytes)
        root = handle.root_pid()
        if root is not None:
            watch.roots.add(root)
        with self._lock:
            self._watches.append(watch)
            # a PID seen before this job existed may belong to it now: forget negative answers
            self._owner = {pid: v for pid, v in self._owner.items() if v[1] is not None}
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fedsim-gpu-sampler", daemon=True)
                self._thread.start()
        self._wake.set()
        return watch

    def unregister(self, watch: GpuWatch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)
            self._owner = {pid: v for pid, v in self._owner.items() if v[1] is not watch}

    def _run(self) -> None:
        while True:
            with self._lock:
                watches = list(self._watches)
            if not watches:
                self._wake.clear()
                if not self._wake.wait(5.0):
                    with self._lock:
                        if not self._watches:
                            self._thread = None
                            return
                continue
            started = time.monotonic()
            cpu0 = time.thread_time()
            self.sample(watches)
            self.cpu_seconds += time.thread_time() - cpu0
            self.ticks += 1
            time.sleep(max(0.0, self.period - (time.monotonic() - started)))

    def sample(self, watches: list[GpuWatch]) -> None:
        """One tick: one NVML call per device in use, attribute, sum, compare with the limits."""
        totals: dict[int, int] = {id(w): 0 for w in watches}
        unknown: dict[int, bool] = {}
        by_device: dict[str, list[GpuWatch]] = {}
        for w in watches:
            for u in w.uuids:
                by_device.setdefault(u, []).append(w)
        for uuid, candidates in by_device.items():
            try:
                procs = self.backend.processes(uuid)
            except Exception as exc:  # a driver hiccup must not kill the sampler
                log.debug("NVML process list failed on %s: %s", uuid, exc)
                continue
            owners = [(p, self._resolve(p.pid, candidates)) for p in procs]
            for p, owner in owners:
                if owner is None:
                    continue
                if p.used_bytes is None:
                    unknown[id(owner)] = True
                else:
                    totals[id(owner)] += p.used_bytes
            for w in candidates:
                if unknown.get(id(w)):
                    mine = [o for _, o in owners if o is w]
                    if len(mine) == len(owners):  # alone on the device: its usage is the device's usage
                        with contextlib.suppress(Exception):
                            totals[id(w)] = self.backend.used_bytes(uuid)
                        w.note = "per-process GPU memory unavailable; used device-level usage (job alone on GPU)"
                    else:
                        w.note = "per-process GPU memory unavailable and the GPU is shared: usage not attributable"
        now = time.monotonic()
        for w in watches:
            w.current = totals[id(w)]
            w.peak = max(w.peak, w.current)
            if w.violation is None and w.limit_bytes is not None and w.current > w.limit_bytes:
                w.crossed_at = now
                w.violation = Violation(
                    "gpu_memory_exceeded",
                    f"GPU memory {w.current / GiB:.2f} GiB exceeded the limit of {w.limit_bytes / GiB:.2f} GiB",
                )
                if w.alarm is not None:
                    w.alarm.set()

    def _resolve(self, pid: int, candidates: list[GpuWatch]) -> GpuWatch | None:
        """Which job owns ``pid``: cached; on a miss, walk its ancestry to a job's root process.

        A cache hit costs a dict lookup; the PID's start time is re-read at most once a second to notice
        a recycled PID, so the per-tick cost stays flat however many processes the jobs run.
        """
        now = time.monotonic()
        cached = self._owner.get(pid)
        if cached is not None and now - cached[2] < REVALIDATE_S:
            return cached[1] if cached[1] in candidates else None
        try:
            proc = psutil.Process(pid)
            created = proc.create_time()
        except psutil.Error:
            self._owner.pop(pid, None)
            return None
        if cached is not None and cached[0] == created and cached[1] is not None:
            self._owner[pid] = (created, cached[1], now)
            return cached[1] if cached[1] in candidates else None
        owner: GpuWatch | None = None
        with contextlib.suppress(psutil.Error):
            chain = [pid, *(p.pid for p in proc.parents())]
            with self._lock:
                watches = list(self._watches)
            for w in watches:
                if w.roots and any(c in w.roots for c in chain):
                    owner = w
                    break
            if owner is None:  # no root known (or reparented to init): ask the runtime once
                for w in watches:
                    if pid in w.handle.host_pids():
                        owner = w
                        break
        self._owner[pid] = (created, owner, now)
        return owner if owner in candidates else None


class GpuMemoryGuard(Guard):
    """Per-job view of the shared sampler."""

    def __init__(self, sampler: GpuSampler, uuids: tuple[str, ...], limit_bytes: int | None) -> None:
        self.sampler = sampler
        self.uuids = uuids
        self.limit_bytes = limit_bytes

    def watch(self, handle: ProcessHandle) -> GpuWatch:
        return self.sampler.register(handle, self.uuids, self.limit_bytes)
