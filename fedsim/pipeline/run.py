"""``fedsim run benchmark``: load specs and cubes, make data, plan, execute, collect metrics, rank.

Only metrics leave a site: ``results/<site>.yaml`` (case → model → flat metric keys) is assembled from
each site's metrics-cube outputs; everything else stays under ``sites/<site>/``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedsim import __version__
from fedsim.cube import CubeSpec, image_only_cube, load_cube, with_image_settings
from fedsim.errors import SpecError, StoreError
from fedsim.executors.base import Executor
from fedsim.executors.local import LocalExecutor
from fedsim.jobs.job import JobKind, JobResult, JobStatus
from fedsim.pipeline.builds import BuildRecord, build_images, build_summary
from fedsim.pipeline.graph import JobGraph
from fedsim.pipeline.observer import Observer, RunObserver
from fedsim.pipeline.plan import Cubes, SitePlan, plan
from fedsim.pipeline.progress import RunPlan
from fedsim.pipeline.reach import data_reaches_prep
from fedsim.pipeline.retry import retry_keys
from fedsim.pipeline.scheduler import capacity, record_job, run_all
from fedsim.pipeline.sitedata import ensure_site_data, needs_synthesis
from fedsim.runtimes.orphans import kill_orphans
from fedsim.runtimes.policy import DEFAULT_OPTIONS, ContainmentOptions, refuse_unsandboxed, resolve
from fedsim.spec import BenchmarkSpec, SiteSpec, load_benchmark, load_sites
from fedsim.store import RunDirectory, new_run_id, write_json_atomic, write_yaml_atomic
from fedsim.store.ledger import Ledger, recorded_durations
from fedsim.store.runlock import check_run_id, claim_run
from fedsim.yamlsafe import safe_load_file

log = logging.getLogger("fedsim.pipeline")


@dataclass(frozen=True)
class RunOptions:
    benchmark: Path
    sites: tuple[Path, ...] = ()
    runtime: str | None = None
    runs_dir: Path = Path("runs")
    run_id: str | None = None
    models: tuple[str, ...] = ()
    max_sites: int | None = None
    rank: bool = True
    resume: str | None = None  # the id of an interrupted run in runs_dir to continue
    # writes the run's report at the end (the CLI passes fedsim.report.html.write_report; presentation sits above
    # the pipeline, which never imports it); returns the HTML file
    report_writer: Callable[[Path], Path] | None = None
    # what the CLI says about containment (--allow-unsandboxed): fedsim.runtimes.policy.resolve reads it
    containment: ContainmentOptions = DEFAULT_OPTIONS
    retry_failed: bool = False  # with resume: rerun the jobs that did not succeed, and their dependants
    # --decryption-key MODEL=FILE: the gpg passphrase file of an encrypted model image, by model name
    decryption_keys: tuple[tuple[str, Path], ...] = ()


@dataclass
class RunReport:
    run: RunDirectory
    benchmark: BenchmarkSpec
    sites: list[SiteSpec]
    results: dict[str, list[JobResult]]
    site_metrics: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    ranking: Any = None
    interrupted: bool = False
    duration_s: float = 0.0
    report_html: Path | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)  # the run and each resume (ledger.segments)
    builds: list[BuildRecord] = field(default_factory=list)  # this segment's build phase (fedsim.pipeline.builds)

    @property
    def build_s(self) -> float:
        """Seconds the build phase took (part of the run's duration, of no job's)."""
        return sum(b.seconds for b in self.builds)


def load_cubes(bench: BenchmarkSpec, decryption_keys: Mapping[str, Path] | None = None) -> Cubes:
    """The benchmark's cubes, whichever format declares each; a model's image gets its expected digest and its
    decryption key (the benchmark's ``decryption_key``, else ``decryption_keys``, the CLI's) here, once."""
    assert bench.data_prep.cube is not None and bench.metrics.cube is not None
    keys = dict(decryption_keys or {})
    unknown = sorted(set(keys) - {m.name for m in bench.models})
    if unknown:
        raise SpecError(
            f"--decryption-key names no model of the benchmark: {', '.join(unknown)}; fix: use MODEL=FILE with one "
            f"of {', '.join(m.name for m in bench.models)}",
            file=str(bench.source) if bench.source else None,
            field="models",
        )
    models: dict[str, CubeSpec] = {}
    for i, m in enumerate(bench.models):
        cube = load_cube(m.cube) if m.cube is not None else image_only_cube(m.name, m.image or "", bench.image_contract)
        models[m.name] = with_image_settings(
            cube, m.decryption_key or keys.get(m.name), m.image_digest, bench.source, f"models[{i}]"
        )
    for name, cube in models.items():
        if "infer" not in cube.tasks:
            raise SpecError(
                f"model {name!r}: its {cube.spec_file} has no 'infer' task (tasks: {', '.join(cube.tasks)})",
                file=str(cube.spec_path),
                field="tasks.infer",
            )
    return Cubes(load_cube(bench.data_prep.cube), load_cube(bench.metrics.cube), models)


def _select_models(bench: BenchmarkSpec, names: tuple[str, ...]) -> BenchmarkSpec:
    if not names:
        return bench
    known = {m.name for m in bench.models}
    missing = [n for n in names if n not in known]
    if missing:
        raise SpecError(
            f"no model named {', '.join(missing)}; the benchmark has: {', '.join(sorted(known))}",
            file=str(bench.source),
            field="models",
        )
    return bench.model_copy(update={"models": [m for m in bench.models if m.name in names]})


def _dump(spec: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = spec.model_dump(mode="json", exclude={"source"})
    return dumped


def write_config(run: RunDirectory, bench: BenchmarkSpec, sites: list[SiteSpec], plans: list[SitePlan]) -> None:
    write_yaml_atomic(run.config / "benchmark.yaml", _dump(bench))
    for s in sites:
        write_yaml_atomic(run.config / "sites" / f"{s.name}.yaml", _dump(s))
    write_params(run, bench, plans)


def write_params(run: RunDirectory, bench: BenchmarkSpec, plans: list[SitePlan]) -> None:
    """The parameter files the data-prep and metrics cubes read at each site."""
    for p in plans:
        d = run.site(p.site.name)
        data = bench.data
        write_yaml_atomic(
            d.params / "data_prep.yaml",
            {
                "max_val_size": data.max_val_size,
                "seed": data.seed,
                "expected_shape": list(data.expected_shape),
                "expected_spacing": list(data.expected_spacing),
                "labels": list(data.labels),
            },
        )
        metrics: dict[str, Any] = {"metric_set": bench.metrics.metric_set}
        if bench.metrics.metric_set == "lesionwise":
            metrics["lesionwise"] = bench.metrics.lesionwise.model_dump(mode="json", exclude_none=True)
        elif bench.metrics.metric_set == "brats2025":
            metrics["brats2025"] = bench.metrics.brats2025.model_dump(mode="json")
        write_yaml_atomic(d.params / "metrics.yaml", metrics)


def _clean_number(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def collect_site_metrics(run: RunDirectory, site: str, results: list[JobResult]) -> dict[str, dict[str, Any]]:
    """Merge the site's per-model metrics YAMLs into the ranking format: case → model → metrics."""
    merged: dict[str, dict[str, Any]] = {}
    for res in results:
        if res.kind != JobKind.EVALUATE.value or not res.status.finished_ok or res.model is None:
            continue
        path = run.site(site).results(res.model)
        try:
            data = safe_load_file(path, data_file=True) or {}  # the metrics cube's output, bounded
        except SpecError as exc:
            res.status, res.reason = JobStatus.FAILED, f"metrics output unreadable: {exc}"
            continue
        if not isinstance(data, dict):
            res.status, res.reason = JobStatus.FAILED, "metrics output is not a mapping of cases"
            continue
        for case, metrics in data.items():
            if isinstance(metrics, dict):
                merged.setdefault(str(case), {})[res.model] = {k: _clean_number(v) for k, v in metrics.items()}
    return {case: merged[case] for case in sorted(merged)}


