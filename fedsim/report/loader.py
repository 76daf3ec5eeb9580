"""Read a finished run directory into one value the report renders: jobs, per-case metrics, specs, ranking.

Raw JSON and YAML exist only here. A run without metrics (every job failed, or an interrupted run) still
loads: ``institutions`` is then empty and the report shows the jobs and the configuration.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.errors import StoreError
from fedsim.ranking import DEFAULT_METHOD, METHODS, InstitutionResults, RankingResult, load_institutions, rank
from fedsim.store.rundir import RunDirectory
from fedsim.store.tail import read_end
from fedsim.yamlsafe import safe_load_file

__all__ = ["REGION_SUFFIXES", "JobRow", "RunData", "load_run", "read_summary", "split_metric"]

REGION_SUFFIXES = ("ET", "TC", "WT")
LOG_TAIL_LINES = 25
LOG_TAIL_BYTES = 16_384


def split_metric(key: str) -> tuple[str, str]:
    """``Dice_ET`` → ``("Dice", "ET")``; keys without a region (``missing_pred``) get region ``""``."""
    head, _, tail = key.rpartition("_")
    if head and tail in REGION_SUFFIXES:
        return head, tail
    return key, ""


@dataclass(frozen=True)
class JobRow:
    """One job of ``summary.json`` with what the report derives from it."""

    site: str
    name: str
    kind: str
    model: str | None
    status: str
    reason: str
    exit_code: int | None
    duration_s: float
    num_cases: int | None
    runtime: str | None
    peak_rss_bytes: int | None
    peak_gpu_memory_bytes: int | None
    gpu_ids: tuple[str, ...]
    log_path: Path | None
    log_tail: str | None = None
    """Last lines of the log, only for jobs that did not succeed."""
    containment: str | None = None
    """How the job was held: docker, singularity, bwrap (the local sandbox) or none; None in older runs."""
    output_problems: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """A succeeded infer's invalid predictions: case -> why (check-submission's validator); empty in older runs."""

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @property
    def seconds_per_case(self) -> float | None:
        if self.kind != "infer" or not self.num_cases:
            return None
        return self.duration_s / self.num_cases


@dataclass(frozen=True)
class RunData:
    root: Path
    summary: dict[str, Any]
    jobs: tuple[JobRow, ...]
    institutions: dict[str, InstitutionResults]
    benchmark: dict[str, Any]
    sites_config: dict[str, dict[str, Any]]
    method: str
    ranking: RankingResult | None
    models: tuple[str, ...] = field(default=())
    """Every model of the run, in ranking order when there is a ranking."""
    sites: tuple[str, ...] = field(default=())

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or self.root.name)


def load_run(run_dir: Path) -> RunData:
    """Load everything the report needs from ``run_dir`` (``summary.json`` is required)."""
    run = RunDirectory(Path(run_dir).resolve())
    if not run.summary.is_file():
        raise StoreError(f"{run.root} is not a finished run directory: {run.summary.name} is missing")
    summary = read_summary(run)
    jobs = tuple(_job_row(run, j) for j in summary.get("jobs", []) if isinstance(j, dict))
    benchmark = _read_yaml(run.config / "benchmark.yaml")
    sites_config = {}
    sites_dir = run.config / "sites"
    if sites_dir.is_dir():
        for path in sorted(sites_dir.glob("*.yaml")):
            data = _read_yaml(path)
            sites_config[str(data.get("name") or path.stem)] = data
    institutions: dict[str, InstitutionResults] = {}
    if run.results.is_dir() and any(run.results.glob("*.yaml")):
        institutions = load_institutions(run.results)
    method = str((benchmark.get("ranking") or {}).get("method") or DEFAULT_METHOD)
    if method not in METHODS:
        method = DEFAULT_METHOD
    ranking = rank(institutions, method) if institutions else None

    models = list(summary.get("models") or [])
    for inst in institutions.values():
        models += [a for a in inst.algorithms if a not in models]
    if ranking is not None:  # best first, models without any metrics last
        models = [*ranking.algorithms, *(m for m in models if m not in ranking.algorithms)]
    sites = list(summary.get("sites") or [])
    sites += [s for s in institutions if s not in sites]
    return RunData(
        root=run.root,
        summary=summary,
        jobs=jobs,
        institutions=institutions,
        benchmark=benchmark,
        sites_config=sites_config,
        method=method,
        ranking=ranking,
        models=tuple(models),
        sites=tuple(sites),
    )


def read_summary(run: RunDirectory) -> dict[str, Any]:
    """The run's ``summary.json``; StoreError when it cannot be read or is not a JSON object."""
    try:
        summary = json.loads(run.summary.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot read {run.summary}: {exc}") from exc
    if not isinstance(summary, dict):
        raise StoreError(f"{run.summary} is not a JSON object")
    return summary


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    # Bounded like a data file: fedsim wrote it (dumping may have expanded a spec's aliases), but it may be edited.
    data = safe_load_file(path, data_file=True)
    return data if isinstance(data, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return None if _number(value) is None else int(value)


def _job_row(run: RunDirectory, job: dict[str, Any]) -> JobRow:
    site = str(job.get("site", ""))
    name = str(job.get("name", ""))
    # Prefer the log inside the run directory: the recorded absolute path breaks when the run is moved.
    local = run.site(site).log(name)
    recorded = Path(job["log"]) if job.get("log") else None
    log_path = local if local.is_file() else recorded
    status = str(job.get("status", "unknown"))
    tail = read_tail(log_path) if status != "succeeded" and log_path is not None else None
    return JobRow(
        site=site,
        name=name,
        kind=str(job.get("kind", "")),
        model=job.get("model"),
        status=status,
        reason=str(job.get("reason") or ""),
        exit_code=_int(job.get("exit_code")),
        duration_s=_number(job.get("duration_s")) or 0.0,
        num_cases=_int(job.get("num_cases")),
        runtime=job.get("runtime"),
        peak_rss_bytes=_int(job.get("peak_rss_bytes")),
        peak_gpu_memory_bytes=_int(job.get("peak_gpu_memory_bytes")),
        gpu_ids=tuple(str(g) for g in job.get("gpu_ids") or ()),
        log_path=log_path,
        log_tail=tail,
        containment=job.get("containment"),
        output_problems=_problems(job.get("output_problems")),
    )


def _problems(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        return {}
    return {str(c): tuple(str(p) for p in ps) for c, ps in value.items() if isinstance(ps, list | tuple)}


def read_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_BYTES) -> str | None:
    """The last ``lines`` lines of a log (at most ``max_bytes`` read from its end); None if unreadable."""
    end = read_end(path, max_bytes)
    if end is None:
        return None
    text, truncated = end
    if truncated:
        text = text.split("\n", 1)[-1]  # drop the partial first line
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])
