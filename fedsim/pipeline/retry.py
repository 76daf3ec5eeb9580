"""``--resume --retry-failed``: which finished jobs to run again.

A job whose ledger record did not succeed (failed, timeout, a limit, skipped) reruns, and so does everything
that consumed its outputs: a data-prep step takes every later data-prep step and all of the site's model
jobs with it (a failed ``prepare`` reruns the whole site), a model's ``infer`` takes that model's
``evaluate`` (its penalty scores came from the failed inference). Succeeded jobs nothing failed upstream of
are kept. Pure: plans and records in, job keys out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fedsim.jobs.job import FAILED_STATUSES, JobResult, JobStatus
from fedsim.pipeline.graph import JobGraph
from fedsim.pipeline.plan import SitePlan

RETRY_STATUSES = FAILED_STATUSES | {JobStatus.SKIPPED, JobStatus.INTERRUPTED}


def retry_keys(plans: Iterable[SitePlan], done: Mapping[str, JobResult]) -> set[str]:
    """Keys of the finished jobs ``--retry-failed`` runs again: the unsuccessful ones and their dependants (the
    transitive closure over the job graph's edges, :class:`~fedsim.pipeline.graph.JobGraph`)."""
    graph = JobGraph.from_plans(plans)
    rerun: set[str] = set()
    stack = [k for k in graph.nodes if k in done and done[k].status in RETRY_STATUSES]
    while stack:
        key = stack.pop()
        if key not in rerun:
            rerun.add(key)
            stack.extend(graph.dependants[key])
    return {k for k in rerun if k in done}  # a job without a record runs anyway


__all__ = ["RETRY_STATUSES", "retry_keys"]