def iso_utc(wall: float | None) -> str | None:
    return None if wall is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def summary_segments(segments: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """``summary.json``'s ``segments`` (the first run, then every resume) and their total duration."""
    out: list[dict[str, Any]] = []
    for seg in segments:
        start, end = seg["started_at"], seg["finished_at"]
        duration = None if end is None else round(max(0.0, end - start), 3)
        out.append(
            {
                "started": iso_utc(start),
                "finished": iso_utc(end),
                "duration_s": duration,
                "jobs_run": seg["jobs_run"],
                "resumed": seg["resumed"],
                "retry_failed": seg["retry_failed"],
                "state": seg["state"],
            }
        )
    return out, round(sum(s["duration_s"] or 0.0 for s in out), 3)


def write_summary(report: RunReport, started_wall: float) -> None:
    jobs = [r.to_dict() for rs in report.results.values() for r in rs]
    segments, total = summary_segments(report.segments)
    write_json_atomic(
        report.run.summary,
        {
            "run_id": report.run.run_id,
            "fedsim_version": __version__,
            "benchmark": report.benchmark.name,
            "sites": [s.name for s in report.sites],
            "models": [m.name for m in report.benchmark.models],
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_wall)),
            "duration_s": round(report.duration_s, 3),
            "interrupted": report.interrupted,
            "jobs": jobs,
            "segments": segments,
            "total_duration_s": total,
            **build_summary(report.builds),
            "output_problems": output_problem_counts([r for rs in report.results.values() for r in rs]),
        },
    )


