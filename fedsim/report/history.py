"""Run history: ``fedsim runs list`` and ``fedsim runs show ID``, read from the run directories in ``--runs-dir``.

Each run's job ledger (``ledger.sqlite``, opened read-only) is the live truth: it holds the run's state, every
finished job's record and the segments (the run and its resumes), so a running or killed run shows as well as a
finished one. ``summary.json`` fills in what an older run's ledger lacks, the results and ranking CSVs give the
scores. Nothing here writes to a run directory or takes its lock.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.errors import StoreError
from fedsim.jobs.job import JobResult, JobStatus
from fedsim.pipeline.run import iso_utc
from fedsim.report.loader import finite_number, job_result, read_summary, run_summary
from fedsim.report.runview import RunSummary
from fedsim.report.ties import has_ties
from fedsim.store.ledger import Ledger
from fedsim.store.rundir import RunDirectory
from fedsim.store.runlock import LOCK_FILE, check_run_id
from fedsim.yamlsafe import safe_load_file

__all__ = ["RunDetail", "RunInfo", "list_runs", "show_run"]

DATA_PREP_JOBS = ("prepare", "sanity_check", "statistics")


@dataclass(frozen=True)
class RunInfo:
    """One line of ``fedsim runs list``."""

    run_id: str
    path: Path
    benchmark: str | None
    started: float | None  # epoch seconds of the first segment
    duration_s: float | None  # over every segment (a live one counts up to now)
    state: str  # running, completed, interrupted, aborted (killed), no result (every site's data prep failed)
    jobs_ok: int
    jobs_failed: int  # finished without success: failed, timed out, broke a limit, interrupted
    jobs_total: int  # jobs the ledger knows (finished or not)
    jobs_skipped: int = 0  # not run because a job they need failed
    segments: int = 1
    models: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "path": str(self.path),
            "benchmark": self.benchmark,
            "started": iso_utc(self.started),
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "state": self.state,
            "jobs_ok": self.jobs_ok,
            "jobs_failed": self.jobs_failed,
            "jobs_skipped": self.jobs_skipped,
            "jobs_total": self.jobs_total,
            "segments": self.segments,
            "models": list(self.models),
            "sites": list(self.sites),
        }


@dataclass(frozen=True)
class RunDetail:
    """What ``fedsim runs show ID`` prints: the run, a row per site and model, the ranking and the failures."""

    info: RunInfo
    rows: list[dict[str, Any]] = field(default_factory=list)
    ranking: dict[str, Any] | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.info.to_dict(), "sites_table": self.rows, "ranking": self.ranking, "failures": self.failures}


def _epoch(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        import calendar

        return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


# --- reading one run ------------------------------------------------------------------------------------------


@dataclass
class _Raw:
    summary: RunSummary | None = None  # None: no readable summary.json (a running, killed or damaged run)
    ledger_state: str | None = None
    ledger_benchmark: str | None = None
    created_at: float | None = None
    records: dict[str, JobResult] = field(default_factory=dict)  # job key -> record (finished jobs)
    unfinished: list[tuple[str, str, str]] = field(default_factory=list)  # (site, name, state)
    segments: list[tuple[float, float | None]] = field(default_factory=list)
    last_event: float | None = None


def _read_summary(run: RunDirectory) -> tuple[RunSummary | None, list[JobResult]]:
    """The run's summary and its jobs; (None, []) when it is missing or unreadable (the run shows without it)."""
    try:
        raw = read_summary(run)
    except (StoreError, ValueError):  # unreadable, not JSON or not an object
        return None, []
    if not raw:  # an empty object says nothing about the run
        return None, []
    return run_summary(raw), [job_result(j) for j in raw.get("jobs") or [] if isinstance(j, dict)]


