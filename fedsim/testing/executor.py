"""A fake executor for scheduler tests: no processes, configurable durations and outcomes, a record of when every
job ran; and :func:`fake_plans`, site plans of the real shape (prepare → ... → evaluate) without cubes or data.

Durations, outcomes and GPU needs are looked up by job key (``s0/infer.a``), then job name (``infer.a``), then
kind (``infer``). A running fake job sleeps on the stop event, so a stop interrupts it at once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from fedsim.cube import CubeSpec
from fedsim.executors.base import Executor
from fedsim.jobs.job import Job, JobKind, JobLimits, JobResult, JobStatus
from fedsim.pipeline.plan import SitePlan
from fedsim.runtimes.policy import ALLOWED, ContainmentPolicy
from fedsim.spec import SiteSpec

T = TypeVar("T")


def lookup(table: Mapping[str, T], job: Job, default: T) -> T:
    """``table``'s entry for the job's key, else its name, else its kind, else ``default``."""
    for k in (job.key, job.name, job.kind.value):
        if k in table:
            return table[k]
    return default


@dataclass
class FakeRun:
    key: str
    site: str
    start: float  # time.monotonic()
    end: float | None = None
    status: JobStatus | None = None


class FakeExecutor(Executor):
    """Runs nothing: a job sleeps its duration and returns the outcome it was given.

    ``durations``/``failures`` map a key, name or kind to seconds / a status (``failures`` values may also be
    ``(status, reason)``). ``slots``: jobs at once it accepts (None: no limit). ``gpus``: GPUs of the fake
    machine, which :meth:`admit` hands out (None: as many as asked). ``refuse_admission``: keys :meth:`admit`
    always turns down (an executor that never has room for them).
    """

    name = "fake"

    def __init__(
        self,
        durations: Mapping[str, float] | None = None,
        *,
        default_s: float = 0.01,
        failures: Mapping[str, JobStatus | tuple[JobStatus, str]] | None = None,
        slots: int | None = None,
        gpus: int | None = None,
        refuse_admission: Iterable[str] = (),
    ) -> None:
        self.durations = dict(durations or {})
        self.default_s = default_s
        self.failures = dict(failures or {})
        self._slots = slots
        self.gpus = gpus
        self.refuse_admission = set(refuse_admission)
        self.runs: list[FakeRun] = []
        self.running: Counter[str] = Counter()  # site -> jobs running now
        self.max_running = 0
        self.max_running_by_site: Counter[str] = Counter()
        self.admit_refusals: Counter[str] = Counter()
        self._gpus_used = 0
        self._gpu_jobs: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- the Executor seam ---------------------------------------------------------------------------------

    def slots(self) -> int | None:
        return self._slots

    def admit(self, job: Job) -> bool:
        with self._lock:
            if job.key in self.refuse_admission:
                self.admit_refusals[job.key] += 1
                return False
            want = job.limits.gpus
            if self.gpus is not None and want:
                if self._gpus_used + want > self.gpus:
                    self.admit_refusals[job.key] += 1
                    return False
                self._gpus_used += want
                self._gpu_jobs[job.key] = want
            return True

    def run(self, job: Job, stop_event: threading.Event | None = None) -> JobResult:
        stop = stop_event or threading.Event()
        with self._lock:
            rec = FakeRun(job.key, job.site, time.monotonic())
            self.runs.append(rec)
            self.running[job.site] += 1
            self.max_running = max(self.max_running, sum(self.running.values()))
            self.max_running_by_site[job.site] = max(self.max_running_by_site[job.site], self.running[job.site])
        try:
            stopped = stop.wait(lookup(self.durations, job, self.default_s))
            status, reason = JobStatus.SUCCEEDED, ""
            if stopped:
                status, reason = JobStatus.INTERRUPTED, "stopped by the user"
            else:
                failure = lookup(self.failures, job, None)
                if isinstance(failure, tuple):
                    status, reason = failure
                elif failure is not None:
                    status, reason = failure, f"{failure.value} (fake)"
        finally:
            with self._lock:
                rec.end = time.monotonic()
                self.running[job.site] -= 1
                self._gpus_used -= self._gpu_jobs.pop(job.key, 0)
        rec.status = status
        return JobResult(
            job.site, job.name, job.kind.value, job.model, status, reason=reason, duration_s=rec.end - rec.start
        )

    # -- what the tests read ---------------------------------------------------------------------------------

    @property
    def started(self) -> list[str]:
        """Job keys in the order they started."""
        return [r.key for r in sorted(self.runs, key=lambda r: r.start)]

    def interval(self, key: str) -> tuple[float, float]:
        """(start, end) of the job's last run."""
        rec = [r for r in self.runs if r.key == key][-1]
        assert rec.end is not None, f"{key} is still running"
        return rec.start, rec.end


_CUBE = CubeSpec(name="fake", tasks={"fake": {}})


def fake_plans(
    root: Path,
    sites: Mapping[str, Iterable[str]] | Iterable[str],
    models: Iterable[str] = ("a", "b"),
    *,
    slots: int | Mapping[str, int] = 1,
    gpus: int | Mapping[str, int] = 0,
    model_gpus: int = 0,
) -> list[SitePlan]:
    """One :class:`SitePlan` per site, shaped like the planner's (prepare, sanity_check, statistics, every
    infer, every evaluate) and pointing under ``root``. ``sites``: names, or name → that site's models.
    ``slots``/``gpus``: the sites' ``hardware.slots``/``hardware.gpus`` (one value, or per site); infers ask for
    ``min(model_gpus, site gpus)`` GPUs, like the planner."""
    site_models = dict(sites) if isinstance(sites, Mapping) else {s: tuple(models) for s in sites}
    plans = []
    for site, names in site_models.items():
        s_slots = slots[site] if isinstance(slots, Mapping) else slots
        s_gpus = gpus[site] if isinstance(gpus, Mapping) else gpus
        d = Path(root) / site
        spec = SiteSpec.model_validate(
            {"name": site, "data": {"path": str(d / "raw")}, "hardware": {"slots": s_slots, "gpus": s_gpus}}
        )

        def job(name: str, kind: JobKind, paths: dict[str, Path] | None = None, **kw: object) -> Job:
            base = Job(
                site=site,  # noqa: B023 - used at once
                name=name,
                kind=kind,
                cube=_CUBE,
                task=kind.value,
                paths=tuple((paths or {}).items()),
                runtime="local",
                limits=JobLimits(timeout_s=60),
                log_path=d / "logs" / f"{name}.log",  # noqa: B023
                workdir=d / "work" / name,  # noqa: B023
            )
            return replace(base, **kw)  # type: ignore[arg-type]

        jobs = [job(k.value, k) for k in (JobKind.PREPARE, JobKind.SANITY_CHECK, JobKind.STATISTICS)]
        limits = JobLimits(timeout_per_case_s=60, gpus=min(model_gpus, s_gpus) if s_gpus else 0)
        held = ContainmentPolicy(untrusted=True, unsandboxed=ALLOWED)  # a submission; the fake runs nothing
        jobs += [job(f"infer.{m}", JobKind.INFER, model=m, policy=held, limits=limits) for m in names]
        jobs += [
            job(
                f"evaluate.{m}",
                JobKind.EVALUATE,
                {"predictions": d / "predictions" / m},
                model=m,
                voided_inputs=(d / "predictions" / m,),
            )
            for m in names
        ]
        plans.append(SitePlan(spec, d / "raw", tuple(jobs)))
    return plans


__all__ = ["FakeExecutor", "FakeRun", "fake_plans", "lookup"]
