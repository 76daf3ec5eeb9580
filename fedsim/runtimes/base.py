"""The runtime seam: start a cube task as a process tree, expose its host PIDs, stop it.

A runtime knows nothing about benchmarks, limits or sites. The guard watches the handle it returns;
the supervisor decides when to call :meth:`ProcessHandle.terminate`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedsim.cube import CubeSpec, ImageKind, Invocation

BuildProgress = Callable[[str, str], None]
"""``(image, line)``: one line of output of an image build, pull or conversion in progress."""

# What :meth:`Runtime.prepare` did, most work first (a SIF converted from a freshly built image says "built").
PREPARE_ACTIONS = ("built", "pulled", "converted", "loaded", "present")


@dataclass(frozen=True)
class Prepared:
    """What :meth:`Runtime.prepare` made ready: ``image`` (a tag, or a SIF's docker image) and ``action``, one of
    :data:`PREPARE_ACTIONS` (``present``: it was there already)."""

    image: str
    action: str


@dataclass(frozen=True)
class Capabilities:
    """What a runtime can enforce by itself; the guard fills the gaps (e.g. RAM sampling for local)."""

    isolates_filesystem: bool = False
    enforces_memory_limit: bool = False
    isolates_network: bool = False
    supports_gpus: bool = True
    containment: str = "none"  # how it holds a task, as the job record says: docker, singularity, bwrap or none
    runs_images: bool = False  # it runs the cube's image (so the image is prepared, inspected, size-checked)
    singularity_fidelity: bool = False  # it can hold a submission as the sites' singularity would (docker)
    mounts_at_paths: bool = False  # it can mount a volume at the path a cube declares (``mount_paths`` convention)
    image_kinds: frozenset[ImageKind] = frozenset({ImageKind.REGISTRY})
    """Where a cube's root file system may come from on it: a registry image (local runtimes: its Dockerfile's
    build context), a ``docker save`` archive, a SIF."""


class ProcessHandle(abc.ABC):
    """A running task: its PIDs on the host, a bounded wait, and a terminate-then-kill."""

    started_at: float

    @abc.abstractmethod
    def host_pids(self) -> set[int]:
        """PIDs (host namespace) of every process that belongs to the task right now."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """Exit status, or None if still running after ``timeout`` seconds."""

    @abc.abstractmethod
    def terminate(self, grace_s: float = 2.0) -> None:
        """Stop the whole tree: SIGTERM, ``grace_s`` seconds, then SIGKILL; below one second of grace SIGKILL at
        once (:func:`fedsim.runtimes.process.kills_at_once`). Idempotent."""

    def root_pid(self) -> int | None:
        """Host PID of the task's top process (container init, process-group leader), if known."""
        return None

    def oom_killed(self) -> bool:
        """Whether the runtime's own memory limit killed the task (docker's OOMKilled)."""
        return False

    def cleanup(self) -> None:  # noqa: B027 - optional hook
        """Release runtime resources (remove a container); called once after the task ended."""


class Runtime(abc.ABC):
    """One adapter per platform behind this base; see ``local``, ``docker`` and ``singularity``."""

    name: str = "abstract"
    capabilities: Capabilities = Capabilities()

    def prepare(
        self, cube: CubeSpec, base_image: str | None = None, *, progress: BuildProgress | None = None
    ) -> Prepared | None:
        """Make the cube runnable (build/pull an image); idempotent and never charged to a job's timeout.
        ``progress`` gets each line of a build in progress; returns what was made ready and how (None: nothing
        to prepare on this runtime)."""
        return None

    def provenance(self, cube: CubeSpec, base_image: str | None = None) -> dict[str, str] | None:
        """What the job record says of the image a prepared cube runs (reference, image id, registry digest, the
        file's sha256); None where the runtime runs no image."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the run made here (image tags it loaded); called once when the run ends."""

    def containment(self, inv: Invocation) -> str:
        """How the task is held, as the job record states it: docker, singularity, bwrap or none."""
        return self.name

    def sandbox_binary(self) -> str | None:
        """The sandbox program that holds tasks, as the job record states it (``/usr/bin/bwrap (system)``), or
        ``None`` where the runtime's own engine does."""
        return None

    def failure_hint(self, inv: Invocation, log_text: str) -> str | None:
        """One line naming why a failed task failed on this runtime in particular (a path or module only the
        image has), from the tail of its log; None when the runtime knows nothing to add."""
        return None

    @abc.abstractmethod
    def argv(self, inv: Invocation) -> list[str]:
        """The exact command line; pure, so it is unit-tested without starting anything."""

    @abc.abstractmethod
    def launch(self, inv: Invocation, log_path: Path, workdir: Path) -> ProcessHandle:
        """Start the task with stdout/stderr streaming into ``log_path`` while it runs."""
