"""Machine resources for concurrent jobs: CPU slots, a RAM budget and whole GPUs by UUID.

A job waits until it can have everything it needs; GPUs are exclusive (two jobs never share one). RAM is
reserved as ``min(job limit, machine RAM / CPU slots)``: the federation's 40 GB is a cap, not a forecast,
so reserving it whole would serialise every run on a smaller machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

from fedsim.errors import SpecError
from fedsim.guard.nvml import GpuDevice
from fedsim.jobs.job import Job

log = logging.getLogger("fedsim.pipeline")


@dataclass(frozen=True)
class Grant:
    gpu_ids: tuple[str, ...]
    ram_bytes: int
    cpus: int


class ResourcePool:
    def __init__(self, gpus: list[GpuDevice], cpus: int | None = None, ram_bytes: int | None = None) -> None:
        self.gpus = list(gpus)
        self.cpus = cpus or os.cpu_count() or 1
        self.ram_bytes = ram_bytes or psutil.virtual_memory().total
        self._free_gpus = [g.uuid for g in self.gpus]
        self._free_cpus = self.cpus
        self._free_ram = self.ram_bytes
        self._cond = threading.Condition()
        self._warned_cpu_only = False
        self.max_concurrent_gpu_jobs = 0
        self._gpu_jobs = 0

    def check_profile(self, site: str, gpus: int, gpu_memory_bytes: int, source: str | None = None) -> None:
        """Refuse a site profile this machine cannot honour (before anything runs)."""
        if not self.gpus:
            return
        biggest = max(g.memory_total for g in self.gpus)
        if gpu_memory_bytes > biggest:
            raise SpecError(
                f"site {site!r} asks for {gpu_memory_bytes / 1024**3:.1f} GiB of GPU memory but the largest GPU "
                f"here has {biggest / 1024**3:.1f} GiB; lower hardware.gpu_memory_gb",
                file=source,
                field="hardware.gpu_memory_gb",
            )
        if gpus > len(self.gpus):
            raise SpecError(
                f"site {site!r} asks for {gpus} GPUs but this machine has {len(self.gpus)}; lower hardware.gpus",
                file=source,
                field="hardware.gpus",
            )

    def _ram_share(self, job: Job) -> int:
        share = self.ram_bytes // self.cpus
        return min(job.limits.ram_bytes or share, share)

    def _wants(self, job: Job) -> tuple[int, int]:
        """(GPUs, RAM bytes) ``job`` takes from this machine: on a machine without GPUs a GPU job runs on the CPU."""
        want_gpus = job.limits.gpus
        if want_gpus and not self.gpus:
            if not self._warned_cpu_only:
                log.warning("no GPU on this machine: GPU jobs run on the CPU")
                self._warned_cpu_only = True
            want_gpus = 0
        return min(want_gpus, len(self.gpus)), self._ram_share(job)

    def _fits(self, gpus: int, ram: int) -> bool:
        return len(self._free_gpus) >= gpus and self._free_cpus >= 1 and self._free_ram >= ram

    def _take(self, gpus: int, ram: int) -> Grant:
        granted = tuple(self._free_gpus[:gpus])
        del self._free_gpus[:gpus]
        self._free_cpus -= 1
        self._free_ram -= ram
        if granted:
            self._gpu_jobs += 1
            self.max_concurrent_gpu_jobs = max(self.max_concurrent_gpu_jobs, self._gpu_jobs)
        return Grant(granted, ram, 1)

    def try_acquire(self, job: Job) -> Grant | None:
        """Everything ``job`` needs if it is free now, else None (never waits); give it back with :meth:`release`."""
        gpus, ram = self._wants(job)
        with self._cond:
            return self._take(gpus, ram) if self._fits(gpus, ram) else None

    def release(self, grant: Grant) -> None:
        with self._cond:
            self._free_gpus.extend(grant.gpu_ids)
            self._free_gpus.sort(key=[g.uuid for g in self.gpus].index)
            self._free_cpus += grant.cpus
            self._free_ram += grant.ram_bytes
            if grant.gpu_ids:
                self._gpu_jobs -= 1
            self._cond.notify_all()

    def wait_acquire(self, job: Job) -> Grant:
        """Everything ``job`` needs, waiting until it is free; give it back with :meth:`release`."""
        gpus, ram = self._wants(job)
        with self._cond:
            self._cond.wait_for(lambda: self._fits(gpus, ram))
            return self._take(gpus, ram)

    @contextlib.contextmanager
    def acquire(self, job: Job) -> Iterator[Grant]:
        grant = self.wait_acquire(job)
        try:
            yield grant
        finally:
            self.release(grant)
