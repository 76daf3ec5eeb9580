"""What the pages show, read from a run directory through fedsim's own loaders; nothing here writes.

A run's state comes from three readers: :func:`fedsim.store.ledger_view.read_ledger` (the live jobs, read-only),
:func:`fedsim.report.history.show_run` (the same run, site and ranking rows as ``fedsim runs show``) and the
run's resolved configuration (``config/benchmark.yaml``, ``config/sites/*.yaml``), which names every site and
model before their first job starts. Counts and the ETA are :class:`fedsim.pipeline.progress.ProgressModel`'s,
fed with the ledger's jobs, so the page and the console agree.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.cube import CubeSpec
from fedsim.errors import StoreError
from fedsim.jobs.job import FAILED_STATUSES, Job, JobKind, JobLimits, JobResult, JobStatus
from fedsim.pipeline.progress import Counts, ProgressModel, RunPlan, duration_text
from fedsim.pipeline.run import earlier_durations
from fedsim.report.history import RunDetail, RunInfo, list_runs, show_run
from fedsim.report.loader import read_tail
from fedsim.store.ledger_view import LedgerSnapshot, read_ledger
from fedsim.store.rundir import RunDirectory
from fedsim.yamlsafe import safe_load_file

__all__ = [
    "DATA_PREP",
    "Cell",
    "DryRunView",
    "Listing",
    "RunState",
    "load_dry_run",
    "load_listing",
    "load_run_state",
]

DATA_PREP = ("prepare", "sanity_check", "statistics")
STAGES = ("prepare", "sanity", "statistics", "infer", "evaluate")  # the grid's columns within one cell
GiB = 1024**3
MAX_FAILURES = 200  # failures listed on a run page; the rest are counted
MAX_JSON_BYTES = 32 * 1024 * 1024  # a dry-run or check JSON bigger than this is not one fedsim wrote
# The server knows a job by its ledger row; the progress model reads only its site, name, kind and key.
_LEDGER_CUBE = CubeSpec.model_validate({"name": "ledger", "tasks": {"task": {}}})


@dataclass(frozen=True)
class Cell:
    """One job of the grid."""

    key: str
    site: str
    name: str
    status: str  # waiting, running, succeeded, failed, timeout, ..., skipped, interrupted
    started_at: float | None = None
    duration_s: float | None = None
    reason: str = ""
    attempts: int = 0

    @property
    def css(self) -> str:
        if self.status in {s.value for s in FAILED_STATUSES}:
            return "failed"
        return self.status if self.status in {"waiting", "running", "succeeded", "skipped"} else "interrupted"

    @property
    def title(self) -> str:
        text = f"{self.key}: {self.status}"
        if self.duration_s is not None:
            text += f" in {duration_text(self.duration_s)}"
        return text + (f" — {self.reason}" if self.reason else "")

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "css": self.css, "title": self.title}


@dataclass(frozen=True)
class RunningJob:
    key: str
    site: str
    name: str
    started_at: float
    expected_s: float | None
    limit_s: float | None


@dataclass(frozen=True)
class Failure:
    key: str
    site: str
    name: str
    status: str
    reason: str
    log_tail: str | None


@dataclass(frozen=True)
class Peak:
    """The largest RAM and GPU memory one model (or the data prep) used at a site, against its limit."""

    site: str
    job: str
    ram_bytes: int | None
    ram_limit: int | None
    gpu_bytes: int | None
    gpu_limit: int | None

    @property
    def ram_share(self) -> float | None:
        return self.ram_bytes / self.ram_limit if self.ram_bytes and self.ram_limit else None


@dataclass
class RunState:
    """Everything a run page shows, at one moment."""

    run_id: str
    root: Path
    info: RunInfo | None
    sites: list[str]
    models: list[str]
    cells: dict[str, Cell]
    counts: Counts
    eta: str
    elapsed_s: float | None
    running: list[RunningJob]
    failures: list[Failure]
    more_failures: int
    peaks: list[Peak]
    builds: list[dict[str, Any]]
    finished: bool
    detail: RunDetail | None
    exports: list[str] = field(default_factory=list)
    read_at: float = field(default_factory=time.time)

    @property
    def state(self) -> str:
        return self.info.state if self.info is not None else "unknown"

    def cell(self, site: str, name: str) -> Cell:
        key = f"{site}/{name}"
        return self.cells.get(key) or Cell(key, site, name, "waiting")


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = safe_load_file(path, data_file=True)
    except Exception:  # an edited or damaged copy of the config: the page shows what the ledger has
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


@dataclass(frozen=True)
class RunConfig:
    """The run's resolved configuration as far as the pages need it."""

    benchmark: str | None
    sites: tuple[str, ...]
    models: tuple[str, ...]
    limits: dict[str, Any]
    site_ram_gb: dict[str, float]
    site_gpu_gb: dict[str, float]


