"""The default executor: jobs run in this process's threads, each supervising its own process tree."""

from __future__ import annotations

import os
import threading

from fedsim.executors.base import Executor
from fedsim.pipeline.execute import execute_job
from fedsim.pipeline.job import Job, JobResult
from fedsim.runtimes.select import RuntimePool


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, max_sites: int | None = None) -> None:
        self.max_sites = max_sites or os.cpu_count() or 1
        self.runtimes = RuntimePool()

    def run(self, job: Job, stop_event: threading.Event | None = None) -> JobResult:
        return execute_job(job, self.runtimes, stop_event)

    def lanes(self, requested: int) -> int:
        return max(1, min(requested, self.max_sites))
