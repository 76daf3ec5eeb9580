"""Planning: (benchmark, sites, run directory) → the ordered jobs of every site. No I/O but the cached probes
of the containment policy (is a Docker engine there, does the sandbox run).

Per site: prepare → sanity_check → statistics, then for every model infer, then evaluate per model. Each
task gets exactly the keys the federation passes (:mod:`fedsim.cube.contract`); the cube's other parameters
keep their MLCube defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsim.cube import CubeSpec
from fedsim.cube.contract import separate_labels, task_paths
from fedsim.jobs.factory import GiB, infer_job, model_limits
from fedsim.jobs.job import Job, JobKind, JobLimits
from fedsim.runtimes.policy import DEFAULT_OPTIONS, ContainmentOptions, ContainmentPolicy, resolve
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
    containment: ContainmentOptions = DEFAULT_OPTIONS,
) -> SitePlan:
    d = run.site(site.name)
    rt = runtime or site.runtime

    def policy(cube: CubeSpec, untrusted: bool = False) -> ContainmentPolicy:
        return resolve(rt, cube, untrusted=untrusted, sandbox_trusted=bench.sandbox_trusted_cubes, options=containment)

    base_image = site.base_image or bench.base_image
    task_limits = JobLimits(timeout_s=bench.limits.task_timeout_s, ram_bytes=int(site.hardware.ram_gb * GiB))
    prep_params = _params_file(bench.data_prep.parameters_file, d.params / "data_prep.yaml")
    metrics_params = _params_file(bench.metrics.parameters_file, d.params / "metrics.yaml")
    labels = d.labels if separate_labels(cubes.data_prep) else d.prepared

    trusted = {id(c): policy(c) for c in (cubes.data_prep, cubes.metrics)}  # resolved once per cube

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
            policy=trusted[id(cube)],
            **kw,  # type: ignore[arg-type]
        )

    prep = cubes.data_prep
    extras = {"parameters_file": prep_params}
    checked = {"data_path": d.prepared, **({"labels_path": d.labels} if labels == d.labels else {})}
    # container configs only: today's MedPerf always mounts the dataset's labels, and prepare's metadata folder
    medperf = {"labels_path": labels, "metadata_path": d.metadata}
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
                {"report_file": d.report},
            ),
            clean_outputs=(d.prepared, d.labels, d.metadata),
        ),
        job(
            "sanity_check",
            JobKind.SANITY_CHECK,
            prep,
            "sanity_check",
            task_paths(prep, "sanity_check", checked, extras, medperf),
        ),
        job(
            "statistics",
            JobKind.STATISTICS,
            prep,
            "statistics",
            task_paths(
                prep,
                "statistics",
                checked,
                extras,
                {**medperf, "output_path": d.statistics},
            ),
        ),
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
                limits=model_limits(bench.limits, site.hardware),
                runtime=rt,
                log_path=d.log(f"infer.{model.name}"),
                workdir=d.work / f"infer.{model.name}",
                base_image=base_image,
                run_id=run.run_id,
                policy=policy(cubes.models[model.name], untrusted=True),
                labels=bench.data.labels,
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
                task_paths(
                    cubes.metrics,
                    "evaluate",
                    official,
                    {"parameters_file": metrics_params},
                    {"local_outputs_path": d.local_outputs(model.name)},
                ),
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
    containment: ContainmentOptions = DEFAULT_OPTIONS,
) -> list[SitePlan]:
    """Jobs for every site, in order; ``runtime`` overrides each site's own runtime when given; each job carries
    its containment policy (:func:`fedsim.runtimes.policy.resolve`, which ``containment`` feeds)."""
    return [plan_site(bench, site, raw, cubes, run, runtime, containment) for site, raw in sites]
