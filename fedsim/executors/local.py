"""The default executor: jobs run in this process's threads, each supervising its own process tree.

It owns the machine's resources: CPU slots, RAM budget and GPUs (from NVML, or a fake in tests), and the
one GPU sampler that watches every job's GPU memory. It runs at most one job per CPU slot; the scheduler admits
a job (reserves its resources without waiting) before it runs it, so a job that does not fit yet never holds
back another that does.
"""

from __future__ import annotations

import dataclasses
import threading

from fedsim.executors.base import Executor
from fedsim.guard.gpu import GpuSampler
from fedsim.guard.nvml import NvmlBackend, local_backend
from fedsim.jobs.execute import execute_job
from fedsim.jobs.job import Job, JobResult
from fedsim.jobs.resources import Grant, ResourcePool
from fedsim.runtimes.base import BuildProgress, Prepared
from fedsim.runtimes.select import RuntimePool
from fedsim.spec import SiteSpec

_AUTO = object()


class LocalExecutor(Executor):
    name = "local"
    builds_ahead = True

    def __init__(
        self,
        max_jobs: int | None = None,
        *,
        nvml: NvmlBackend | object | None = _AUTO,
        sampler_hz: float = 50.0,
        cpus: int | None = None,
    ) -> None:
        self.runtimes = RuntimePool()
        backend = local_backend() if nvml is _AUTO else nvml  # --gpus, else CUDA_VISIBLE_DEVICES, else all
        self.nvml: NvmlBackend | None = backend  # type: ignore[assignment]
        self.sampler = GpuSampler(self.nvml, hz=sampler_hz) if self.nvml is not None else None
        self.resources = ResourcePool(self.nvml.devices() if self.nvml else [], cpus=cpus)
        # jobs at once over all sites: at most one per CPU slot
        self.max_jobs = min(max_jobs or self.resources.cpus, self.resources.cpus)
        self._admitted: dict[str, Grant] = {}
        self._lock = threading.Lock()

    def slots(self) -> int:
        return self.max_jobs

    def prepare(self, job: Job, progress: BuildProgress | None = None) -> Prepared | None:
        policy = job.containment()
        policy.check()
        runtime = self.runtimes.get(policy.instance)  # the instance execute_job uses: its cache counts
        return runtime.prepare(job.cube, job.base_image, progress=progress)

    def close(self) -> None:
        self.runtimes.close()

    def admit(self, job: Job) -> bool:
        grant = self.resources.try_acquire(job)
        if grant is None:
            return False
        with self._lock:
            self._admitted[job.key] = grant
        return True

    def run(self, job: Job, stop_event: threading.Event | None = None) -> JobResult:
        with self._lock:
            grant = self._admitted.pop(job.key, None)
        if grant is None:  # not admitted by a scheduler: wait for the resources here
            grant = self.resources.wait_acquire(job)
        try:
            limits = job.limits
            if limits.ram_bytes is not None and limits.ram_bytes > self.resources.ram_bytes:
                # a 40 GB profile on a smaller machine: the machine is the real limit
                limits = dataclasses.replace(limits, ram_bytes=self.resources.ram_bytes)
            job = dataclasses.replace(job, gpu_ids=grant.gpu_ids, limits=limits)
            return execute_job(job, self.runtimes, stop_event, self.sampler)
        finally:
            self.resources.release(grant)

    def check_sites(self, sites: list[SiteSpec]) -> None:
        for s in sites:
            if s.hardware.gpus:
                self.resources.check_profile(
                    s.name, s.hardware.gpus, int(s.hardware.gpu_memory_gb * 1024**3), str(s.source or "")
                )
