"""Order jobs: sites run concurrently (one lane each, up to the executor's limit); a site's jobs keep
their order. A failed data-prep step skips the rest of its site; a failed model only costs that model."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fedsim.executors.base import Executor
from fedsim.pipeline.job import Job, JobKind, JobResult, JobStatus
from fedsim.pipeline.plan import SitePlan
from fedsim.store.ledger import Ledger

EventSink = Callable[[str, Job, JobResult | None], None]

DATA_PREP = {JobKind.PREPARE, JobKind.SANITY_CHECK, JobKind.STATISTICS}


def _skipped(job: Job, reason: str, status: JobStatus = JobStatus.SKIPPED) -> JobResult:
    return JobResult(job.site, job.name, job.kind.value, job.model, status, reason=reason)


def run_site(
    site_plan: SitePlan,
    executor: Executor,
    on_event: EventSink,
    stop_event: threading.Event,
    done: dict[str, JobResult] | None = None,
    ledger: Ledger | None = None,
) -> list[JobResult]:
    """Run one site's jobs in order. ``done`` holds results of a previous attempt that are never rerun;
    the ledger learns of each start and, once its outputs are durable, of each finish."""
    done = done or {}
    results: list[JobResult] = []
    prep_failed: str | None = None
    failed_models: set[str] = set()
    for job in site_plan.jobs:
        if job.key in done:
            res = done[job.key]
        elif stop_event.is_set():
            res = _skipped(job, "run interrupted before this job started", JobStatus.INTERRUPTED)
        elif prep_failed and job.kind in DATA_PREP | {JobKind.INFER, JobKind.EVALUATE}:
            res = _skipped(job, f"{prep_failed} failed at this site")
            if ledger is not None:
                ledger.job_started(job.key, job.site, job.name)
                ledger.job_finished(job.key, res.to_dict())
        else:
            if job.kind is JobKind.EVALUATE and job.model in failed_models:
                # The model's whole output is void: the metrics cube scores every case with the penalty row.
                pred = dict(job.paths)["predictions"]
                shutil.rmtree(pred, ignore_errors=True)
                pred.mkdir(parents=True, exist_ok=True)
            on_event("started", job, None)
            if ledger is not None:
                ledger.job_started(job.key, job.site, job.name)
            res = executor.run(job, stop_event)
            if ledger is not None and res.status is not JobStatus.INTERRUPTED:
                ledger.job_finished(job.key, res.to_dict())
            on_event("finished", job, res)
        results.append(res)
        if not res.status.finished_ok:
            if job.kind in DATA_PREP and prep_failed is None:
                prep_failed = job.name
            elif job.kind is JobKind.INFER and job.model:
                failed_models.add(job.model)
    return results


def run_all(
    plans: list[SitePlan],
    executor: Executor,
    on_event: EventSink,
    stop_event: threading.Event,
    done: dict[str, JobResult] | None = None,
    ledger: Ledger | None = None,
) -> dict[str, list[JobResult]]:
    lanes = executor.lanes(len(plans))
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="site") as pool:
        futures = {p.site.name: pool.submit(run_site, p, executor, on_event, stop_event, done, ledger) for p in plans}
        return {name: f.result() for name, f in futures.items()}