def output_problem_counts(results: list[Any]) -> dict[str, Any]:
    """Invalid predictions of succeeded infers (each job's ``output_problems`` holds the details): the cases
    in all, per model and per model and site. ``results``: JobResults, or the report's JobRows of a summary."""
    by_model: dict[str, int] = {}
    by_site: dict[str, dict[str, int]] = {}
    for r in results:
        if r.output_problems:
            model = r.model or r.name
            by_model[model] = by_model.get(model, 0) + len(r.output_problems)
            by_site.setdefault(model, {})[r.site] = len(r.output_problems)
    return {"cases": sum(by_model.values()), "by_model": by_model, "by_model_and_site": by_site}


def rank_run(report: RunReport) -> Any:
    """Rank the models over the sites that produced metrics; None when there is nothing to rank."""
    if not any(report.site_metrics.values()) or len(report.benchmark.models) < 1:
        return None
    from fedsim.ranking import load_institutions, rank, write_csvs

    institutions = load_institutions(report.run.results)
    result = rank(institutions, method=report.benchmark.ranking.method)
    write_csvs(result, report.run.ranking)
    return result


def prepare_run(options: RunOptions) -> tuple[BenchmarkSpec, list[SiteSpec], Cubes]:
    bench = _select_models(load_benchmark(options.benchmark), options.models)
    site_paths = list(options.sites) or list(bench.sites)
    if not site_paths:
        raise SpecError(
            "no sites given: add 'sites:' to the benchmark or pass --sites",
            file=str(bench.source),
            field="sites",
        )
    sites = load_sites(site_paths)
    keys = dict(options.decryption_keys)
    unknown = sorted(set(keys) - {m.name for m in bench.models})
    if unknown:
        raise SpecError(
            f"--decryption-key for {', '.join(unknown)}: no such model in the benchmark; fix: one of "
            + ", ".join(m.name for m in bench.models),
            file=str(bench.source),
            field="models",
        )
    cubes = load_cubes(bench, keys)
    return data_reaches_prep(bench, cubes.data_prep), sites, cubes  # data: reaches the cube, or refused


def check_containment(sites: list[SiteSpec], cubes: Cubes, options: RunOptions) -> str | None:
    """Refuse a run whose submissions would run as plain host processes before anything starts (one line,
    exit 2, naming the cause and the fix), unless the user allowed it. Other runtime problems are each job's to
    report. Returns the note to show once when fedsim's bundled cubes will run without containment."""
    return refuse_unsandboxed(
        (cube, resolve(options.runtime or site.runtime, cube, untrusted=True, options=options.containment))
        for site in sites
        for cube in cubes.models.values()
    )


def check_run_ids(options: RunOptions) -> None:
    """Refuse a ``--run-id`` or ``--resume`` that is not a plain name inside ``--runs-dir`` (exit 2), before
    anything is read or written."""
    if options.resume is not None:
        check_run_id(options.resume, "--resume")
    if options.run_id is not None:
        check_run_id(options.run_id)