def _read_ledger(path: Path, raw: _Raw) -> None:
    """Fill ``raw`` from a run's ledger, read-only; a missing or unreadable ledger leaves it as it was."""
    if not path.is_file():
        return
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
    except sqlite3.Error:
        return
    try:
        row = db.execute("SELECT state, benchmark, created_at FROM runs ORDER BY created_at LIMIT 1").fetchone()
        if row:
            raw.ledger_state, raw.ledger_benchmark, raw.created_at = row[0], row[1], finite_number(row[2])
        for _key, site, name, state, record in db.execute("SELECT key, site, name, state, record FROM jobs"):
            rec = None
            if state == "done" and record:
                try:
                    rec = json.loads(record)
                except ValueError:
                    rec = None
            if isinstance(rec, dict):
                raw.records[f"{site}/{name}"] = job_result(rec)
            else:
                raw.unfinished.append((str(site), str(name), str(state)))
        raw.segments = [
            (float(s), finite_number(f))
            for s, f in db.execute("SELECT started_at, finished_at FROM segments ORDER BY id")
        ]
        (last,) = db.execute("SELECT MAX(at) FROM events").fetchone()
        raw.last_event = finite_number(last)
    except sqlite3.Error:
        pass  # an older or damaged ledger: keep what was read
    finally:
        db.close()


