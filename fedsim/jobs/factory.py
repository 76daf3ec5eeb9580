"""The one place jobs are made: the planner, check-submission, dry-run and the stress test all build their
``infer`` jobs here, so a submission meets the same limits, contract and containment everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsim.cube import CubeSpec
from fedsim.cube.contract import task_paths
from fedsim.jobs.job import Job, JobKind, JobLimits

GiB = 1024**3


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
    allow_unsandboxed: bool = False,
    validate_outputs: bool = True,
) -> Job:
    """A submission's ``infer``: only the federation's keys, untrusted, its predictions cleaned before a rerun."""
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
        untrusted=True,
        cases_dir=data,
        clean_outputs=(predictions,),
        base_image=base_image,
        run_id=run_id,
        allow_unsandboxed=allow_unsandboxed,
        validate_outputs=validate_outputs,
    )
