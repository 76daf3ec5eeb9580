"""check-submission on the local runtime: the build phase an image would have had, and what it cannot copy.

The cube's Python environment (:mod:`fedsim.runtimes.pyenv`) is built before the run, with its own phase
line, so its minutes are never the run's; a build that fails is the run check's one-line reason. Paths the
Dockerfile makes only by ``RUN`` do not exist without the image: the report notes them up front.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from fedsim.cube import CubeSpec
from fedsim.cube.dockerfile import run_paths
from fedsim.errors import FedsimError
from fedsim.executors.base import Executor
from fedsim.jobs.job import Job
from fedsim.runtimes import pyenv
from fedsim.runtimes.entrypoint import cube_image


def build_environment(job: Job, executor: Executor, phase: Callable[[str], None]) -> None:
    """Build the job's cube environment ahead of the run, when its requirements need one."""
    req = pyenv.cube_requirements(job.cube)
    if req is None or not pyenv.unsatisfied(req.lines):
        return  # fedsim's Python satisfies them: nothing to build
    phase(f"building its Python environment from {req.shown}")
    with contextlib.suppress(FedsimError):  # the run repeats a failure as the job's reason (the runtime keeps it)
        executor.prepare(job)


def run_made_note(cube: CubeSpec) -> str | None:
    """A note naming the paths the cube's Dockerfile makes by RUN (absent on the local runtime)."""
    image = cube_image(cube)
    made = run_paths(image.stage, image.layout) if image is not None else {}
    if not made:
        return None
    shown = ", ".join(f"{p} (line {line})" for p, line in list(made.items())[:3])
    more = f" and {len(made) - 3} more" if len(made) > 3 else ""
    return (
        f"{image.shown if image else 'the Dockerfile'} makes {shown}{more} by RUN: the local runtime cannot "
        "reproduce them, so a cube that opens them fails here (check with --runtime docker)"
    )


__all__ = ["build_environment", "run_made_note"]