def _live(run: RunDirectory) -> bool:
    """Whether a fedsim process holds the run now, as its lock file says (pid alive on this host). Reading the
    file never takes the lock, so listing runs can never make a starting run fail."""
    try:
        data = json.loads((run.root / LOCK_FILE).read_text(encoding="utf-8") or "null")
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return False  # released: the holder empties the file
    if data.get("host") not in (None, socket.gethostname()):
        return True  # another host's process: it cannot be checked from here
    try:
        os.kill(data["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _has_results(run: RunDirectory) -> bool:
    try:
        return any(run.results.glob("*.yaml"))
    except OSError:
        return False


def _info(root: Path) -> tuple[RunInfo, _Raw]:
    run = RunDirectory(root)
    summary, summary_jobs = _read_summary(run)
    raw = _Raw(summary=summary)
    _read_ledger(root / Ledger.FILE, raw)
    if not raw.records:  # no ledger (or an empty one): the summary's jobs
        raw.records = {job.key: job for job in summary_jobs}
    known = summary or RunSummary()
    live = _live(run)
    if raw.ledger_state is not None:
        state = raw.ledger_state
        if state == "running" and not live:
            state = "aborted"  # killed: its lock is gone, its ledger never heard the end
        elif state != "running" and live:
            state = "running"  # being resumed
    elif summary is not None:
        state = "interrupted" if summary.interrupted else "completed"
    else:
        state = "running" if live else "aborted"
    if state == "completed" and not _has_results(run):
        state = "no result"
    started = raw.segments[0][0] if raw.segments else raw.created_at or _epoch(known.started_at)
    duration = _duration(raw, live) if raw.segments else known.total_duration_s
    if duration is None:
        duration = known.duration_s
    statuses = [r.status.value for r in raw.records.values()]
    ok, skipped = statuses.count("succeeded"), statuses.count("skipped")
    info = RunInfo(
        run_id=known.run_id or root.name,
        path=root,
        benchmark=known.benchmark or raw.ledger_benchmark,
        started=started,
        duration_s=duration,
        state=state,
        jobs_ok=ok,
        jobs_failed=len(statuses) - ok - skipped,
        jobs_skipped=skipped,
        jobs_total=len(statuses) + len(raw.unfinished),
        segments=max(1, len(raw.segments)),
        models=known.models,
        sites=known.sites or tuple(sorted({k.split("/", 1)[0] for k in raw.records})),
    )
    return info, raw


def _duration(raw: _Raw, live: bool) -> float:
    total = 0.0
    for i, (start, end) in enumerate(raw.segments):
        if end is None:
            last = i == len(raw.segments) - 1
            end = time.time() if live and last else (raw.segments[i + 1][0] if not last else raw.last_event)
        total += max(0.0, (end or start) - start)
    return total


def _is_run(path: Path) -> bool:
    return path.is_dir() and ((path / Ledger.FILE).is_file() or (path / "summary.json").is_file())


def list_runs(runs_dir: Path) -> list[RunInfo]:
    """Every run in ``runs_dir``, oldest first (runs without a start time last); empty when there are none."""
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        return []
    if not runs_dir.is_dir():
        raise StoreError(f"--runs-dir {runs_dir} is not a directory")
    try:
        candidates = sorted(p for p in runs_dir.iterdir() if _is_run(p))
    except OSError as exc:
        raise StoreError(f"cannot read --runs-dir {runs_dir}: {exc.strerror or exc}") from exc
    infos = [_info(p.resolve())[0] for p in candidates]
    return sorted(infos, key=lambda i: (i.started is None, i.started or 0.0, i.run_id))


# --- one run in detail --------------------------------------------------------------------------------------------


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if finite_number(v) is not None]
    return sum(nums) / len(nums) if nums else None


def _site_metrics(run: RunDirectory, site: str) -> dict[str, Any]:
    path = run.site_results(site)
    if not path.is_file():
        return {}
    try:
        data = safe_load_file(path, data_file=True)
    except Exception:  # a damaged results file: the run shows without its scores
        return {}
    return data if isinstance(data, dict) else {}


def _ranking(run: RunDirectory) -> dict[str, Any] | None:
    files = sorted(run.ranking.glob("final_ranks_*.csv")) if run.ranking.is_dir() else []
    if not files:
        return None
    path = files[0]
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    models = []
    for r in rows:
        rank, score = _float(r.get("final_rank")), _float(r.get("final_score"))
        scores = {k[len("score_") :]: _float(v) for k, v in r.items() if k and k.startswith("score_")}
        models.append({"model": r.get("algorithm"), "rank": rank, "score": score, "site_scores": scores})
    models.sort(key=lambda m: (m["rank"] is None, m["rank"] or 0.0, str(m["model"])))
    ranks = [float(m["rank"]) for m in models if isinstance(m["rank"], (int, float))]
    tied = has_ties(ranks)
    return {"method": path.stem[len("final_ranks_") :], "models": models, "ties": tied, "file": str(path)}


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def show_run(runs_dir: Path, run_id: str) -> RunDetail:
    """The run ``run_id`` of ``runs_dir`` in detail; :class:`StoreError` (exit 2) when there is no such run."""
    check_run_id(run_id, "ID")
    root = (Path(runs_dir) / run_id).resolve()
    if not _is_run(root):
        known = [i.run_id for i in list_runs(runs_dir)][-5:]
        hint = f"; the newest: {', '.join(known)}" if known else " (fedsim runs list shows them)"
        raise StoreError(f"no run {run_id!r} in {runs_dir}{hint}")
    info, raw = _info(root)
    run = RunDirectory(root)
    models = list(info.models) or sorted({r.model for r in raw.records.values() if r.model})
    rows: list[dict[str, Any]] = []
    for site in info.sites:
        metrics = _site_metrics(run, site)
        prep_failed = next(
            (raw.records[f"{site}/{j}"] for j in DATA_PREP_JOBS if _failed(raw.records.get(f"{site}/{j}"))), None
        )
        for model in models:
            infer = raw.records.get(f"{site}/infer.{model}")
            evaluate = raw.records.get(f"{site}/evaluate.{model}")
            status = infer.status.value if infer else "not run"
            if prep_failed is not None and infer is None:
                status = f"skipped ({prep_failed.name} {prep_failed.status.value})"
            elif infer and infer.status.finished_ok and evaluate and not evaluate.status.finished_ok:
                status = f"evaluate {evaluate.status.value}"
            cases = [c.get(model, {}) for c in metrics.values() if isinstance(c, dict)]
            cases = [c for c in cases if isinstance(c, dict)]
            rows.append(
                {
                    "site": site,
                    "model": model,
                    "status": status,
                    "cases": len(cases),
                    "dice_et": _mean([c.get("Dice_ET") for c in cases]),
                    "dice_tc": _mean([c.get("Dice_TC") for c in cases]),
                    "dice_wt": _mean([c.get("Dice_WT") for c in cases]),
                    "hd95_wt": _mean([c.get("Hausdorff95_WT") for c in cases]),
                    "infer_s": infer.duration_s if infer else None,
                }
            )
    failures = [
        {"site": r.site, "job": r.name, "status": r.status.value, "reason": r.reason, "log": r.log}
        for r in raw.records.values()
        if _failed(r)
    ]
    return RunDetail(info=info, rows=rows, ranking=_ranking(run), failures=failures)


def _failed(record: JobResult | None) -> bool:
    """Finished without success, and not merely skipped because of another job."""
    return record is not None and record.status not in (JobStatus.SUCCEEDED, JobStatus.SKIPPED)
