"""The report's typed view of one finished run: what :func:`fedsim.report.loader.load_run` reads, once.

Jobs are the executors' own :class:`~fedsim.jobs.job.JobResult` records, builds the build phase's
:class:`~fedsim.pipeline.builds.BuildRecord`, the benchmark's and sites' sections the spec models of
:mod:`fedsim.spec.models`; only what those models do not cover (the summary's run facts, a job's log on disk, the
config as it was recorded) gets a small frozen dataclass here. Renderers and exports read attributes, never keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from fedsim.jobs.job import JobResult
from fedsim.pipeline.builds import BuildRecord
from fedsim.spec.models import HardwareProfile, ModelRef, ResourceLimits, SiteDataSpec

if TYPE_CHECKING:  # ranking needs scipy (80 MB): imported by load_run only, so readers of runs stay light
    from fedsim.ranking import InstitutionResults, RankingResult

__all__ = [
    "JobLog",
    "RecordedBenchmark",
    "RecordedSite",
    "RunSummary",
    "RunView",
    "recorded",
    "seconds_per_case",
]


@dataclass(frozen=True)
class RunSummary:
    """The run's own facts from ``summary.json``; a field an older fedsim did not write is None (or empty)."""

    run_id: str | None = None
    fedsim_version: str | None = None
    benchmark: str | None = None
    sites: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    started_at: str | None = None
    duration_s: float | None = None
    """This segment's duration (the last run or resume)."""
    total_duration_s: float | None = None
    """Over every segment (older runs: absent)."""
    interrupted: bool = False
    builds: tuple[BuildRecord, ...] = ()
    """The run's build phase (empty for older runs and Ray runs)."""
    build_s: float | None = None


@dataclass(frozen=True)
class RecordedBenchmark:
    """``config/benchmark.yaml`` as the run recorded it. Each section is the spec's model when it validates
    (keys this fedsim no longer knows left out), None when absent or invalid, so an older run still reports."""

    name: str | None = None
    models: tuple[ModelRef, ...] = ()
    limits: ResourceLimits | None = None
    limit_rows: tuple[tuple[str, str], ...] = ()
    """The limits as the file wrote them (``180`` or ``180.0``, keys of older versions too), for display."""
    metric_set: str | None = None
    ranking_method: str | None = None
    text: str = ""
    """The file re-dumped as YAML, for the report's "as the run resolved it" block."""


@dataclass(frozen=True)
class RecordedSite:
    """``config/sites/<site>.yaml`` as the run recorded it (sections as in :class:`RecordedBenchmark`)."""

    name: str
    runtime: str | None = None
    hardware: HardwareProfile | None = None
    data: SiteDataSpec | None = None
    text: str = ""


@dataclass(frozen=True)
class JobLog:
    """Where a job's log is (the run directory's copy when it exists) and, for a job that did not succeed, its
    last lines."""

    path: Path | None
    tail: str | None = None


@dataclass(frozen=True)
class RunView:
    """Everything the report renders. ``models``: every model of the run, in ranking order when there is a
    ranking; ``institutions``: the per-case metrics (empty when the run produced none)."""

    root: Path
    summary: RunSummary
    jobs: tuple[JobResult, ...]
    logs: dict[str, JobLog]
    """``job key -> log``, for every job with a recorded or local log."""
    benchmark: RecordedBenchmark
    sites_config: dict[str, RecordedSite]
    institutions: dict[str, InstitutionResults]
    method: str
    ranking: RankingResult | None
    models: tuple[str, ...] = field(default=())
    sites: tuple[str, ...] = field(default=())

    @property
    def run_id(self) -> str:
        return self.summary.run_id or self.root.name

    @property
    def benchmark_name(self) -> str:
        """The summary's benchmark name, else the recorded file's, else ``?``."""
        return self.summary.benchmark or self.benchmark.name or "?"


def seconds_per_case(job: JobResult) -> float | None:
    """An infer's duration per case; None for other jobs and infers without cases."""
    if job.kind != "infer" or not job.num_cases:
        return None
    return job.duration_s / job.num_cases


def recorded(section: BaseModel | None, name: str) -> Any:
    """A field of a recorded section when the file held it; None when the file left it to its default (the
    report shows what a run recorded, not what today's defaults would be)."""
    if section is None or name not in section.model_fields_set:
        return None
    return getattr(section, name)
