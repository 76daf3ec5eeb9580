"""Run a stress test: every model's ``infer`` on every case set, under the federation's runtime and limits.

Each (model, set) is one infer job built exactly as the planner builds one for a site (deadline
``num_cases × timeout_per_case_s``, RAM, GPU memory, output size, containment) and run by an executor's
``run`` (so through ``execute_job``, with its guards); jobs run concurrently as the executor's resources allow.
Predictions are scored in-process with the benchmark's metric set; a failed job scores the penalty row for
every case, as the metrics cube does in a run.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim.cube import CubeSpec
from fedsim.errors import SpecError
from fedsim.executors.base import Executor
from fedsim.jobs.factory import infer_job, model_limits
from fedsim.jobs.job import Job, JobResult, JobStatus
from fedsim.runtimes.policy import DEFAULT_OPTIONS, ContainmentOptions, ContainmentPolicy, refuse_unsandboxed, resolve
from fedsim.spec import BenchmarkSpec
from fedsim.spec.models import ResourceLimits
from fedsim.stress.data import UNSHIFTED, CaseSet, SourceData, build_sets, resolve_source
from fedsim.stress.results import SetResult, StressResults, region_stats, summarise

GiB = 1024**3
DEFAULT_LEVELS = (0, 1, 2, 3)
DEFAULT_SHIFTS = ("intensity", "bias", "noise", "thick_slices")
EventSink = Callable[[str, str, CaseSet, SetResult | None], None]


@dataclass(frozen=True)
class StressModel:
    name: str
    cube: CubeSpec


@dataclass(frozen=True)
class StressOptions:
    models: tuple[Path, ...]
    out: Path
    data: Path | None = None
    labels: Path | None = None
    shifts: tuple[str, ...] = DEFAULT_SHIFTS
    levels: tuple[int, ...] = DEFAULT_LEVELS
    benchmark: Path | None = None
    runtime: str = "auto"
    cases: int | None = None
    shape: tuple[int, int, int] = (96, 96, 64)
    seed: int = 0
    jobs: int | None = None
    containment: ContainmentOptions = DEFAULT_OPTIONS  # --allow-unsandboxed: read by fedsim.runtimes.policy


@dataclass(frozen=True)
class EvalSettings:
    limits: ResourceLimits
    metric_set: str
    params: dict[str, Any] | None
    base_image: str | None = None


def eval_settings(bench: BenchmarkSpec | None) -> EvalSettings:
    if bench is None:
        return EvalSettings(ResourceLimits.model_validate({}), "brats2021", None)
    params = None
    if bench.metrics.metric_set == "lesionwise":
        params = bench.metrics.lesionwise.model_dump(mode="json", exclude_none=True)
    elif bench.metrics.metric_set == "brats2025":
        params = bench.metrics.brats2025.model_dump(mode="json")
    return EvalSettings(bench.limits, bench.metrics.metric_set, params, bench.base_image)


def check_selection(shifts: tuple[str, ...], levels: tuple[int, ...]) -> tuple[list[str], list[int]]:
    """Validate ``--shifts``/``--levels``; level 0 (the reference of every curve) is always included."""
    from fedsim.synth.shifts import SHIFTS

    unknown = [s for s in shifts if s not in SHIFTS]
    if unknown or not shifts:
        raise SpecError(
            f"unknown shift {', '.join(unknown) or '(none)'}; choose from {', '.join(SHIFTS)}", field="--shifts"
        )
    bad = [lv for lv in levels if lv < 0]
    if bad:
        raise SpecError(f"levels must be >= 0, got {bad}", field="--levels")
    for s in shifts:
        too_high = [lv for lv in levels if lv > SHIFTS[s].max_level]
        if too_high:
            raise SpecError(f"shift {s!r} has levels 0..{SHIFTS[s].max_level}, got {too_high}", field="--levels")
    return list(dict.fromkeys(shifts)), sorted({0, *levels})


def load_models(paths: tuple[Path, ...]) -> list[StressModel]:
    """Cubes — MLCube or MedPerf container folders, or the file declaring one — → models named after their
    folder, made unique. A cube whose ``infer`` cannot take data_path and output_path is refused before any
    case is shifted."""
    from fedsim.cube import load_cube
    from fedsim.submission.locate import default_name, locate_cube
    from fedsim.submission.static import infer_problems

    if not paths:
        raise SpecError("give at least one cube directory (mlcube.yaml or container_config.yaml)", field="MODEL")
    models: list[StressModel] = []
    used: set[str] = set()
    for p in paths:
        location = locate_cube(p.expanduser().resolve(), "MODEL")
        cube = load_cube(location)
        if "infer" not in cube.tasks:
            raise SpecError("the cube has no 'infer' task", file=str(cube.spec_path), field="tasks")
        problems = infer_problems(cube)
        if problems:
            raise SpecError("; ".join(problems), file=str(cube.spec_path), field="tasks.infer")
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", default_name(location)) or "model"
        base, i = name, 2
        while name in used:
            name, i = f"{base}-{i}", i + 1
        used.add(name)
        models.append(StressModel(name, cube))
    return models


def make_job(
    model: StressModel,
    case_set: CaseSet,
    out: Path,
    runtime: str,
    ev: EvalSettings,
    run_id: str,
    policy: ContainmentPolicy | None = None,
) -> Job:
    """The infer job as the planner builds one for a site (``site`` = ``stress.<model>``), with the
    federation's hardware: one GPU, no CPU quota."""
    return infer_job(
        site=f"stress.{model.name}",
        name=f"infer.{case_set.label}",
        model=model.name,
        cube=model.cube,
        data=case_set.data_dir,
        predictions=out / "predictions" / model.name / case_set.label,
        limits=model_limits(ev.limits),
        runtime=runtime,
        log_path=out / "logs" / model.name / f"{case_set.label}.log",
        workdir=out / "work" / model.name / case_set.label,
        base_image=ev.base_image,
        run_id=run_id,
        policy=policy,
    )


