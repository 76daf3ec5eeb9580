"""The one container spec: what fedsim knows about a cube, whichever file declared it.

A cube's definition — ``mlcube.yaml`` (:mod:`fedsim.cube.mlcube`) or MedPerf's ``container_config.yaml``
(:mod:`fedsim.cube.container_config`) — is parsed into one frozen :class:`CubeSpec`: where its image comes
from (:class:`ImageSource`), how a runtime calls it (:class:`CallConvention`), its tasks with their parameters
(type, mode, default, mount path) and run options. Runtimes and the pipeline read only this model; no code
outside the two parsers knows which file a cube came from. See ``docs/container-spec.md``.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fedsim.cube.origin import CubeOrigin
from fedsim.errors import SpecError

MLCUBE_FILE = "mlcube.yaml"


class CallConvention(str, enum.Enum):
    """How a runtime hands a task its data: the decision every argv builder takes from the spec.

    ``mlcube``: the task name, then ``--key=/mlcube_io{N}[/file]`` arguments, one mount per distinct host
    folder (MLCube 0.0.9). ``mount_paths``: each key mounted at the path the cube declares, the task's own
    ``command`` and no task name, a fresh host folder at ``/tmp``, the caller's uid, no network (MedPerf's
    container runners since 2025).
    """

    MLCUBE = "mlcube"
    MOUNT_PATHS = "mount_paths"


class ImageKind(str, enum.Enum):
    """Where a cube's root file system comes from."""

    REGISTRY = "registry"  # a docker image reference: present, pulled, or built from the Dockerfile beside it
    ARCHIVE = "archive"  # a ``docker save`` tar
    SIF = "sif"  # a Singularity image file


