"""Run a plan's job graph (:mod:`fedsim.pipeline.graph`): every job starts as soon as its dependencies are
settled, its site has a free slot (and GPU), and the executor has room for it.

One thread (the caller's) decides; each started job runs in a worker thread of its own. Rules:

- at most ``min(executor.slots(), max_jobs, sum of the sites' slots)`` jobs run at once;
- among the ready jobs, the highest priority (longest expected path to the end) goes first, ties in plan
  order; a job the executor cannot admit yet (its CPU slot, RAM or GPU is taken) is passed over for the next
  ready job that fits, so nothing waits behind it;
- a failed data-prep step skips the rest of its site (``"<step> failed at this site"``, recorded in the ledger
  like a finished job); a failed model only costs that model: its evaluate scores the penalty rows;
- ``done`` results (a resumed run) are kept, never rerun; on ``stop_event`` the running jobs are stopped by
  their executor and every job that had not started is recorded as interrupted.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from fedsim.executors.base import Executor
from fedsim.jobs.job import Job, JobResult, JobStatus
from fedsim.pipeline.graph import DATA_PREP, GraphRun, JobGraph, Node, skipped
from fedsim.pipeline.plan import SitePlan
from fedsim.store.ledger import Ledger

EventSink = Callable[[str, Job, JobResult | None], None]

POLL_S = 0.2  # how soon a stop is noticed while jobs run (running jobs see it at once through stop_event)

__all__ = ["DATA_PREP", "EventSink", "capacity", "run_all"]


def capacity(graph: JobGraph, executor: Executor, max_jobs: int | None = None) -> int:
    """How many jobs may run at once: the executor's slots, ``max_jobs`` and the sites' slots, whichever is least."""
    limits = [sum(c.slots for c in graph.sites.values()) or 1]
    if (slots := executor.slots()) is not None:
        limits.append(slots)
    if max_jobs is not None:
        limits.append(max_jobs)
    return max(1, min(limits))


def _run_job(
    job: Job,
    penalised: bool,
    executor: Executor,
    on_event: EventSink,
    stop_event: threading.Event,
    ledger: Ledger | None,
) -> JobResult:
    if penalised:
        # The model's whole output is void: the metrics cube scores every case with the penalty row.
        for path in job.voided_inputs:
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True, exist_ok=True)
    on_event("started", job, None)
    res = record_job(ledger, job, lambda: executor.run(job, stop_event))
    on_event("finished", job, res)
    return res


def record_job(ledger: Ledger | None, job: Job, outcome: JobResult | Callable[[], JobResult]) -> JobResult:
    """The one writer of a job's ledger events: ``started``, the job's ``outcome`` (its run, or the result of a
    job settled without running: skipped, its image unbuildable), then ``finished`` with the record — except
    for an interrupted run, which stays ``running`` so that a resume runs it again. No ledger: just the outcome."""
    if ledger is not None:
        ledger.job_started(job.key, job.site, job.name)
    res = outcome() if callable(outcome) else outcome
    if ledger is not None and res.status is not JobStatus.INTERRUPTED:
        ledger.job_finished(job.key, res.to_dict())
    return res


def run_all(
    plans: list[SitePlan],
    executor: Executor,
    on_event: EventSink,
    stop_event: threading.Event,
    done: dict[str, JobResult] | None = None,
    ledger: Ledger | None = None,
    *,
    durations: Mapping[str, float] | None = None,
    max_jobs: int | None = None,
) -> dict[str, list[JobResult]]:
    """Run every site's jobs; returns each site's results in plan order. ``durations`` (job key → seconds,
    from earlier runs) order the ready jobs; ``max_jobs`` caps the jobs running at once over all sites."""
    graph = JobGraph.from_plans(plans)
    state = GraphRun(graph, done, durations)
    limit = capacity(graph, executor, max_jobs)
    running: dict[Future[JobResult], Node] = {}
    error: BaseException | None = None

    def launch(pool: ThreadPoolExecutor, node: Node) -> None:
        state.start(node)
        fut = pool.submit(_run_job, node.job, state.penalised(node), executor, on_event, stop_event, ledger)
        running[fut] = node

    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="job") as pool:
        while True:
            for fut in [f for f in running if f.done()]:
                node = running.pop(fut)
                try:
                    state.finish(node.key, fut.result())
                except BaseException as exc:  # a fedsim bug or a ledger failure: stop starting jobs, raise later
                    error = error or exc
                    state.finish(node.key, skipped(node.job, f"internal error: {exc}", JobStatus.FAILED))
            stopping = stop_event.is_set() or error is not None
            while not stopping and (doomed := state.doomed()):
                for node, reason in doomed:
                    res = record_job(ledger, node.job, skipped(node.job, reason))
                    state.finish(node.key, res)
                    on_event("finished", node.job, res)  # a skipped job is settled too: progress counts it
            if not stopping:
                ready = state.ready()
                for node in ready:
                    if len(running) >= limit:
                        break
                    if state.site_fits(node) and executor.admit(node.job):
                        launch(pool, node)
                if not running and ready:
                    # Nothing runs, so nothing will free what the executor wants: hand it the first job anyway
                    # (its run waits or fails by itself rather than the run hanging here).
                    launch(pool, ready[0])
            if not running:
                break
            wait(list(running), timeout=POLL_S, return_when=FIRST_COMPLETED)
    state.interrupt_waiting()
    if error is not None:
        raise error
    return state.by_site()
