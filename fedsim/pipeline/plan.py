"""Pure planning: (benchmark, sites, run directory) → the ordered jobs of every site. No I/O.

Per site: prepare → sanity_check → statistics, then for every model infer, then evaluate per model. Each
task gets exactly the keys the federation passes (:mod:`fedsim.cube.contract`); the cube's other parameters
keep their MLCube defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsim.cube import CubeSpec
from fedsim.cube.contract import separate_labels, task_paths
from fedsim.jobs.factory import GiB, ModelLimits, infer_job
from fedsim.jobs.job import Job, JobKind, JobLimits
from fedsim.spec import BenchmarkSpec, SiteSpec
from fedsim.spec.models import GENERATED
from fedsim.store import RunDirectory


@dataclass(frozen=True)
class Cubes:
    """The loaded cubes of a benchmark: data prep, metrics and one per model name."""

    data_prep: CubeSpec
    metrics: CubeSpec
    models: dict[str, CubeSpec]


@dataclass(frozen=True)
class SitePlan:
    site: SiteSpec
    raw_data: Path
    jobs: tuple[Job, ...]


def model_limits(bench: BenchmarkSpec, site: SiteSpec) -> ModelLimits:
    """The benchmark's limits for a submission, narrowed by what the site has."""
    return ModelLimits(
        timeout_per_case_s=bench.limits.timeout_per_case_s,
        ram_gb=min(bench.limits.ram_gb, site.hardware.ram_gb),
        gpu_memory_gb=min(bench.limits.gpu_memory_gb, site.hardware.gpu_memory_gb),
        output_mb_per_case=bench.limits.output_mb_per_case,
        max_pids=bench.limits.max_pids,
        site_gpus=site.hardware.gpus,
        cpus=site.hardware.cpus,
    )


def _params_file(choice: Path | str | None, generated: Path) -> Path | None:
    """The parameters file fedsim passes: its generated one, the organiser's, or none (the cube's default)."""
    if choice == GENERATED:
        return generated
    return choice if isinstance(choice, Path) else None


def plan_site(
    bench: BenchmarkSpec,
    site: SiteSpec,
    raw_data: Path,
    cubes: Cubes,
    run: RunDirectory,
    runtime: str | None,
    allow_unsandboxed: bool = False,
) -> SitePlan:
    d = run.site(site.name)
    rt = runtime or site.runtime
    base_image = site.base_image or bench.base_image
    task_limits = JobLimits(timeout_s=bench.limits.task_timeout_s, ram_bytes=int(site.hardware.ram_gb * GiB))
    prep_params = _params_file(bench.data_prep.parameters_file, d.params / "data_prep.yaml")
    metrics_params = _params_file(bench.metrics.parameters_file, d.params / "metrics.yaml")
    labels = d.labels if separate_labels(cubes.data_prep) else d.prepared

    def job(name: str, kind: JobKind, cube: CubeSpec, task: str, paths: dict[str, Path], **kw: object) -> Job:
        return Job(
            site=site.name,
            name=name,
            kind=kind,
            cube=cube,
            task=task,
            paths=tuple(paths.items()),
            runtime=rt,
            limits=kw.pop("limits", task_limits),  # type: ignore[arg-type]
            log_path=d.log(name),
            workdir=d.work / name,
            base_image=base_image,
            run_id=run.run_id,
            sandbox=bench.sandbox_trusted_cubes,
            allow_unsandboxed=allow_unsandboxed,
            **kw,  # type: ignore[arg-type]
        )

    prep = cubes.data_prep
    extras = {"parameters_file": prep_params}
    checked = {"data_path": d.prepared, **({"labels_path": d.labels} if labels == d.labels else {})}
    jobs = [
        job(
            "prepare",
            JobKind.PREPARE,
            prep,
            "prepare",
            task_paths(
                prep,
                "prepare",
                {"data_path": raw_data, "labels_path": raw_data, "output_path": d.prepared}
                | {"output_labels_path": d.labels},
                {**extras, "metadata_path": d.metadata},
            ),
            clean_outputs=(d.prepared, d.labels, d.metadata),
        ),
        job(
            "sanity_check",
            JobKind.SANITY_CHECK,
            prep,
            "sanity_check",
            task_paths(prep, "sanity_check", checked, extras),
        ),
        job("statistics", JobKind.STATISTICS, prep, "statistics", task_paths(prep, "statistics", checked, extras)),
    ]
    for model in bench.models:
        jobs.append(
            infer_job(
                site=site.name,
                name=f"infer.{model.name}",
                model=model.name,
                cube=cubes.models[model.name],
                data=d.prepared,
                predictions=d.predictions(model.name),
                limits=model_limits(bench, site),
                runtime=rt,
                log_path=d.log(f"infer.{model.name}"),
                workdir=d.work / f"infer.{model.name}",
                base_image=base_image,
                run_id=run.run_id,
                allow_unsandboxed=allow_unsandboxed,
            )
        )
    for model in bench.models:
        official = {"predictions": d.predictions(model.name), "labels": labels, "output_path": d.results(model.name)}
        jobs.append(
            job(
                f"evaluate.{model.name}",
                JobKind.EVALUATE,
                cubes.metrics,
                "evaluate",
                task_paths(cubes.metrics, "evaluate", official, {"parameters_file": metrics_params}),
                model=model.name,
                voided_inputs=(d.predictions(model.name),),
            )
        )
    return SitePlan(site, raw_data, tuple(jobs))


def plan(
    bench: BenchmarkSpec,
    sites: list[tuple[SiteSpec, Path]],
    cubes: Cubes,
    run: RunDirectory,
    runtime: str | None = None,
    allow_unsandboxed: bool = False,
) -> list[SitePlan]:
    """Jobs for every site, in order; ``runtime`` overrides each site's own runtime when given;
    ``allow_unsandboxed``: every job may run as a plain host process where no sandbox can run."""
    return [plan_site(bench, site, raw, cubes, run, runtime, allow_unsandboxed) for site, raw in sites]
