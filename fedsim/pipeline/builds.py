"""The build phase: every image the planned jobs need is built, pulled or converted before the first job starts.

Before the scheduler starts, each distinct (runtime, cube, base image) of the jobs still to run whose runtime
builds images (docker; singularity: the SIF conversion) is prepared once through the executor, one at a time,
with every step of the build reported as it streams. Its time is the run's, never a job's: ``execute_job``
prepares again (a cached no-op) and starts its clock after that. A build that fails fails every job of that cube
with the build's error as the reason, as a failed prepare inside the job would; the run goes on with the rest.
Executors that prepare on the job's own node (Ray) skip the phase: their jobs prepare as before.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from fedsim.errors import FedsimError
from fedsim.executors.base import Executor
from fedsim.jobs.job import Job, JobResult, JobStatus
from fedsim.pipeline.plan import SitePlan

BUILDING_RUNTIMES = frozenset({"docker", "singularity", "local"})  # local: a cube's Python environment

# a step worth showing: docker's classic builder ("Step 3/7 : RUN ..."), the runtimes' own pull/convert lines,
# and the steps of a Python environment's build (venv, then pip's or uv's resolution and install)
STEP = re.compile(
    r"^(Step \d+/\d+ : |pulling |converting |creating |Collecting |Installing collected |Successfully installed "
    r"|Resolved |Installed )"
)


@dataclass
class BuildRecord:
    """One image made ready in the build phase, as ``summary.json``'s ``builds`` lists it."""

    image: str  # the image tag (or SIF) made ready
    cube: str
    runtime: str  # docker or singularity
    action: str  # built, pulled, converted, present (nothing to do), failed, interrupted
    seconds: float
    jobs: int  # the planned jobs that run on it
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


@dataclass(frozen=True)
class BuildEvent:
    """``start`` (``image``: the cube's image), ``step`` (``image``: the image this step builds, which may be the
    cube's base image; ``line``: the step) or ``finish`` (``record``)."""

    kind: str
    image: str
    cube: str
    line: str = ""
    record: BuildRecord | None = None


BuildSink = Callable[[BuildEvent], None]


class BuildCancelled(Exception):
    """The user stopped the run during a build (raised from the progress callback: the build stream closes)."""


def _groups(plans: Iterable[SitePlan], done: Mapping[str, Any]) -> dict[tuple[Any, ...], list[Job]]:
    """The jobs to run, grouped by what they need prepared: (runtime instance, cube, image, base image)."""
    groups: dict[tuple[Any, ...], list[Job]] = {}
    for p in plans:
        for job in p.jobs:
            if job.key in done:
                continue
            policy = job.containment()
            if policy.refusal:
                continue  # no runtime may run it: the job itself reports why
            if policy.runtime not in BUILDING_RUNTIMES:
                continue
            image = job.cube.docker.image if job.cube.docker is not None else None
            key = (policy.instance, str(job.cube.root), job.cube.name, image, job.base_image)
            groups.setdefault(key, []).append(job)
    return groups


def build_failed(job: Job, runtime: str, reason: str) -> JobResult:
    """The record of a job whose image could not be prepared: failed, with the build's error as the reason."""
    return JobResult(
        job.site, job.name, job.kind.value, job.model, JobStatus.FAILED, reason=reason, runtime=runtime, duration_s=0.0
    )


def build_images(
    plans: Iterable[SitePlan],
    executor: Executor,
    *,
    done: Mapping[str, Any] | None = None,
    stop_event: threading.Event | None = None,
    on_build: BuildSink | None = None,
) -> tuple[list[BuildRecord], list[tuple[Job, JobResult]]]:
    """Prepare every image the jobs not in ``done`` need, in plan order; returns a record per image and the
    jobs that cannot run because their image failed (each with its failed result). Stops at ``stop_event``."""
    if not executor.builds_ahead:
        return [], []
    emit = on_build or (lambda _e: None)
    stop = stop_event or threading.Event()
    records: list[BuildRecord] = []
    failed: list[tuple[Job, JobResult]] = []
    for (instance, _root, cube, image, _base), jobs in _groups(plans, done or {}).items():
        if stop.is_set():
            break
        runtime = {"singularity": "singularity", "local": "local", "sandbox": "local"}.get(instance, "docker")
        shown = (image or cube) if runtime != "local" else f"python env of {cube}"
        # a local cube usually needs nothing (fedsim's Python satisfies it): it is announced once it builds
        announced = [runtime != "local"]

        def progress(
            tag: str, line: str, cube: str = cube, shown: str = shown, announced: list[bool] = announced
        ) -> None:
            if stop.is_set():
                raise BuildCancelled
            if not announced[0]:
                announced[0] = True
                emit(BuildEvent("start", shown, cube))
            if STEP.match(line):
                emit(BuildEvent("step", tag, cube, line=line))

        if announced[0]:
            emit(BuildEvent("start", shown, cube))
        started = time.monotonic()
        error: str | None = None
        prepared = None
        try:
            prepared = executor.prepare(jobs[0], progress)
            action = prepared.action if prepared is not None else "present"
            shown = prepared.image if prepared is not None else shown
        except BuildCancelled:
            action = "interrupted"
        except FedsimError as exc:
            action, error = "failed", str(exc)
        except Exception as exc:  # a fedsim bug must not take the run down: the cube's jobs carry it
            action, error = "failed", f"internal error: {type(exc).__name__}: {exc}"
        if runtime == "local" and prepared is None and error is None and action != "interrupted":
            continue  # fedsim's own Python runs the cube: nothing was built, nothing to list
        if not announced[0]:
            emit(BuildEvent("start", shown, cube))
        record = BuildRecord(shown, cube, runtime, action, time.monotonic() - started, len(jobs), error)
        records.append(record)
        if error is not None:
            failed += [(job, build_failed(job, runtime, error)) for job in jobs]
        emit(BuildEvent("finish", shown, cube, record=record))
        if action == "interrupted":
            break
    return records, failed


def build_summary(records: list[BuildRecord]) -> dict[str, Any]:
    """``summary.json``'s ``builds`` and ``build_s`` (the build phase's seconds, in no job's duration)."""
    return {
        "builds": [r.to_dict() for r in records],
        "build_s": round(sum(r.seconds for r in records), 3),
    }


__all__ = [
    "BUILDING_RUNTIMES",
    "STEP",
    "BuildCancelled",
    "BuildEvent",
    "BuildRecord",
    "BuildSink",
    "build_failed",
    "build_images",
    "build_summary",
]