EARLIER_RUNS = 5  # how many of the newest earlier runs of the benchmark time the jobs of a new one


def earlier_durations(runs_dir: Path, benchmark: str, exclude: str | None = None) -> dict[str, float]:
    """Job key → seconds from the ledgers of the newest earlier runs of ``benchmark`` in ``runs_dir`` (the newest
    run's time wins); what orders the ready jobs longest first. Empty when there are none."""
    try:
        ledgers = [p / Ledger.FILE for p in runs_dir.iterdir() if p.name != exclude and (p / Ledger.FILE).is_file()]
        ledgers.sort(key=lambda f: f.stat().st_mtime)
    except OSError:
        return {}
    durations: dict[str, float] = {}
    for f in ledgers[-EARLIER_RUNS:]:
        durations.update(recorded_durations(f, benchmark))
    return durations


def resume_options(options: RunOptions) -> RunOptions:
    """Options of a resumed run: the benchmark and sites exactly as the run recorded them. Its id is one
    :func:`check_run_ids` accepted (every caller checks it first)."""
    assert options.resume is not None
    run = RunDirectory((options.runs_dir / check_run_id(options.resume, "--resume")).resolve())
    if not (run.root / Ledger.FILE).is_file():
        raise StoreError(f"no run {options.resume!r} to resume in {options.runs_dir} (no {Ledger.FILE} in {run.root})")
    return replace(
        options,
        benchmark=run.config / "benchmark.yaml",
        sites=(run.config / "sites",),
        run_id=options.resume,
        models=(),
    )


@dataclass(frozen=True)
class PreparedRun:
    """A run checked and loaded, nothing started: what :func:`prepare` made of the options (for a resume, the
    options of the run it continues), the benchmark, its sites and cubes, and the note to show once when fedsim's
    bundled cubes will run without containment."""

    options: RunOptions
    benchmark: BenchmarkSpec
    sites: tuple[SiteSpec, ...]
    cubes: Cubes
    note: str | None = None


def prepare(options: RunOptions) -> PreparedRun:
    """Every check a run makes before it writes anything, done once: the run id (:func:`check_run_ids`), a
    resume's recorded options (:func:`resume_options`), the benchmark, sites and cubes (:func:`prepare_run`),
    and the refusal of unsandboxed submissions (:func:`check_containment`). Raises the one-line errors."""
    check_run_ids(options)
    if options.resume:
        options = resume_options(options)
    bench, sites, cubes = prepare_run(options)
    note = check_containment(sites, cubes, options)
    return PreparedRun(options, bench, tuple(sites), cubes, note)


def run_benchmark(
    run: PreparedRun | RunOptions,
    observer: RunObserver | None = None,
    *,
    executor: Executor | None = None,
    stop_event: threading.Event | None = None,
) -> RunReport:
    """Run a prepared benchmark (given options, :func:`prepare` them first and tell ``observer`` its note).
    ``observer`` sees the plan before anything runs, the build phase, every job's start and finish, and
    messages (:mod:`fedsim.pipeline.observer`)."""
    watch: RunObserver = observer if observer is not None else Observer()
    if isinstance(run, RunOptions):
        run = prepare(run)
        if run.note is not None:
            watch.message(f"note: {run.note}")
    options, bench, sites, cubes = run.options, run.benchmark, list(run.sites), run.cubes
    executor = executor or LocalExecutor(options.max_sites)
    try:
        executor.check_sites(sites)
    except BaseException:
        executor.close()  # refused before anything ran: release what the executor holds
        raise
    raw: list[tuple[SiteSpec, Path]] = []
    for s in sites:
        if needs_synthesis(s):
            watch.message(f"synthesising {s.data.synthesize.cases} cases for site {s.name} ...")  # type: ignore[union-attr]
        raw.append((s, ensure_site_data(s)))
    # the one place a run id becomes a path: it stays inside --runs-dir, whoever called us
    directory = RunDirectory((options.runs_dir / check_run_id(options.run_id or new_run_id())).resolve())
    try:
        # Held until this function returns or the process dies: no second run or resume of this directory
        # starts meanwhile, so a resume only ever kills the leftovers of a dead run.
        lock = claim_run(directory.root, resume=options.resume is not None, runs_dir=options.runs_dir)
    except BaseException:
        executor.close()  # refused before anything ran: release what the executor holds
        raise
    try:
        return _run_locked(options, directory, bench, sites, cubes, raw, watch, executor, stop_event)
    finally:
        lock.release()


