"""Choose a runtime for a site and a cube: ``auto`` means docker when an engine answers and the cube
has a docker section, else local. Unavailable choices fail with :class:`RuntimeUnavailable`.

The policy for untrusted code (:func:`choose`): a submission that lands on the local runtime runs in the
bubblewrap sandbox; where the sandbox cannot run, it is refused (:class:`Unsandboxed`, one line naming the two
fixes) unless the user allowed unsandboxed runs (``--allow-unsandboxed``; ``check-submission`` of one's own
cube). Trusted cubes (data prep, metrics) run plainly unless the benchmark asks for the sandbox.
"""

from __future__ import annotations

import functools
import importlib
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fedsim.cube import CubeSpec
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes.base import Runtime
from fedsim.runtimes.local import LocalRuntime

# name -> "module:Class"; container runtimes import their SDKs only when chosen.
_REGISTRY: dict[str, str] = {
    "local": "fedsim.runtimes.local:LocalRuntime",
    "sandbox": "fedsim.runtimes.local:SandboxedLocalRuntime",  # the local runtime in bwrap; chosen by choose()
    "docker": "fedsim.runtimes.docker:DockerRuntime",
    "singularity": "fedsim.runtimes.singularity:SingularityRuntime",
}


@functools.cache
def docker_available() -> bool:
    """True when a Docker engine answers a ping within two seconds."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        client.close()
        return True
    except Exception:  # any failure means "no engine": missing socket, permission, old API
        return False


def _load(name: str) -> Callable[[], Runtime]:
    module, _, cls = _REGISTRY[name].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]
    except ModuleNotFoundError as exc:
        raise RuntimeUnavailable(f"the {name} runtime is not available in this installation: {exc}") from exc


class RuntimePool:
    """One runtime instance per name for a whole run (they cache images and clients)."""

    def __init__(self) -> None:
        self._instances: dict[str, Runtime] = {}

    def register(self, name: str, runtime: Runtime) -> None:
        """Use ``runtime`` for ``name`` (a test's :class:`fedsim.testing.FakeRuntime`, a preconfigured one)."""
        self._instances[name] = runtime

    def get(self, name: str) -> Runtime:
        if name not in self._instances:
            self._instances[name] = _load(name)()
        return self._instances[name]


def singularity_binary() -> str | None:
    """``singularity`` or ``apptainer`` on PATH (either is accepted, as at the FeTS sites)."""
    return shutil.which("singularity") or shutil.which("apptainer")


def runtime_for(requested: str, cube: CubeSpec) -> str:
    """Resolve a site's runtime setting to a concrete runtime for this cube.

    ``auto``: docker when an engine answers and the cube has a docker section, else local.
    ``singularity`` without the binary: docker in singularity-fidelity mode (the caller sets the mode).
    """
    if requested == "auto":
        return "docker" if cube.docker is not None and docker_available() else "local"
    if requested == "singularity" and singularity_binary() is None:
        if docker_available():
            return "docker"
        raise RuntimeUnavailable(
            "runtime 'singularity': neither singularity/apptainer nor a Docker engine "
            "(for its fidelity mode) is available here"
        )
    if requested not in _REGISTRY or requested == "sandbox":
        names = ", ".join(n for n in _REGISTRY if n != "sandbox")
        raise RuntimeUnavailable(f"unknown runtime {requested!r}; choose one of auto, {names}")
    return requested


UNSANDBOXED_FIX = "install bubblewrap (e.g. apt-get install bubblewrap) or pass --allow-unsandboxed"


class Unsandboxed(RuntimeUnavailable):
    """A submission would run as a plain host process: refused unless the user allowed it."""


@dataclass(frozen=True)
class Choice:
    """``runtime``: what the job record says (docker, local, singularity); ``instance``: the pool's key
    (``sandbox`` for the local runtime in bwrap)."""

    runtime: str
    instance: str

    @property
    def sandboxed(self) -> bool:
        return self.instance == "sandbox"


def choose(requested: str, cube: CubeSpec, *, sandbox: bool, allow_unsandboxed: bool = False) -> Choice:
    """The runtime of one job. ``sandbox``: the job must not run as a plain host process (submissions, and
    trusted cubes when the benchmark asks); it gets docker, or singularity, or the sandboxed local runtime,
    or — only with ``allow_unsandboxed`` — the plain local runtime."""
    name = runtime_for(requested, cube)
    if name != "local" or not sandbox:
        return Choice(name, name)
    from fedsim.runtimes.sandbox import probe

    found = probe()
    if found.ok:
        return Choice("local", "sandbox")
    if allow_unsandboxed:
        return Choice("local", "local")
    where = ""
    if requested == "auto":
        where = "the cube has no docker section and " if cube.docker is None else "no Docker engine answers and "
    raise Unsandboxed(f"refusing to run submissions as plain host processes: {where}{found.reason}; {UNSANDBOXED_FIX}")


def refuse_unsandboxed(submissions: Iterable[tuple[str, CubeSpec]], *, allow_unsandboxed: bool) -> None:
    """Raise :class:`Unsandboxed` before anything starts when any (requested runtime, submission cube) would run
    as a plain host process, unless ``allow_unsandboxed``. Other runtime problems are each job's to report."""
    for requested, cube in submissions:
        try:
            choose(requested, cube, sandbox=True, allow_unsandboxed=allow_unsandboxed)
        except Unsandboxed:
            raise
        except RuntimeUnavailable:
            continue


__all__ = [
    "UNSANDBOXED_FIX",
    "Choice",
    "LocalRuntime",
    "RuntimePool",
    "Unsandboxed",
    "choose",
    "docker_available",
    "refuse_unsandboxed",
    "runtime_for",
]
