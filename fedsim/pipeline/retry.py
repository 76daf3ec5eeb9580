"""``--resume --retry-failed``: which finished jobs to run again.

A job whose ledger record did not succeed (failed, timeout, a limit, skipped) reruns, and so does everything
that consumed its outputs: a data-prep step takes every later data-prep step and all of the site's model
jobs with it (a failed ``prepare`` reruns the whole site), a model's ``infer`` takes that model's
``evaluate`` (its penalty scores came from the failed inference). Succeeded jobs nothing failed upstream of
are kept. Pure: plans and records in, job keys out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from fedsim.jobs.job import Job, JobKind, JobResult, JobStatus
from fedsim.pipeline.plan import SitePlan

DATA_PREP_KINDS = frozenset({JobKind.PREPARE, JobKind.SANITY_CHECK, JobKind.STATISTICS})
MODEL_KINDS = frozenset({JobKind.INFER, JobKind.EVALUATE})
RETRY_STATUSES = frozenset(
    {
        JobStatus.FAILED,
        JobStatus.TIMEOUT,
        JobStatus.RAM_EXCEEDED,
        JobStatus.GPU_MEMORY_EXCEEDED,
        JobStatus.OUTPUT_EXCEEDED,
        JobStatus.SKIPPED,
        JobStatus.INTERRUPTED,
    }
)


def dependants(jobs: Sequence[Job], index: int) -> set[str]:
    """Keys of the jobs of one site (in plan order) that consume what ``jobs[index]`` produced."""
    job = jobs[index]
    if job.kind in DATA_PREP_KINDS:
        later_prep = {j.key for j in jobs[index + 1 :] if j.kind in DATA_PREP_KINDS}
        return later_prep | {j.key for j in jobs if j.kind in MODEL_KINDS}
    if job.kind is JobKind.INFER:
        return {j.key for j in jobs if j.kind is JobKind.EVALUATE and j.model == job.model}
    return set()


def retry_keys(plans: Iterable[SitePlan], done: Mapping[str, JobResult]) -> set[str]:
    """Keys of the finished jobs ``--retry-failed`` runs again: the unsuccessful ones and their dependants."""
    rerun: set[str] = set()
    for site_plan in plans:
        jobs = list(site_plan.jobs)
        for i, job in enumerate(jobs):
            record = done.get(job.key)
            if record is not None and record.status in RETRY_STATUSES:
                rerun.add(job.key)
                rerun |= dependants(jobs, i)
    return {k for k in rerun if k in done}  # a job without a record runs anyway


__all__ = ["RETRY_STATUSES", "dependants", "retry_keys"]