def read_config(run: RunDirectory) -> RunConfig:
    bench = _read_yaml(run.config / "benchmark.yaml")
    sites: list[str] = []
    ram: dict[str, float] = {}
    gpu: dict[str, float] = {}
    sites_dir = run.config / "sites"
    for path in sorted(sites_dir.glob("*.yaml")) if sites_dir.is_dir() else []:
        data = _read_yaml(path)
        name = str(data.get("name") or path.stem)
        sites.append(name)
        hardware = _dict(data.get("hardware"))
        if _num(hardware.get("ram_gb")) is not None:
            ram[name] = float(hardware["ram_gb"])
        if _num(hardware.get("gpu_memory_gb")) is not None:
            gpu[name] = float(hardware["gpu_memory_gb"])
    models = [str(m.get("name")) for m in bench.get("models") or [] if isinstance(m, dict) and m.get("name")]
    limits = _dict(bench.get("limits"))
    title = bench.get("name")
    return RunConfig(str(title) if title else None, tuple(sites), tuple(models), limits, ram, gpu)


def _dict(value: Any) -> dict[str, Any]:
    """A mapping from a YAML or JSON file, or an empty one where the file has something else."""
    return dict(value) if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _kind(name: str) -> JobKind:
    head = name.partition(".")[0]
    try:
        return JobKind(head)
    except ValueError:
        return JobKind.INFER


def _job(site: str, name: str) -> Job:
    model = name.partition(".")[2] or None
    kind = _kind(name)
    return Job(
        site=site,
        name=name,
        kind=kind,
        cube=_LEDGER_CUBE,
        task=kind.value,
        paths=(),
        runtime="",
        limits=JobLimits(),
        log_path=Path(),
        workdir=Path(),
        model=model,
    )


def planned_names(models: list[str]) -> list[str]:
    """A site's jobs in plan order: the data prep, then each model's infer and evaluate."""
    return [*DATA_PREP, *(f"{k}.{m}" for m in models for k in ("infer", "evaluate"))]


def _result(record: dict[str, Any]) -> JobResult | None:
    try:
        return JobResult.from_dict(record)
    except (KeyError, TypeError, ValueError):
        return None


def _limit_s(config: RunConfig, run: RunDirectory, site: str, name: str) -> float | None:
    """A running job's wall-clock limit as the planner sets it: cases × the per-case timeout for a model,
    the task timeout for every other task."""
    if name.startswith("infer."):
        per_case = _num(config.limits.get("timeout_per_case_s"))
        try:
            cases = sum(1 for p in run.site(site).prepared.iterdir() if p.is_dir())
        except OSError:
            cases = 0
        return per_case * max(1, cases) if per_case is not None else None
    return _num(config.limits.get("task_timeout_s"))


def _status_of(row_state: str, record: dict[str, Any] | None, live: bool) -> str:
    if record is not None and isinstance(record.get("status"), str):
        return str(record["status"])
    if row_state == "running":
        return "running" if live else "interrupted"
    return row_state


