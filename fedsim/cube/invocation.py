"""A task call bound to host paths, and MLCube's mount/argument scheme for containers (docs/mlcube-compatibility.md).

``bind`` resolves each parameter's host path (override, else the default resolved against the workspace)
in MLCube's order — inputs first, then outputs, each in YAML order — and types untyped parameters as MLCube
does. ``container_mounts`` then gives every distinct host directory one ``/mlcube_io{N}`` mount point,
exactly as MLCube's docker and singularity runners do, so a cube that works with ``mlcube run`` works here
unchanged. The deliberate departures are listed in ``docs/mlcube-compatibility.md``.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fedsim.cachedir import cache_root
from fedsim.cube.spec import CallConvention, CubeSpec
from fedsim.errors import SpecError
from fedsim.spec.models import DEFAULT_MAX_PIDS


@dataclass(frozen=True)
class BoundParameter:
    """A parameter bound to a host path. ``opts`` is what the cube declared (None: not declared);
    ``pinned``: fedsim sets it from the federation's contract (a model's ``data_path``/``output_path``),
    so a container sees exactly that path and never its parent."""

    name: str
    io: Literal["input", "output"]
    type: Literal["directory", "file"]
    host_path: Path
    opts: Literal["ro", "rw"] | None = None
    pinned: bool = False

    @property
    def host_dir(self) -> Path:
        """The directory MLCube mounts for it: itself, or a file's parent."""
        return self.host_path if self.type == "directory" else self.host_path.parent


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
    pids_limit: int = DEFAULT_MAX_PIDS  # the benchmark's limits.max_pids
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
    scratch_dir: Path | None = None
    """``mount_paths`` convention: the fresh host folder mounted at ``/tmp`` (MedPerf's ``<tmp>``)."""

    @property
    def untrusted(self) -> bool:
        return self.isolation.untrusted

    @property
    def mount_paths(self) -> bool:
        """Whether the container finds its data at the declared mount paths (and gets its own command)."""
        return self.cube.convention is CallConvention.MOUNT_PATHS

    @property
    def entrypoint(self) -> list[str] | None:
        """The task's entrypoint: MLCube's words (shell-split; the task name is then not passed), or under
        ``mount_paths`` one program, as is (MedPerf's ``--entrypoint E``)."""
        entry = self.cube.task(self.task).entrypoint
        if self.mount_paths:
            return [entry] if entry is not None else None
        return shlex.split(entry) if entry else None

    @property
    def command(self) -> list[str]:
        """``mount_paths``: the task's own arguments (empty: the image's CMD)."""
        return list(self.cube.task(self.task).command or ())

    def create_directories(self) -> None:
        """Before a run. MLCube: every directory parameter and the parent of every file parameter, inputs
        included (``os.makedirs`` in ``generate_mounts_and_args``). ``mount_paths``, as MedPerf's
        ``volumes_to_cli_args``: an input must exist; an output folder is created, an output file's folder too
        and the file touched; the ``/tmp`` folder is created."""
        if not self.mount_paths:
            for p in self.parameters:
                p.host_dir.mkdir(parents=True, exist_ok=True)
            return
        for p in self.parameters:
            if p.io == "input":
                if not p.host_path.exists():
                    raise SpecError(
                        f"input {p.name} of task {self.task} does not exist: {p.host_path} (MedPerf: 'input volume "
                        "should exist')",
                        file=str(self.cube.spec_path),
                        field=f"tasks.{self.task}.input_volumes.{p.name}",
                    )
            elif p.type == "directory":
                p.host_path.mkdir(parents=True, exist_ok=True)
            else:
                p.host_path.parent.mkdir(parents=True, exist_ok=True)
                p.host_path.touch(exist_ok=True)
        if self.scratch_dir is not None:
            self.scratch_dir.mkdir(parents=True, exist_ok=True)

    def host_args(self) -> list[str]:
        """``--name=host_path`` arguments for runtimes without containers."""
        return [f"--{p.name}={p.host_path}" for p in self.parameters]


def host_path(workspace: Path, value: str | Path) -> Path:
    """MLCube's ``Shell.get_host_path``: ``~`` and ``$VAR`` expanded, relative values under the workspace."""
    path = Path(os.path.expandvars(os.path.expanduser(str(value))))
    return path if path.is_absolute() else workspace / path


def _contained(base: Path, default: str) -> Path:
    """Where an output fedsim does not set goes: under the job's own directory, by its default name."""
    rel = Path(os.path.normpath(default.replace("\\", "/")))
    if rel.is_absolute() or rel.parts[:1] == ("..",) or str(rel) == ".":
        rel = Path(rel.name or "output")
    return base / rel


