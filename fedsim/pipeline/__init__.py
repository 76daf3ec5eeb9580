"""Pipeline: plan jobs per site (pure), order them, and run a benchmark end to end."""

from fedsim.pipeline.job import Job, JobKind, JobLimits, JobResult, JobStatus
from fedsim.pipeline.plan import Cubes, SitePlan, plan

__all__ = ["Cubes", "Job", "JobKind", "JobLimits", "JobResult", "JobStatus", "SitePlan", "plan"]