def _peaks(config: RunConfig, cells_records: dict[str, dict[str, Any]]) -> list[Peak]:
    out: list[Peak] = []
    for key, rec in sorted(cells_records.items()):
        site, _, name = key.partition("/")
        limits = _dict(rec.get("limits"))
        ram, gpu = rec.get("peak_rss_bytes"), rec.get("peak_gpu_memory_bytes")
        if not isinstance(ram, int) and not isinstance(gpu, int):
            continue
        ram_limit = limits.get("ram_bytes")
        if not isinstance(ram_limit, int) and site in config.site_ram_gb:
            ram_limit = int(config.site_ram_gb[site] * GiB)
        gpu_limit = limits.get("gpu_memory_bytes")
        out.append(
            Peak(
                site,
                name,
                ram if isinstance(ram, int) else None,
                ram_limit if isinstance(ram_limit, int) else None,
                gpu if isinstance(gpu, int) else None,
                gpu_limit if isinstance(gpu_limit, int) else None,
            )
        )
    return out


def _exports(root: Path) -> list[str]:
    names = ["report.html", "results_long.csv", "summary_report.json", "summary.json"]
    found = [n for n in names if (root / n).is_file()]
    ranking = root / "ranking"
    if ranking.is_dir():
        found += [f"ranking/{p.name}" for p in sorted(ranking.glob("*.csv"))]
    return found


_EARLIER: dict[tuple[Path, str, str], tuple[float, dict[str, float]]] = {}
EARLIER_TTL_S = 60.0  # earlier runs do not change while this one runs: read their ledgers once a minute


def _earlier(runs_dir: Path, benchmark: str, run_id: str) -> dict[str, float]:
    key = (runs_dir, benchmark, run_id)
    hit = _EARLIER.get(key)
    if hit is None or time.monotonic() - hit[0] > EARLIER_TTL_S:
        hit = _EARLIER[key] = (time.monotonic(), earlier_durations(runs_dir, benchmark, exclude=run_id))
    return hit[1]


def load_run_state(
    runs_dir: Path, run_id: str, *, snapshot: LedgerSnapshot | None = None, concurrency: int = 1
) -> RunState:
    """The run ``run_id`` of ``runs_dir`` now; StoreError when there is no such run."""
    detail = show_run(runs_dir, run_id)  # the run id check and "no such run" are history's
    info = detail.info
    run = RunDirectory(info.path)
    config = read_config(run)
    snap = snapshot if snapshot is not None else read_ledger(run.root)
    live = info.state == "running"
    summary_jobs: dict[str, dict[str, Any]] = {}
    finished = run.summary.is_file() and not live
    if finished or snap is None:
        summary = _read_json(run.summary)
        for job in (summary or {}).get("jobs") or [] if isinstance(summary, dict) else []:
            if isinstance(job, dict):
                summary_jobs[f"{job.get('site')}/{job.get('name')}"] = job

    sites = list(config.sites or info.sites)
    models = list(config.models or info.models)
    rows: dict[str, tuple[str, dict[str, Any] | None, float | None, int, float | None]] = {}
    if snap is not None:
        for key, j in snap.jobs.items():
            rows[key] = (j.state, j.record, j.started_at, j.attempts, j.finished_at)
    for key, job_record in summary_jobs.items():
        if key not in rows or rows[key][1] is None:
            rows[key] = ("done", job_record, None, 1, None)
    for key in rows:
        site, _, name = key.partition("/")
        if site not in sites:
            sites.append(site)
        model = name.partition(".")[2]
        if model and model not in models:
            models.append(model)

    now = time.time()
    segment_start = snap.segments[-1][0] if snap is not None and snap.segments else None
    planned = [(s, n) for s in sites for n in planned_names(models)]
    earlier = frozenset(
        key
        for key, (state, rec, _s, _a, fin) in rows.items()
        if rec is not None and segment_start is not None and fin is not None and fin < segment_start
    )
    durations = _earlier(Path(runs_dir), config.benchmark or info.benchmark or "", run.run_id)
    progress = ProgressModel(RunPlan(tuple(_job(s, n) for s, n in planned), earlier, durations, max(1, concurrency)))
    cells: dict[str, Cell] = {}
    running: list[RunningJob] = []
    failures: list[Failure] = []
    failed_count = 0
    records: dict[str, dict[str, Any]] = {}
    for key, (state, rec, started, attempts, _fin) in rows.items():
        site, _, name = key.partition("/")
        status = _status_of(state, rec, live)
        duration = _num(rec.get("duration_s")) if rec else None
        reason = str(rec.get("reason") or "") if rec else ""
        cells[key] = Cell(key, site, name, status, started, duration, reason, attempts)
        job = _job(site, name)
        if status == "running" and started is not None:
            progress.started(job, started)
            running.append(RunningJob(key, site, name, started, None, _limit_s(config, run, site, name)))
        elif rec is not None and key not in earlier and (res := _result(rec)) is not None:
            progress.finished(job, res)
        if rec is not None:
            records[key] = rec
            try:
                failed = JobStatus(status) in FAILED_STATUSES
            except ValueError:
                failed = False
            if failed:
                failed_count += 1
                if len(failures) < MAX_FAILURES:
                    log = run.site(site).log(name)
                    tail = read_tail(log) if log.is_file() else None
                    failures.append(Failure(key, site, name, status, reason, tail))
    running = [
        RunningJob(r.key, r.site, r.name, r.started_at, progress.expected(_job(r.site, r.name)), r.limit_s)
        for r in sorted(running, key=lambda r: r.started_at)
    ]
    elapsed = info.duration_s
    summary = _read_json(run.summary) if finished else None
    builds = list(summary.get("builds") or []) if isinstance(summary, dict) else []
    return RunState(
        run_id=info.run_id,
        root=run.root,
        info=info,
        sites=sites,
        models=models,
        cells=cells,
        counts=progress.counts(),
        eta=str(progress.eta(now)) if live else "-",
        elapsed_s=elapsed,
        running=running,
        failures=failures,
        more_failures=failed_count - len(failures),
        peaks=_peaks(config, records),
        builds=builds,
        finished=finished,
        detail=detail if finished else None,
        exports=_exports(run.root),
        read_at=now,
    )


