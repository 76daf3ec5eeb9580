"""Find a runtime for a site and a cube: ``auto`` means docker when an engine answers and the cube
has a docker section, else local. Unavailable choices fail with :class:`RuntimeUnavailable`.

Which runtime and containment a job gets is :mod:`fedsim.runtimes.policy`'s decision; this module names the
runtimes, loads them and tells what each can enforce (:func:`runtime_capabilities`).
"""

from __future__ import annotations

import functools
import importlib
import shutil
from collections.abc import Callable

from fedsim.cube import CubeSpec
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes import engine
from fedsim.runtimes.base import Capabilities, Runtime
from fedsim.runtimes.local import LocalRuntime

# name -> "module:Class"; container runtimes import their SDKs only when chosen.
_REGISTRY: dict[str, str] = {
    "local": "fedsim.runtimes.local:LocalRuntime",
    "sandbox": "fedsim.runtimes.local:SandboxedLocalRuntime",  # the local runtime in bwrap; the policy picks it
    "docker": "fedsim.runtimes.docker:DockerRuntime",
    "singularity": "fedsim.runtimes.singularity:SingularityRuntime",
}


@functools.cache
def docker_available() -> bool:
    """True when a Docker engine answers a ping within two seconds."""
    try:
        engine.docker_client(engine.PROBE_TIMEOUT_S).close()
    except RuntimeUnavailable:  # any failure means "no engine": missing socket, permission, old API
        return False
    return True


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

    def close(self) -> None:
        """Close every runtime this run started, each once (an archive's tags go), then forget them."""
        instances, self._instances = list(self._instances.values()), {}
        for runtime in {id(r): r for r in instances}.values():
            runtime.close()


def singularity_binary() -> str | None:
    """``singularity`` or ``apptainer`` on PATH (either is accepted, as at the FeTS sites)."""
    return shutil.which("singularity") or shutil.which("apptainer")


def runtime_for(requested: str, cube: CubeSpec) -> str:
    """Resolve a site's runtime setting to a concrete runtime for this cube.

    ``auto``: docker when an engine answers and docker can run the cube's image (an image or a ``docker save``
    archive); a SIF: singularity where its binary is, else local; else local.
    ``singularity`` without the binary: docker in singularity-fidelity mode (the caller sets the mode), except
    for a SIF, which docker cannot run.
    """
    if requested == "auto":
        if cube.sif_image:
            return "singularity" if singularity_binary() is not None else "local"
        return "docker" if cube.docker_runnable and docker_available() else "local"
    if requested == "singularity" and singularity_binary() is None and not cube.sif_image:
        if docker_available():
            return "docker"
        raise RuntimeUnavailable(
            "runtime 'singularity': neither singularity/apptainer nor a Docker engine "
            "(for its fidelity mode) is available here"
        )
    if requested == "singularity" and singularity_binary() is None:
        raise RuntimeUnavailable(
            f"cube {cube.name!r} is a Singularity file and neither singularity nor apptainer is on PATH (docker "
            "cannot run a SIF); fix: install one, or use the local runtime, which runs it from its root file system"
        )
    if requested not in _REGISTRY or requested == "sandbox":
        names = ", ".join(n for n in _REGISTRY if n != "sandbox")
        raise RuntimeUnavailable(f"unknown runtime {requested!r}; choose one of auto, {names}")
    return requested


def runtime_capabilities(name: str) -> Capabilities:
    """What the runtime registered as ``name`` can enforce (its class's :class:`Capabilities`), without starting
    it; :class:`RuntimeUnavailable` when it is not in this installation."""
    return getattr(_load(name), "capabilities", Capabilities())


__all__ = [
    "LocalRuntime",
    "RuntimePool",
    "docker_available",
    "runtime_capabilities",
    "runtime_for",
    "singularity_binary",
]
