"""The executor seam: *where* a job runs. The pipeline never knows which executor it has.

Every executor runs the same :func:`fedsim.jobs.execute.execute_job`; the local one in this process,
a Ray one as a remote task pinned to the site's node.
"""

from __future__ import annotations

import abc
import threading
from types import TracebackType

from fedsim.jobs.job import Job, JobResult
from fedsim.runtimes.base import BuildProgress, Prepared
from fedsim.spec import SiteSpec


class Executor(abc.ABC):
    name = "abstract"
    # whether :meth:`prepare` builds images where the jobs will run, so that the pipeline builds them all before
    # the first job starts; False where each node prepares inside its jobs (Ray)
    builds_ahead = False

    @abc.abstractmethod
    def run(self, job: Job, stop_event: threading.Event | None = None) -> JobResult:
        """Run one job to its end (blocking) and return its record; job failures are records, not raises."""

    def prepare(self, job: Job, progress: BuildProgress | None = None) -> Prepared | None:
        """Build, pull or convert what ``job``'s cube needs on the runtime the job will get, ahead of the jobs
        (the pipeline's build phase, when :attr:`builds_ahead`); raises what the runtime raises. None: nothing
        to prepare."""
        return None

    def check_sites(self, sites: list[SiteSpec]) -> None:  # noqa: B027 - optional hook
        """Refuse, before anything runs, site profiles the executor's machines cannot honour."""

    def slots(self) -> int | None:
        """How many jobs it runs at once, over all sites; None when it sets no limit of its own."""
        return None

    def admit(self, job: Job) -> bool:
        """Reserve now, without waiting, what ``job`` needs (CPU slot, RAM, GPUs) for the :meth:`run` that the
        scheduler calls next; False when it does not fit at the moment. The scheduler then starts other ready jobs
        that fit instead of queueing behind this one. Executors that queue by themselves admit everything."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the executor holds (clients, clusters)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
