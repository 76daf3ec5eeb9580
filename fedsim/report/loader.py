"""Read a finished run directory, once, into the typed :class:`~fedsim.report.runview.RunView` the report renders:
jobs as :class:`~fedsim.jobs.job.JobResult`, per-case metrics, the recorded specs as spec models, the ranking.

Raw JSON and YAML exist only here. Runs of older fedsim versions load too (a missing field takes its default),
and so does a run without metrics (every job failed, or an interrupted run): ``institutions`` is then empty and
the report shows the jobs and the configuration.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from fedsim.errors import StoreError
from fedsim.jobs.job import JobResult, JobStatus
from fedsim.pipeline.builds import BuildRecord
from fedsim.report.runview import JobLog, RecordedBenchmark, RecordedSite, RunSummary, RunView
from fedsim.spec.models import HardwareProfile, ModelRef, ResourceLimits, SiteDataSpec
from fedsim.store.rundir import RunDirectory
from fedsim.store.tail import read_end
from fedsim.yamlsafe import safe_load_file

if TYPE_CHECKING:  # ranking needs scipy (80 MB): imported by load_run only, so readers of runs stay light
    from fedsim.ranking import InstitutionResults

__all__ = [
    "REGION_SUFFIXES",
    "finite_int",
    "finite_number",
    "job_result",
    "load_run",
    "read_summary",
    "read_tail",
    "recorded_benchmark",
    "recorded_site",
    "run_summary",
    "split_metric",
]

REGION_SUFFIXES = ("ET", "TC", "WT")
_BRATS2025_FAMILY = re.compile(
    r"^(?:all_instance_(?:tp|fp|fn|prec|rec|f1)|global_(?:dsc|nsd|hd95)|lesionwise_(?:dsc|nsd|hd95)_(?:mean|std))$"
)
LOG_TAIL_LINES = 25
LOG_TAIL_BYTES = 16_384


def split_metric(key: str) -> tuple[str, str]:
    """``Dice_ET`` → ``("Dice", "ET")``, BraTS 2025's ``lesionwise_dsc_mean_et`` → ``("lesionwise_dsc_mean",
    "et")``; keys without a region (``missing_pred``) get region ``""``."""
    head, _, tail = key.rpartition("_")
    if head and (tail in REGION_SUFFIXES or _BRATS2025_FAMILY.match(head)):
        return head, tail
    return key, ""


def load_run(run_dir: Path) -> RunView:
    """Load everything the report needs from ``run_dir`` (``summary.json`` is required), into typed values."""
    from fedsim.ranking import DEFAULT_METHOD, METHODS, load_institutions, rank

    run = RunDirectory(Path(run_dir).resolve())
    if not run.summary.is_file():
        raise StoreError(f"{run.root} is not a finished run directory: {run.summary.name} is missing")
    raw = read_summary(run)
    summary = run_summary(raw)
    jobs: list[JobResult] = []
    logs: dict[str, JobLog] = {}
    for record in raw.get("jobs") or []:
        if isinstance(record, dict):
            job = job_result(record)
            jobs.append(job)
            log = _job_log(run, job)
            if log is not None:
                logs[job.key] = log
    del raw  # the records are JobResults now
    benchmark = recorded_benchmark(_read_yaml(run.config / "benchmark.yaml"))
    sites_config: dict[str, RecordedSite] = {}
    sites_dir = run.config / "sites"
    if sites_dir.is_dir():
        for path in sorted(sites_dir.glob("*.yaml")):
            site = recorded_site(_read_yaml(path), path.stem)
            sites_config[site.name] = site
    institutions: dict[str, InstitutionResults] = {}
    if run.results.is_dir() and any(run.results.glob("*.yaml")):
        institutions = load_institutions(run.results)
    method = benchmark.ranking_method or DEFAULT_METHOD
    if method not in METHODS:
        method = DEFAULT_METHOD
    ranking = rank(institutions, method) if institutions else None

    models = list(summary.models)
    for inst in institutions.values():
        models += [a for a in inst.algorithms if a not in models]
    if ranking is not None:  # best first, models without any metrics last
        models = [*ranking.algorithms, *(m for m in models if m not in ranking.algorithms)]
    sites = list(summary.sites)
    sites += [s for s in institutions if s not in sites]
    return RunView(
        root=run.root,
        summary=summary,
        jobs=tuple(jobs),
        logs=logs,
        benchmark=benchmark,
        sites_config=sites_config,
        institutions=institutions,
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


def finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def finite_int(value: Any) -> int | None:
    return None if finite_number(value) is None else int(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def job_result(record: Mapping[str, Any]) -> JobResult:
    """A ``summary.json`` or ledger job record as a :class:`JobResult`, tolerating records of older fedsim
    versions and edited files: a missing field takes its default, a non-finite or mistyped number is None (a
    duration 0), an unknown status counts as ``failed``."""
    try:
        status = JobStatus(str(record.get("status")))
    except ValueError:
        status = JobStatus.FAILED
    limits = record.get("limits")
    return JobResult(
        site=str(record.get("site", "")),
        name=str(record.get("name", "")),
        kind=str(record.get("kind", "")),
        model=_text(record.get("model")),
        status=status,
        reason=str(record.get("reason") or ""),
        exit_code=finite_int(record.get("exit_code")),
        duration_s=finite_number(record.get("duration_s")) or 0.0,
        num_cases=finite_int(record.get("num_cases")),
        runtime=_text(record.get("runtime")),
        peak_rss_bytes=finite_int(record.get("peak_rss_bytes")),
        peak_gpu_memory_bytes=finite_int(record.get("peak_gpu_memory_bytes")),
        gpu_ids=[str(g) for g in record.get("gpu_ids") or ()],
        log=_text(record.get("log") or None),
        node=_text(record.get("node")),
        containment=_text(record.get("containment")),
        sandbox_binary=_text(record.get("sandbox_binary")),
        limits=dict(limits) if isinstance(limits, Mapping) else None,
        output_problems=_problems(record.get("output_problems")),
        image=_image(record.get("image")),
    )


def _image(value: Any) -> dict[str, str] | None:
    """A job's image provenance (tag, id, repo digest, the archive's or SIF's content hash), as text only."""
    if not isinstance(value, Mapping):
        return None
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str | int)}


