"""The options several commands share, declared once: ``--runtime``, ``--jobs``, ``--gpus``,
``--allow-unsandboxed``, ``--offline`` and ``--serve``, with what each does to this process.

A command's own options stay in its module. What an option means is the same wherever it appears; where a
command reads it differently (``--runtime`` overrides every site's for ``run benchmark``; ``auto`` picks the
singularity-fidelity docker mode for the checks), the help says so here, once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from fedsim.serve.server import DEFAULT_PORT

if TYPE_CHECKING:
    from fedsim.runtimes.policy import ContainmentOptions

RUNTIMES = ("auto", "local", "docker", "singularity")

RuntimeOpt = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        help="auto, local, docker or singularity; for run benchmark it overrides every site's runtime, for the "
        "checks and stress auto is docker in singularity-fidelity mode where an engine answers",
    ),
]
JobsOpt = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        "-j",
        min=1,
        metavar="N",
        help="jobs running at once (default: the executor's capacity: CPU slots here, the cluster's CPUs on Ray; "
        "dry-run: 2 × CPUs); each site also runs at most its hardware.slots",
    ),
]
GpusOpt = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        metavar="LIST",
        help="the GPUs jobs may use, e.g. 0,1 (NVML indices or UUIDs; 'none' for none); default: "
        "CUDA_VISIBLE_DEVICES, else every GPU",
    ),
]
AllowUnsandboxedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unsandboxed",
        help="where neither Docker nor the bubblewrap sandbox can run, run submissions as plain host processes "
        "(no containment: for your own cubes only)",
    ),
]
OfflineOpt = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="build a cube's Python environment (local runtime) from caches only: no package index is asked",
    ),
]
ServeOpt = Annotated[
    int | None,
    typer.Option(
        "--serve",
        metavar="[PORT]",
        min=0,
        max=65535,
        help=f"also serve a live web view of it on 127.0.0.1:PORT (default {DEFAULT_PORT}; see fedsim serve); "
        "afterwards it stays up until Ctrl-C at a terminal, a few seconds otherwise",
    ),
]


def check_runtime(runtime: str | None) -> None:
    """``--runtime``: one of :data:`RUNTIMES` (a usage error, exit 2, otherwise)."""
    if runtime is not None and runtime not in RUNTIMES:
        raise typer.BadParameter(f"choose {', '.join(RUNTIMES[:-1])} or {RUNTIMES[-1]}", param_hint="--runtime")


def select_gpus(spec: str | None) -> None:
    """``--gpus``: every local executor of this process then places and guards jobs on those GPUs only."""
    from fedsim.guard.nvml import select_gpus as select

    select(spec)  # a SpecError (exit 2) names an unknown GPU


def use_offline(offline: bool) -> None:
    """``--offline``: this process's environment builds use caches only (``FEDSIM_OFFLINE``, seen by pyenv)."""
    if offline:
        from fedsim.runtimes.pyenv import OFFLINE_ENV

        os.environ[OFFLINE_ENV] = "1"


def containment_options(allow_unsandboxed: bool, *, as_sites: bool = False) -> ContainmentOptions:
    """What ``--allow-unsandboxed`` (and the command: ``as_sites`` for the checks) tells the containment policy."""
    from fedsim.runtimes.policy import ContainmentOptions

    return ContainmentOptions(allow_unsandboxed=allow_unsandboxed, as_sites=as_sites)


__all__ = [
    "RUNTIMES",
    "AllowUnsandboxedOpt",
    "GpusOpt",
    "JobsOpt",
    "OfflineOpt",
    "RuntimeOpt",
    "ServeOpt",
    "check_runtime",
    "containment_options",
    "select_gpus",
    "use_offline",
]
