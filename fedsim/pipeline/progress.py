"""Where a run stands, for the live view: counts over the whole plan and an ETA from known durations.

The pipeline hands its plan over once, before anything runs (:class:`RunPlan`: every job, those done in an earlier
segment of a resumed run, the durations earlier runs' ledgers recorded, how many jobs run at once); the job events
(``started``/``finished``) then move jobs from waiting to running to finished. Nothing here draws or locks.

The ETA is the expected work left divided by the jobs that run at once (never less than the longest job left):
a job's expected duration is its own from earlier runs, else the mean of the same job at other sites (earlier
runs and this one), else the mean of its kind (a new model), else unknown. Running jobs count what is left of
theirs. While no job left has an estimate the ETA is unknown; while only some have one it is a lower bound.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fedsim.jobs.job import FAILED_STATUSES, Job, JobResult, JobStatus


@dataclass(frozen=True)
class RunPlan:
    """What a run will do, known before its first job starts."""

    jobs: tuple[Job, ...]  # every job of the plan, in plan order
    done: frozenset[str] = frozenset()  # keys finished in an earlier segment (a resume) and kept
    expected: Mapping[str, float] = field(default_factory=dict)  # key → seconds, from earlier runs' ledgers
    concurrency: int = 1  # jobs running at once at most


PlanSink = Callable[[RunPlan], None]


@dataclass(frozen=True)
class Counts:
    total: int  # jobs this run will settle (the plan less the ones done earlier)
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: int = 0
    running: int = 0
    waiting: int = 0
    earlier: int = 0  # done in an earlier segment, not part of ``total``

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.skipped + self.interrupted


def duration_text(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass(frozen=True)
class Eta:
    seconds: float | None  # None: nothing left has an estimate
    partial: bool = False  # some jobs left have no estimate: ``seconds`` is a lower bound

    def __str__(self) -> str:
        if self.seconds is None:
            return "unknown"
        return (">" if self.partial else "~") + duration_text(self.seconds)


def _kind(name: str) -> str:
    """A job name's kind: ``infer.baseline`` → ``infer``."""
    return name.partition(".")[0]


class ProgressModel:
    """Counts and ETA of one run from its :class:`RunPlan` and job events; one thread at a time."""

    def __init__(self, plan: RunPlan | None = None) -> None:
        self.plan: RunPlan | None = None
        self._jobs: dict[str, Job] = {}  # the jobs this run settles, in plan order
        self._running: dict[str, tuple[Job, float]] = {}  # key → (job, started at), in start order
        self._finished: dict[str, JobResult] = {}  # key → result, in finishing order
        self._estimate: Callable[[Job], float | None] | None = None  # from the plan and _finished; None: stale
        if plan is not None:
            self.set_plan(plan)

    def set_plan(self, plan: RunPlan) -> None:
        self.plan = plan
        self._estimate = None
        for job in plan.jobs:
            if job.key not in plan.done:
                self._jobs.setdefault(job.key, job)

    # -- events ------------------------------------------------------------------------------------------

    def started(self, job: Job, now: float) -> None:
        self._jobs.setdefault(job.key, job)
        self._finished.pop(job.key, None)
        self._estimate = None
        self._running[job.key] = (job, now)

    def finished(self, job: Job, result: JobResult) -> None:
        self._jobs.setdefault(job.key, job)
        self._running.pop(job.key, None)
        self._finished.pop(job.key, None)
        self._finished[job.key] = result
        self._estimate = None

    # -- queries -----------------------------------------------------------------------------------------

    def counts(self) -> Counts:
        by: dict[str, int] = {"succeeded": 0, "failed": 0, "skipped": 0, "interrupted": 0}
        for res in self._finished.values():
            if res.status is JobStatus.SUCCEEDED:
                by["succeeded"] += 1
            elif res.status in FAILED_STATUSES:
                by["failed"] += 1
            elif res.status is JobStatus.SKIPPED:
                by["skipped"] += 1
            else:
                by["interrupted"] += 1
        total = len(self._jobs)
        running = len(self._running)
        earlier = len(self.plan.done) if self.plan is not None else 0
        waiting = max(0, total - running - sum(by.values()))
        return Counts(total=total, running=running, waiting=waiting, earlier=earlier, **by)

    def running(self, now: float) -> list[tuple[Job, float]]:
        """The running jobs with their elapsed seconds, longest running first."""
        return [(job, now - at) for job, at in self._running.values()]

    def recent(self) -> list[tuple[Job, JobResult]]:
        """Finished jobs, the last to finish first."""
        return [(self._jobs[k], r) for k, r in reversed(self._finished.items())]

    def _estimator(self) -> Callable[[Job], float | None]:
        """The duration estimator, built again only after the plan or the finished jobs changed."""
        if self._estimate is None:
            self._estimate = self._build_estimator()
        return self._estimate

    def _build_estimator(self) -> Callable[[Job], float | None]:
        known = dict(self.plan.expected) if self.plan is not None else {}
        by_name: dict[str, list[float]] = {}
        by_kind: dict[str, list[float]] = {}

        def note(key: str, secs: float) -> None:
            name = key.partition("/")[2]
            by_name.setdefault(name, []).append(secs)
            by_kind.setdefault(_kind(name), []).append(secs)

        for key, secs in known.items():
            note(key, secs)
        for key, res in self._finished.items():
            if res.status not in (JobStatus.SKIPPED, JobStatus.INTERRUPTED) and res.duration_s > 0:
                note(key, res.duration_s)

        def mean(values: list[float]) -> float:
            return sum(values) / len(values)

        def expected(job: Job) -> float | None:
            if job.key in known:
                return known[job.key]
            if job.name in by_name:
                return mean(by_name[job.name])
            kind = job.kind.value
            return mean(by_kind[kind]) if kind in by_kind else None

        return expected

    def expected(self, job: Job) -> float | None:
        """``job``'s expected duration in seconds; None when nothing is known of it yet."""
        return self._estimator()(job)

    def eta(self, now: float) -> Eta:
        """The time until every job of the plan has finished; unknown without a plan."""
        if self.plan is None:
            return Eta(None)
        expected = self._estimator()
        left: list[float] = []
        unknown = 0
        for job, at in self._running.values():
            e = expected(job)
            if e is None:
                unknown += 1
            else:
                left.append(max(0.0, e - (now - at)))
        for key, job in self._jobs.items():
            if key in self._running or key in self._finished:
                continue
            e = expected(job)
            if e is None:
                unknown += 1
            else:
                left.append(e)
        if not left:
            return Eta(None if unknown else 0.0)
        seconds = max(sum(left) / max(1, self.plan.concurrency), max(left))
        return Eta(seconds, partial=unknown > 0)


__all__ = ["Counts", "Eta", "PlanSink", "ProgressModel", "RunPlan", "duration_text"]