class ImageSource(BaseModel):
    """A cube's image as a file or a reference. ``location``: the reference, or an absolute path or ``file://`` /
    ``http(s)://`` URL of the file; ``encrypted``: gpg-encrypted (a decryption key is needed to load it);
    ``digest``: an expected ``sha256:`` (of the image for a registry image, of the file otherwise)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ImageKind
    location: str
    encrypted: bool = False
    digest: str | None = None
    decryption_key: Path | None = Field(None, exclude=True, repr=False)
    """The gpg passphrase file of an encrypted image (the benchmark's ``decryption_key`` or a CLI option): a
    path, never its content; kept out of every dump so that not even its location reaches a report."""

    @property
    def is_file(self) -> bool:
        return self.kind is not ImageKind.REGISTRY


SEPARATORS = ("/", "\\")


class Parameter(BaseModel):
    """One task parameter: ``{type, default, opts}`` or a bare string that is the default.

    Kept as declared: a missing ``default`` means the parameter's name and a missing ``type`` is decided at
    bind time from the value (trailing slash) or, for inputs, from what exists on the host — MLCube 0.0.9's
    rules (``mlcube/config.py`` ``check_parameters``, ``mlcube/shell.py`` ``generate_mounts_and_args``).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["directory", "file", "unknown"] | None = None
    default: str | None = None
    opts: Literal["ro", "rw"] | None = None
    mount_path: str | None = None
    """Where the container sees it (``mount_paths`` convention); None: MLCube's ``/mlcube_io{N}`` scheme."""

    def declared_type(self, value: str) -> Literal["directory", "file"] | None:
        """The type before looking at the host: declared, else a directory when a value ends with a slash."""
        if self.type in ("directory", "file"):
            return self.type
        if (self.default or "").endswith(SEPARATORS) or value.endswith(SEPARATORS):
            return "directory"
        return None


class TaskParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: dict[str, Parameter] = Field(default_factory=dict)
    outputs: dict[str, Parameter] = Field(default_factory=dict)

    @field_validator("inputs", "outputs", mode="before")
    @classmethod
    def _bare_strings(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            return {k: {"default": v} if isinstance(v, str) else ({} if v is None else v) for k, v in value.items()}
        return value


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: TaskParameters = TaskParameters()
    entrypoint: str | None = None
    """MLCube: words replacing the image's entrypoint (shell-split). ``mount_paths``: one argv item, as is."""
    command: tuple[str, ...] | None = None
    """``mount_paths``: the container's arguments (None: the image's CMD). MLCube: unused (task name + args)."""
    environment: dict[str, str] = Field(default_factory=dict)
    gpus: str | None = None
    """``mount_paths``: the GPUs the task asks for, normalised: ``all``, a count ``N`` or ``device=a,b``."""
    shm_size: str | None = None

    @field_validator("parameters", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class DockerSection(BaseModel):
    """MLCube's docker section. ``build_args``/``env_args`` may be a mapping or a CLI fragment, as in MLCube;
    keys starting with ``--`` (``--gpus: all``) are extra ``docker run`` options, appended as ``--key=value``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    image: str
    build_context: str = "."
    build_file: str = "Dockerfile"
    build_strategy: Literal["pull", "auto", "always", "never"] = "pull"
    build_args: dict[str, str] | str = Field(default_factory=dict)
    gpu_args: str = ""
    cpu_args: str = ""
    env_args: dict[str, str] | str = Field(default_factory=dict)

    @field_validator("gpu_args", "cpu_args", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("build_args", "env_args", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            return {str(k): "" if v is None else str(v) for k, v in value.items()}
        return value

    def run_options(self) -> list[str]:
        """The ``--key: value`` entries of the section as MLCube appends them to ``docker run``."""
        extra = self.model_extra or {}
        return [f"{k}={v}" for k, v in extra.items() if k.startswith("--") and v is not None]


class SingularitySection(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    image: str


class LocalSection(BaseModel):
    """fedsim's own addition: how to run the cube's code without a container."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entrypoint: str | list[str] | None = None
    build_context: str | None = None


class Platform(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    accelerator_count: int = Field(0, ge=0)

    @field_validator("accelerator_count", mode="before")
    @classmethod
    def _none_is_zero(cls, value: Any) -> Any:
        return 0 if value is None else value  # MLCube: `accelerator_count: null` means no accelerator


class CubeSpec(BaseModel):
    """A loaded MLCube: where it lives, how to build/run it, and its tasks."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    description: str = ""
    root: Path = Field(Path("."), exclude=True)
    workspace: Path | None = None
    platform: Platform = Platform()
    docker: DockerSection | None = None
    singularity: SingularitySection | None = None
    local: LocalSection | None = None
    tasks: dict[str, Task] = Field(min_length=1)
    origin: CubeOrigin = Field(CubeOrigin.SUBMITTED, exclude=True)
    """Set by the loader from where the file lies, never from the file (:mod:`fedsim.cube.origin`)."""
    convention: CallConvention = Field(CallConvention.MLCUBE, exclude=True)
    """Set by the parser of the file format, never from the file's keys."""
    image_source: ImageSource | None = Field(None, exclude=True)
    """The image as a file or reference (container configs; MLCube cubes use their docker/singularity sections)."""
    spec_file: str = Field(MLCUBE_FILE, exclude=True)
    """The name of the file that declared the cube, beside ``root`` (for error messages)."""

    @field_validator("platform", mode="before")
    @classmethod
    def _none_platform(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("tasks", mode="before")
    @classmethod
    def _none_tasks(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {} if v is None else v for k, v in value.items()}
        return value

    @property
    def workspace_dir(self) -> Path:
        if self.workspace is None:
            return self.root / "workspace"
        ws = self.workspace.expanduser()
        return ws if ws.is_absolute() else (self.root / ws)

    @property
    def build_context_dir(self) -> Path:
        """Directory holding the cube's code (``mlcube.py``, Dockerfile)."""
        ctx = self.local.build_context if self.local and self.local.build_context else None
        if ctx is None:
            ctx = self.docker.build_context if self.docker else "."
        path = Path(ctx).expanduser()
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def spec_path(self) -> Path:
        """The file that declared the cube (``mlcube.yaml`` or ``container_config.yaml``)."""
        return self.root / self.spec_file

    @property
    def docker_runnable(self) -> bool:
        """Docker can run it: a docker image (pulled or built) or a ``docker save`` archive to load."""
        return self.docker is not None or (
            self.image_source is not None and self.image_source.kind is ImageKind.ARCHIVE
        )

    @property
    def sif_image(self) -> bool:
        """Its image is a Singularity file: singularity runs it (or the sandbox, from its root file system)."""
        return self.image_source is not None and self.image_source.kind is ImageKind.SIF

    @property
    def image_ref(self) -> str | None:
        """The docker image reference the cube runs, where it has one (a file image has none before loading)."""
        return self.docker.image if self.docker is not None else None

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            raise SpecError(
                f"cube {self.name!r} has no task {name!r}; it has: {', '.join(self.tasks)}",
                file=str(self.spec_path),
                field="tasks",
            )
        return self.tasks[name]


__all__ = [
    "MLCUBE_FILE",
    "CallConvention",
    "CubeSpec",
    "DockerSection",
    "ImageKind",
    "ImageSource",
    "LocalSection",
    "Parameter",
    "Platform",
    "SingularitySection",
    "Task",
    "TaskParameters",
]