def bind(
    cube: CubeSpec,
    task: str,
    overrides: Mapping[str, str | Path] | None = None,
    *,
    env: dict[str, str] | None = None,
    gpu_ids: tuple[str, ...] = (),
    isolation: Isolation | None = None,
    labels: dict[str, str] | None = None,
    pinned: frozenset[str] | set[str] = frozenset(),
    outputs_dir: Path | None = None,
    scratch_dir: Path | None = None,
) -> Invocation:
    """Bind a task's parameters to host paths with MLCube's rules, inputs first then outputs, in YAML order.

    ``overrides`` are the ``key=value`` pairs of ``mlcube run``; as there, names the task does not declare are
    ignored and relative values resolve against the workspace. Every other parameter gets its default
    (the parameter's name when none is declared) — except that with ``outputs_dir`` an output fedsim does
    not set lands there instead of in a workspace several jobs share. Untyped parameters are typed as MLCube
    types them: trailing slash → directory; an input by what exists on the host; an untyped output is an error.
    """
    iso = isolation or Isolation()
    if cube.convention is CallConvention.MOUNT_PATHS:
        declared = _bind_mount_paths(cube, task, overrides or {}, pinned)
        if iso.untrusted:
            _confine(cube, task, [p for p in declared if p.name not in (overrides or {})])
        if scratch_dir is None and outputs_dir is not None:
            scratch_dir = outputs_dir.parent / "tmp"
        return Invocation(
            cube, task, declared, dict(env or {}), gpu_ids, iso, dict(labels or {}), scratch_dir=scratch_dir
        )
    overrides = {k: _interpolate_value(cube, v) for k, v in (overrides or {}).items()}
    spec = cube.task(task).parameters
    workspace = cube.workspace_dir
    _sync_workspace(cube, task, overrides)
    mlcube_file = str(cube.spec_path)
    bound: list[BoundParameter] = []
    for io, params in (("input", spec.inputs), ("output", spec.outputs)):
        for name, param in params.items():
            default = param.default if param.default is not None else name
            given = overrides.get(name)
            value = str(given) if given is not None else default
            kind = param.declared_type(value)
            if given is not None:
                path = host_path(workspace, given)
            elif io == "output" and outputs_dir is not None:
                path = _contained(outputs_dir, default)
            else:
                path = host_path(workspace, default)
            if kind is None:
                where = f"tasks.{task}.parameters.{io}s.{name}"
                if io == "output":
                    raise SpecError(
                        "an output parameter needs a type: declare 'type: directory' or 'type: file' "
                        "(or end its default with '/'), as MLCube requires",
                        file=mlcube_file,
                        field=where,
                    )
                if path.is_dir():
                    kind = "directory"
                elif path.is_file():
                    kind = "file"
                else:
                    raise SpecError(
                        f"untyped input {path} does not exist, so MLCube cannot tell a file from a directory: "
                        "declare 'type: directory' or 'type: file', or create it",
                        file=mlcube_file,
                        field=where,
                    )
            bound.append(BoundParameter(name, io, kind, path, param.opts, name in pinned))  # type: ignore[arg-type]
    if iso.untrusted:
        _confine(cube, task, [p for p in bound if p.name not in overrides])
    return Invocation(cube, task, tuple(bound), dict(env or {}), gpu_ids, iso, dict(labels or {}))


def _bind_mount_paths(
    cube: CubeSpec, task: str, overrides: Mapping[str, str | Path], pinned: frozenset[str] | set[str]
) -> tuple[BoundParameter, ...]:
    """MedPerf's ``get_volumes``: inputs then outputs in declared order, each from what the federation supplies,
    else the cube's registered file (``parameters_file``, ``additional_files``); anything else is a one-line
    error (MedPerf: a ``KeyError``)."""
    spec = cube.task(task).parameters
    bound: list[BoundParameter] = []
    for io, params in (("input", spec.inputs), ("output", spec.outputs)):
        for name, param in params.items():
            given = overrides.get(name)
            if given is not None:
                path = Path(os.path.abspath(os.path.expanduser(str(given))))
            elif param.default is not None:
                path = Path(param.default)
            else:
                fix = (
                    "add workspace/parameters.yaml beside the config, or give the benchmark's parameters_file"
                    if name == "parameters_file"
                    else f"remove it from task {task}"
                )
                raise SpecError(
                    f"{name} is declared but nothing supplies it to {task} here; fix: {fix}",
                    file=str(cube.spec_path),
                    field=f"tasks.{task}.{io}_volumes.{name}",
                )
            kind = "file" if param.type == "file" else "directory"
            bound.append(BoundParameter(name, io, kind, path, param.opts, name in pinned))  # type: ignore[arg-type]
    return tuple(bound)


