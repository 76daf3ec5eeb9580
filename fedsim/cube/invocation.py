"""A task call bound to host paths, and MLCube's mount/argument scheme for containers (DESIGN §4).

``bind`` is pure: it resolves each parameter's host path (override, else the default resolved against the
workspace) in MLCube's order — inputs first, then outputs, each in YAML order. ``container_mounts`` then
gives every distinct host directory one ``/mlcube_io{N}`` mount point, exactly as MLCube's docker and
singularity runners do, so a cube that works with ``mlcube run`` works here unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fedsim.cube.mlcube import CubeSpec
from fedsim.errors import SpecError


@dataclass(frozen=True)
class BoundParameter:
    name: str
    io: Literal["input", "output"]
    type: Literal["directory", "file"]
    host_path: Path
    opts: Literal["ro", "rw"]


@dataclass(frozen=True)
class Mount:
    host_path: Path
    container_path: str
    read_only: bool


@dataclass(frozen=True)
class Isolation:
    """How tightly a runtime must hold the task; tool-neutral, each runtime translates it.

    ``untrusted`` (submissions): no network, no capabilities, non-root, memory and PID limits.
    ``singularity_fidelity``: additionally behave like singularity at a hospital — read-only image,
    64 MiB writable /tmp, no writable HOME, working directory not the image's WORKDIR, clean environment.
    """

    untrusted: bool = False
    singularity_fidelity: bool = False
    ram_bytes: int | None = None
    pids_limit: int = 4096
    tmpfs_bytes: int = 64 * 1024 * 1024  # /tmp under singularity fidelity (a hospital's writable tmpfs)
    untrusted_tmpfs_bytes: int = 1024 * 1024 * 1024  # /tmp of other untrusted containers; counts as RAM
    cpus: float | None = None  # the site's CPU count, as a CPU quota where the runtime can set one
    base_image: str | None = None


@dataclass(frozen=True)
class Invocation:
    """Everything a runtime needs to run one task; built by the pipeline, consumed by a runtime."""

    cube: CubeSpec
    task: str
    parameters: tuple[BoundParameter, ...]
    env: dict[str, str] = field(default_factory=dict)
    gpu_ids: tuple[str, ...] = ()
    isolation: Isolation = Isolation()
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def untrusted(self) -> bool:
        return self.isolation.untrusted

    def create_outputs(self) -> None:
        """Create output directories (and parents of output files), as MLCube does before a run."""
        for p in self.parameters:
            if p.io != "output":
                continue
            (p.host_path if p.type == "directory" else p.host_path.parent).mkdir(parents=True, exist_ok=True)

    def host_args(self) -> list[str]:
        """``--name=host_path`` arguments for runtimes without containers."""
        return [f"--{p.name}={p.host_path}" for p in self.parameters]


def _resolve(cube: CubeSpec, value: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (cube.workspace_dir / path)


def bind(
    cube: CubeSpec,
    task: str,
    overrides: dict[str, Path] | None = None,
    *,
    env: dict[str, str] | None = None,
    gpu_ids: tuple[str, ...] = (),
    isolation: Isolation | None = None,
    only: set[str] | None = None,
    labels: dict[str, str] | None = None,
) -> Invocation:
    """Bind a task's parameters to host paths; unknown override names are an error, not ignored.

    ``only`` restricts the call to those parameters — the federation passes a model's ``infer`` just
    ``data_path`` and ``output_path``, never its ``parameters_file`` or ``checkpoint_path``.
    """
    overrides = dict(overrides or {})
    spec = cube.task(task).parameters
    known = set(spec.inputs) | set(spec.outputs)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SpecError(
            f"task {task!r} of cube {cube.name!r} has no parameter {', '.join(unknown)}; "
            f"it has: {', '.join(sorted(known))}",
            file=str(cube.root / "mlcube.yaml"),
            field=f"tasks.{task}.parameters",
        )
    bound: list[BoundParameter] = []
    for io, params in (("input", spec.inputs), ("output", spec.outputs)):
        for name, param in params.items():
            if only is not None and name not in only:
                continue
            host = overrides.get(name)
            path = Path(host).resolve() if host is not None else _resolve(cube, param.default)
            opts = param.opts or ("ro" if io == "input" else "rw")
            assert param.type is not None
            bound.append(BoundParameter(name, io, param.type, path, opts))  # type: ignore[arg-type]
    return Invocation(cube, task, tuple(bound), dict(env or {}), gpu_ids, isolation or Isolation(), dict(labels or {}))


def container_mounts(inv: Invocation, prefix: str = "/mlcube_io") -> tuple[list[Mount], list[str]]:
    """MLCube's scheme: one mount per distinct host directory, ``--p=/mlcube_io{N}[/file]`` arguments.

    A file parameter mounts its parent directory. Identical host directories share one mount; the shared
    mount is read-only only if every parameter using it is read-only.
    """
    points: dict[Path, str] = {}
    read_only: dict[Path, bool] = {}
    args: list[str] = []
    for p in inv.parameters:
        host_dir = p.host_path if p.type == "directory" else p.host_path.parent
        if host_dir not in points:
            points[host_dir] = f"{prefix}{len(points)}"
            read_only[host_dir] = True
        read_only[host_dir] = read_only[host_dir] and p.opts == "ro"
        target = points[host_dir] if p.type == "directory" else f"{points[host_dir]}/{p.host_path.name}"
        args.append(f"--{p.name}={target}")
    mounts = [Mount(host, point, read_only[host]) for host, point in points.items()]
    return mounts, args