# --- dry runs and checks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRunView:
    """A ``dry_run.json`` (every submission) or a ``check-submission --json`` file (one)."""

    name: str
    path: Path
    counts: dict[str, int]
    submissions: list[dict[str, Any]]


def _as_dry_run(name: str, path: Path, data: Any) -> DryRunView | None:
    if isinstance(data, dict) and isinstance(data.get("submissions"), list):
        subs = [s for s in data["submissions"] if isinstance(s, dict)]
    elif isinstance(data, dict) and isinstance(data.get("checks"), list) and "verdict" in data:
        subs = [data]
    else:
        return None
    counts = {v: sum(1 for s in subs if s.get("verdict") == v) for v in ("PASS", "WARN", "FAIL", "ERROR")}
    return DryRunView(name, path, counts, subs)


def load_dry_run(runs_dir: Path, name: str) -> DryRunView:
    """The dry run (a directory with ``dry_run.json``) or check (a ``.json`` file) ``name`` in ``runs_dir``."""
    root = Path(runs_dir)
    candidates = [root / name / "dry_run.json", root / name] if not name.endswith(".json") else [root / name]
    for path in candidates:
        if path.is_file() and path.resolve().is_relative_to(root.resolve()):
            view = _as_dry_run(name, path, _read_json(path))
            if view is not None:
                return view
    raise StoreError(f"no dry run or check {name!r} in {runs_dir}")


@dataclass(frozen=True)
class Listing:
    runs: list[RunInfo]
    dry_runs: list[DryRunView]


def load_listing(runs_dir: Path) -> Listing:
    """The runs page: every run (``fedsim runs list``), every dry run and every check report in ``runs_dir``."""
    runs = list_runs(runs_dir)
    dry: list[DryRunView] = []
    root = Path(runs_dir)
    try:
        entries = sorted(root.iterdir()) if root.is_dir() else []
    except OSError:
        entries = []
    for p in entries:
        if p.is_symlink():
            continue
        if p.is_dir() and (p / "dry_run.json").is_file():
            view = _as_dry_run(p.name, p / "dry_run.json", _read_json(p / "dry_run.json"))
        elif p.is_file() and p.suffix == ".json":
            view = _as_dry_run(p.name, p, _read_json(p))
        else:
            continue
        if view is not None:
            dry.append(view)
    return Listing(runs, dry)
