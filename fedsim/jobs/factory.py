"""The one place jobs are made: the planner, check-submission, dry-run and the stress test all build their
``infer`` jobs here, so a submission meets the same limits, contract and containment everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fedsim.cube import CubeSpec
from fedsim.cube.contract import task_paths
from fedsim.jobs.job import Job, JobKind, JobLimits
from fedsim.runtimes.policy import ContainmentPolicy, resolve
from fedsim.spec import HardwareProfile

GiB = 1024**3


class SubmissionLimits(Protocol):
    """What a submission's limits are made from: a benchmark's ``limits`` (:class:`fedsim.spec.ResourceLimits`),
    or ``check-submission``'s options, which default to the same official values."""

    @property
    def timeout_per_case_s(self) -> float: ...
    @property
    def ram_gb(self) -> float: ...
    @property
    def gpu_memory_gb(self) -> float: ...
    @property
    def output_mb_per_case(self) -> float: ...
    @property
    def max_pids(self) -> int: ...


@dataclass(frozen=True)
class ModelLimits:
    """The federation's limits for one submission at one site, before they become :class:`JobLimits`.

    ``site_gpus``: GPUs the site lends a job (FeTS: one). ``cpus``: a CPU quota (the site's CPU count), or None.
    """

    timeout_per_case_s: float
    ram_gb: float
    gpu_memory_gb: float
    output_mb_per_case: float
    max_pids: int | None = None
    site_gpus: int = 1
    cpus: int | None = None

    def job_limits(self, cube: CubeSpec) -> JobLimits:
        return JobLimits(
            timeout_per_case_s=self.timeout_per_case_s,
            ram_bytes=int(self.ram_gb * GiB),
            gpu_memory_bytes=int(self.gpu_memory_gb * GiB),
            gpus=min(cube.platform.accelerator_count, self.site_gpus),
            output_bytes_per_case=int(self.output_mb_per_case * 1024**2),
            cpus=self.cpus,
            max_pids=self.max_pids,
        )


def model_limits(limits: SubmissionLimits, hardware: HardwareProfile | None = None) -> ModelLimits:
    """The one recipe for a submission's limits (planner, stress test, check-submission): the federation's
    ``limits`` narrowed by what the site's ``hardware`` has (RAM, GPU memory), with its GPUs and its CPU count as
    the job's quota. No site (stress, check-submission): the federation's hardware, one GPU, no CPU quota."""
    if hardware is None:
        return ModelLimits(
            timeout_per_case_s=limits.timeout_per_case_s,
            ram_gb=limits.ram_gb,
            gpu_memory_gb=limits.gpu_memory_gb,
            output_mb_per_case=limits.output_mb_per_case,
            max_pids=limits.max_pids,
        )
    return ModelLimits(
        timeout_per_case_s=limits.timeout_per_case_s,
        ram_gb=min(limits.ram_gb, hardware.ram_gb),
        gpu_memory_gb=min(limits.gpu_memory_gb, hardware.gpu_memory_gb),
        output_mb_per_case=limits.output_mb_per_case,
        max_pids=limits.max_pids,
        site_gpus=hardware.gpus,
        cpus=hardware.cpus,
    )


def infer_job(
    *,
    site: str,
    name: str,
    model: str,
    cube: CubeSpec,
    data: Path,
    predictions: Path,
    limits: ModelLimits,
    runtime: str,
    log_path: Path,
    workdir: Path,
    base_image: str | None = None,
    run_id: str = "",
    policy: ContainmentPolicy | None = None,
    validate_outputs: bool = True,
    labels: tuple[int, ...] = (0, 1, 2, 4),
) -> Job:
    """A submission's ``infer``: only the federation's keys, untrusted, its predictions cleaned before a rerun.
    ``policy``: its containment as the caller resolved it (default: untrusted on ``runtime``, no leave to run it
    unsandboxed)."""
    return Job(
        site=site,
        name=name,
        kind=JobKind.INFER,
        cube=cube,
        task="infer",
        paths=tuple(task_paths(cube, "infer", {"data_path": data, "output_path": predictions}).items()),
        runtime=runtime,
        limits=limits.job_limits(cube),
        log_path=log_path,
        workdir=workdir,
        model=model,
        cases_dir=data,
        clean_outputs=(predictions,),
        base_image=base_image,
        run_id=run_id,
        policy=policy if policy is not None else resolve(runtime, cube, untrusted=True),
        validate_outputs=validate_outputs,
        output_labels=tuple(labels),
    )