def _problems(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        return {}
    return {str(c): [str(p) for p in ps] for c, ps in value.items() if isinstance(ps, list | tuple)}


def _job_log(run: RunDirectory, job: JobResult) -> JobLog | None:
    # Prefer the log inside the run directory: the recorded absolute path breaks when the run is moved.
    local = run.site(job.site).log(job.name)
    path = local if local.is_file() else Path(job.log) if job.log else None
    if path is None:
        return None
    return JobLog(path=path, tail=read_tail(path) if not job.status.finished_ok else None)


def run_summary(raw: Mapping[str, Any]) -> RunSummary:
    """The run facts of ``summary.json`` (its jobs are read by :func:`job_result`)."""
    builds = tuple(_build_record(b) for b in raw.get("builds") or () if isinstance(b, Mapping))
    return RunSummary(
        run_id=_text(raw.get("run_id") or None),
        fedsim_version=_text(raw.get("fedsim_version")),
        benchmark=_text(raw.get("benchmark") or None),
        sites=tuple(str(s) for s in raw.get("sites") or ()),
        models=tuple(str(m) for m in raw.get("models") or ()),
        started_at=_text(raw.get("started_at")),
        duration_s=finite_number(raw.get("duration_s")),
        total_duration_s=finite_number(raw.get("total_duration_s")),
        interrupted=bool(raw.get("interrupted", False)),
        builds=builds,
        build_s=finite_number(raw.get("build_s")),
    )


def _build_record(raw: Mapping[str, Any]) -> BuildRecord:
    return BuildRecord(
        image=str(raw.get("image", "?")),
        cube=str(raw.get("cube", "?")),
        runtime=str(raw.get("runtime", "?")),
        action=str(raw.get("action", "?")),
        seconds=finite_number(raw.get("seconds")) or 0.0,
        jobs=finite_int(raw.get("jobs")) or 0,
        error=_text(raw.get("error") or None),
    )


M = TypeVar("M", bound=BaseModel)


def _section(model: type[M], value: Any) -> M | None:
    """``value`` as the spec's ``model``, keys the model does not know left out; None when absent or invalid."""
    if not isinstance(value, Mapping):
        return None
    try:
        return model.model_validate({k: v for k, v in value.items() if k in model.model_fields})
    except ValidationError:
        return None


def _dump(value: Any) -> str:
    return str(yaml.safe_dump(value, sort_keys=False, default_flow_style=None)).strip()


def recorded_benchmark(raw: Mapping[str, Any]) -> RecordedBenchmark:
    """The run's ``config/benchmark.yaml`` (any mapping: an older run's, a partial one) as typed sections."""
    metrics = raw.get("metrics")
    ranking = raw.get("ranking")
    entries = raw.get("models")
    models = [_section(ModelRef, m) for m in entries] if isinstance(entries, list) else []
    name = raw.get("name")
    limits = raw.get("limits")
    return RecordedBenchmark(
        name=None if name is None else str(name),
        models=tuple(m for m in models if m is not None),
        limits=_section(ResourceLimits, limits),
        limit_rows=tuple((str(k), str(v)) for k, v in limits.items()) if isinstance(limits, Mapping) else (),
        metric_set=_text(metrics.get("metric_set")) if isinstance(metrics, Mapping) else None,
        ranking_method=_text(ranking.get("method") or None) if isinstance(ranking, Mapping) else None,
        text=_dump(dict(raw)),
    )


def recorded_site(raw: Mapping[str, Any], default_name: str) -> RecordedSite:
    """One ``config/sites/<site>.yaml`` of the run as typed sections; ``default_name`` when it names none."""
    runtime = raw.get("runtime")
    return RecordedSite(
        name=str(raw.get("name") or default_name),
        runtime=None if runtime is None else str(runtime),
        hardware=_section(HardwareProfile, raw.get("hardware")),
        data=_section(SiteDataSpec, raw.get("data")),
        text=_dump(dict(raw)),
    )


def read_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_BYTES) -> str | None:
    """The last ``lines`` lines of a log (at most ``max_bytes`` read from its end); None if unreadable."""
    end = read_end(path, max_bytes)
    if end is None:
        return None
    text, truncated = end
    if truncated:
        text = text.split("\n", 1)[-1]  # drop the partial first line
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])