def _interpolate_value(cube: CubeSpec, value: str | Path) -> str | Path:
    """A ``key=value`` given on the command line may use the same OmegaConf references as mlcube.yaml."""
    if isinstance(value, Path) or "${" not in value:
        return value
    from fedsim.cube.mlcube import interpolate

    data = cube.model_dump(mode="json", exclude={"root", "workspace"}, exclude_none=True)
    data["__value__"] = value
    resolved = interpolate(data, cube.root, cube.workspace_dir, cube.root / "mlcube.yaml")
    return str(resolved["__value__"])


def _sync_workspace(cube: CubeSpec, task: str, overrides: Mapping[str, str | Path]) -> None:
    """MLCube's ``Shell.sync_workspace``: with a custom workspace, inputs that exist in the cube's own
    workspace but not in the custom one are copied there first (unless some task writes them)."""
    if cube.workspace is None:
        return
    target = cube.workspace_dir
    target.mkdir(parents=True, exist_ok=True)
    source = cube.root / "workspace"
    if not source.exists() or source.resolve() == target.resolve():
        return

    def value(name: str, default: str | None) -> str:
        given = overrides.get(name)
        return str(given) if given is not None else (default if default is not None else name)

    produced = {target / value(n, p.default) for t in cube.tasks.values() for n, p in t.parameters.outputs.items()}
    for name, param in cube.task(task).parameters.inputs.items():
        rel = value(name, param.default)
        src, dst = source / rel, target / rel
        inside = os.path.commonpath([source]) == os.path.commonpath([source, src])
        if not inside or not src.exists() or dst.exists() or dst in produced:
            continue
        if os.path.commonpath([target]) != os.path.commonpath([target, dst]):
            continue
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
        elif src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)


def _confine(cube: CubeSpec, task: str, bound: list[BoundParameter]) -> None:
    """A submission's defaults may only point into its own directory: a declared default such as ``/data``
    or ``../../labels`` must not reach the site's files (fedsim's hardening; MLCube would mount it)."""
    allowed = [cube.root.resolve(), cube.workspace_dir.resolve()]
    if cube.convention is CallConvention.MOUNT_PATHS:
        allowed.append((cache_root() / "additional_files").resolve())  # its tarball, unpacked by the parser
    for p in bound:
        if p.io != "input":
            continue
        real = p.host_path.resolve()
        if not any(real == a or a in real.parents for a in allowed):
            raise SpecError(
                f"parameter {p.name!r} of a submission resolves to {real}, outside the cube's own directory; "
                "a model may only read its own workspace (use a relative default such as 'weights/')",
                file=str(cube.spec_path),
                field=f"tasks.{task}.parameters.inputs.{p.name}",
            )


def container_mounts(inv: Invocation, prefix: str = "/mlcube_io") -> tuple[list[Mount], list[str]]:
    """MLCube's scheme: one mount per distinct host directory, ``--p=/mlcube_io{N}[/file]`` arguments.

    A file parameter mounts its parent directory; identical host directories share one mount point. Modes as
    MLCube sets them: read-write unless a parameter declares ``opts: ro`` (conflicting declarations give
    ``rw``). For untrusted cubes (fedsim's hardening) every mount no output uses is read-only, and a pinned
    file-typed parameter is mounted alone at ``/mlcube_io{N}/<name>`` so its parent (a site's directory with
    ``labels/``) never enters the container; the arguments stay exactly MLCube's.
    """
    points: dict[Path, str] = {}
    opts: dict[Path, str] = {}
    writers: set[Path] = set()
    parents_needed: list[Path] = []
    exact: list[Mount] = []
    args: list[str] = []
    for p in inv.parameters:
        host_dir = p.host_dir
        if host_dir not in points:
            points[host_dir] = f"{prefix}{len(points)}"
        point = points[host_dir]
        if p.opts is not None:
            opts[host_dir] = "rw" if host_dir in opts and opts[host_dir] != p.opts else p.opts
        if p.io == "output":
            writers.add(host_dir)
        target = point if p.type == "directory" else f"{point}/{p.host_path.name}"
        args.append(f"--{p.name}={target}")
        if inv.untrusted and p.pinned and p.type == "file":
            exact.append(Mount(p.host_path, target, p.io == "input"))
        elif host_dir not in parents_needed:
            parents_needed.append(host_dir)
    mounts: list[Mount] = []
    for host_dir in parents_needed:
        if inv.untrusted:
            read_only = host_dir not in writers or opts.get(host_dir) == "ro"
        else:
            read_only = opts.get(host_dir) == "ro"
        mounts.append(Mount(host_dir, points[host_dir], read_only))
    return mounts + exact, args
