"""What a run tells whoever watches it: one protocol for the plan, the build phase, every job and messages.

The console's progress display, the live view of ``--serve`` and any later web view are observers of the same
four events; :func:`fedsim.pipeline.run.run_benchmark` takes one observer and calls it from its own and the
scheduler's threads, so an observer guards its own state. :class:`Observer` answers every event by doing nothing
(subclass it and override what you watch); :class:`Callbacks` wraps plain functions; :class:`Fanout` sends each
event to several observers in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fedsim.jobs.job import Job, JobResult
from fedsim.pipeline.builds import BuildEvent
from fedsim.pipeline.progress import RunPlan


class RunObserver(Protocol):
    """The events of one run, in the order they happen: ``plan`` once, ``build`` for each image step, ``job``
    (``"started"`` then ``"finished"`` with its result; a skipped job only ``"finished"``), ``message`` for a line
    meant for the person running it (resume notes, data synthesis)."""

    def plan(self, plan: RunPlan) -> None: ...

    def build(self, event: BuildEvent) -> None: ...

    def job(self, kind: str, job: Job, result: JobResult | None) -> None: ...

    def message(self, line: str) -> None: ...


class Observer:
    """An observer that ignores every event: the base for one that watches only some."""

    def plan(self, plan: RunPlan) -> None:
        return None

    def build(self, event: BuildEvent) -> None:
        return None

    def job(self, kind: str, job: Job, result: JobResult | None) -> None:
        return None

    def message(self, line: str) -> None:
        return None


@dataclass(frozen=True)
class Callbacks(Observer):
    """Plain functions as an observer (scripts and tests); a missing one ignores its event."""

    on_plan: Callable[[RunPlan], None] | None = None
    on_build: Callable[[BuildEvent], None] | None = None
    on_job: Callable[[str, Job, JobResult | None], None] | None = None
    on_message: Callable[[str], None] | None = None

    def plan(self, plan: RunPlan) -> None:
        if self.on_plan is not None:
            self.on_plan(plan)

    def build(self, event: BuildEvent) -> None:
        if self.on_build is not None:
            self.on_build(event)

    def job(self, kind: str, job: Job, result: JobResult | None) -> None:
        if self.on_job is not None:
            self.on_job(kind, job, result)

    def message(self, line: str) -> None:
        if self.on_message is not None:
            self.on_message(line)


class Fanout(Observer):
    """Each event to every observer, in the order given (the console first, then the live view)."""

    def __init__(self, *observers: RunObserver) -> None:
        self.observers = observers

    def plan(self, plan: RunPlan) -> None:
        for o in self.observers:
            o.plan(plan)

    def build(self, event: BuildEvent) -> None:
        for o in self.observers:
            o.build(event)

    def job(self, kind: str, job: Job, result: JobResult | None) -> None:
        for o in self.observers:
            o.job(kind, job, result)

    def message(self, line: str) -> None:
        for o in self.observers:
            o.message(line)


__all__ = ["Callbacks", "Fanout", "Observer", "RunObserver"]