def score(job: Job, result: JobResult, case_set: CaseSet, source: SourceData, ev: EvalSettings) -> SetResult:
    """Evaluate the job's predictions on the set's cases; a failed job's cases all score the penalty row."""
    from fedsim.metrics.evaluate import LABEL_SUFFIX, PRED_SUFFIX, evaluate_case

    predictions = job.overrides()["output_path"]
    if not result.status.finished_ok:
        shutil.rmtree(predictions, ignore_errors=True)
        predictions.mkdir(parents=True, exist_ok=True)
    prefix = "LesionWise_" if ev.metric_set == "lesionwise" else ""
    cases: dict[str, dict[str, Any]] = {}
    for case in case_set.cases:
        row = evaluate_case(
            predictions / f"{case}{PRED_SUFFIX}", source.labels_dir / f"{case}{LABEL_SUFFIX}", ev.metric_set, ev.params
        )
        kept: dict[str, Any] = {"missing_pred": bool(row.get("missing_pred", False))}
        for key, value in row.items():
            for metric in ("Dice_", "Hausdorff95_"):
                if key.startswith(prefix + metric) and (prefix or not key.startswith("LesionWise_")):
                    kept[key[len(prefix) :]] = value
        cases[case] = kept
    regions = sorted(
        {k.split("_", 1)[1] for row in cases.values() for k in row if k.startswith("Dice_")},
        key=lambda r: ("ET", "TC", "WT").index(r) if r in ("ET", "TC", "WT") else 9,
    )
    return SetResult(
        model=job.model or "",
        shift=case_set.shift,
        level=case_set.level,
        parameter=case_set.parameter,
        status=result.status.value,
        reason=result.reason,
        duration_s=round(result.duration_s, 3),
        cases=cases,
        regions=region_stats(cases, regions),
        log=result.log,
        runtime=result.runtime,
    )


def run_stress(
    options: StressOptions,
    *,
    executor: Executor | None = None,
    on_event: EventSink | None = None,
    on_message: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
) -> StressResults:
    """Build the sets, run every model on every set, score, summarise. Job failures are results, not raises."""
    from fedsim.spec import load_benchmark
    from fedsim.synth.shifts import SHIFTS

    started = time.monotonic()
    say = on_message or (lambda _m: None)
    emit = on_event or (lambda *_a: None)
    stop = stop_event or threading.Event()
    shifts, levels = check_selection(options.shifts, options.levels)
    models = load_models(options.models)
    # refuse unsandboxed submissions before any data is made (one line, cause and fix); other problems: the job's
    policies = {m.name: resolve(options.runtime, m.cube, untrusted=True, options=options.containment) for m in models}
    note = refuse_unsandboxed((m.cube, policies[m.name]) for m in models)
    if note is not None:
        say(f"note: {note}")
    bench = load_benchmark(options.benchmark) if options.benchmark is not None else None
    ev = eval_settings(bench)
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    source = resolve_source(options.data, options.labels, options.cases, options.shape, out)
    say(f"data: {source.description} ({len(source.cases)} cases)")
    sets = build_sets(
        source,
        shifts,
        levels,
        options.seed,
        on_set=lambda s, cached: say(f"set {s.label}: {s.parameter}" + (" (cached)" if cached else "")),
    )

    own_executor = executor is None
    if executor is None:
        from fedsim.executors.local import LocalExecutor

        executor = LocalExecutor(options.jobs)
    run_id = f"stress-{secrets.token_hex(4)}"
    work = [(m, s) for m in models for s in sets]
    lanes = options.jobs or executor.slots() or 1
    results: list[SetResult] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(lanes, len(work))), thread_name_prefix="stress") as pool:

            def one(model: StressModel, case_set: CaseSet) -> SetResult:
                job = make_job(model, case_set, out, options.runtime, ev, run_id, policies[model.name])
                if stop.is_set():
                    res = JobResult(
                        job.site,
                        job.name,
                        job.kind.value,
                        job.model,
                        JobStatus.INTERRUPTED,
                        reason="stress test interrupted before this job started",
                    )
                else:
                    emit("started", model.name, case_set, None)
                    res = executor.run(job, stop)
                scored = score(job, res, case_set, source, ev)
                emit("finished", model.name, case_set, scored)
                return scored

            futures = [pool.submit(one, m, s) for m, s in work]
            for f in as_completed(futures):
                results.append(f.result())
    finally:
        if own_executor:
            executor.close()
    order = {(m.name, s.label): i for i, (m, s) in enumerate(work)}
    results.sort(key=lambda r: order[(r.model, UNSHIFTED if r.shift == UNSHIFTED else f"{r.shift}-{r.level}")])
    names = [m.name for m in models]
    regions = list(next((r.regions for r in results if r.regions), {}).keys())
    runtime = ", ".join(sorted({r.runtime for r in results if r.runtime})) or options.runtime
    return StressResults(
        models=names,
        shifts=shifts,
        levels=levels,
        regions=regions,
        metric_set=ev.metric_set,
        runtime=runtime,
        data=source.description,
        seed=options.seed,
        sets=results,
        summaries=summarise(results, names, shifts, levels),
        duration_s=round(time.monotonic() - started, 2),
        parameters={s: {str(lv): SHIFTS[s].describe(lv) for lv in levels if lv <= SHIFTS[s].max_level} for s in shifts},
    )