def _run_locked(
    options: RunOptions,
    run: RunDirectory,
    bench: BenchmarkSpec,
    sites: list[SiteSpec],
    cubes: Cubes,
    raw: list[tuple[SiteSpec, Path]],
    watch: RunObserver,
    executor: Executor,
    stop_event: threading.Event | None,
) -> RunReport:
    """The run proper, while this process holds the run directory's lock."""
    run_id = run.run_id
    plans = plan(bench, raw, cubes, run, options.runtime, options.containment)
    if options.resume:
        write_params(run, bench, plans)
    else:
        write_config(run, bench, sites, plans)  # before the ledger exists: a ledger implies a complete config
    ledger = Ledger(run.root / Ledger.FILE)
    done: dict[str, JobResult] = {}
    if options.resume:
        procs, containers = kill_orphans(run_id)
        if procs or containers:
            watch.message(f"killed {procs} leftover processes and {containers} containers of the interrupted run")
        ledger.mark_unfinished("interrupted")
        done = {k: JobResult.from_dict(r) for k, r in ledger.done().items()}
        if options.retry_failed:
            again = retry_keys(plans, done)
            done = {k: r for k, r in done.items() if k not in again}
            watch.message(
                f"retrying {len(again)} jobs that did not succeed, with their dependants: {', '.join(sorted(again))}"
            )
        watch.message(f"resuming run {run_id}: {len(done)} finished jobs are kept")
    ledger.begin_run(run_id, bench.name)
    stop = stop_event or threading.Event()
    started_wall, started = time.time(), time.monotonic()
    resumed = options.resume is not None
    segment = ledger.begin_segment(started_wall, resumed=resumed, retry_failed=resumed and options.retry_failed)
    report = RunReport(run, bench, sites, {})
    try:
        with executor:
            durations = earlier_durations(options.runs_dir, bench.name, exclude=run_id)
            # the whole plan before anything runs: the progress counts against it
            jobs = tuple(j for p in plans for j in p.jobs)
            concurrency = capacity(JobGraph.from_plans(plans), executor, options.max_sites)
            watch.plan(RunPlan(jobs, frozenset(done), durations, concurrency))
            # Images first, each once, timed as the run's and never as a job's; a failed one fails its cube's jobs.
            report.builds, unbuildable = build_images(plans, executor, done=done, stop_event=stop, on_build=watch.build)
            for job, res in unbuildable:
                record_job(ledger, job, res)
                watch.job("finished", job, res)
            done = {**done, **{job.key: res for job, res in unbuildable}}
            report.results = run_all(
                plans, executor, watch.job, stop, done, ledger, durations=durations, max_jobs=options.max_sites
            )
    finally:
        report.interrupted = stop.is_set()
        ledger.mark_unfinished("interrupted")
        ledger.set_run_state(run_id, "interrupted" if report.interrupted else "completed")
        ledger.end_segment(segment, time.time(), "interrupted" if report.interrupted else "completed")
        report.segments = ledger.segments()
        ledger.close()
        report.duration_s = time.monotonic() - started
        if not report.results:
            report.results = {p.site.name: [] for p in plans}
        for site_name, results in report.results.items():
            metrics = collect_site_metrics(run, site_name, results)
            report.site_metrics[site_name] = metrics
            if metrics:
                write_yaml_atomic(run.site_results(site_name), metrics)
        write_summary(report, started_wall)
    if options.rank and not report.interrupted:
        report.ranking = rank_run(report)
    if options.report_writer is not None:
        try:
            report.report_html = options.report_writer(run.root)
        except Exception as exc:  # a report problem never turns a finished run into a failure
            log.exception("writing the HTML report failed")
            watch.message(f"warning: the HTML report could not be written ({type(exc).__name__}: {exc}); see the log")
    return report
