"""Parse ``mlcube.yaml`` into a :class:`CubeSpec` — only the parts fedsim interprets.

Other top-level platform sections (ssh, gcp, k8s, ...) are allowed and ignored, so an MLCube that works
with ``mlcube run`` loads here unchanged. The parts we do interpret (tasks, parameters) are strict.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path, PurePath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fedsim.cube.origin import CubeOrigin, cube_origin
from fedsim.errors import SpecError
from fedsim.spec.loader import read_yaml_mapping, validate_mapping

MLCUBE_FILE = "mlcube.yaml"


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


# MLCube 0.0.9's docker runner (mlcube_docker/docker_run.py, Config.DEFAULT): the only keys its docker section
# may hold; `mlcube run` (and so MedPerf) stops on any other with "Unknown keys: [...]. Namespace = runner."
MLCUBE_DOCKER_KEYS = (
    "runner", "image", "docker", "env_args", "gpu_args", "cpu_args", "build_args", "build_context", "build_file",
    "build_strategy", "--network", "--security-opt", "--gpus", "--memory", "--cpuset-cpus",
)  # fmt: skip


def check_docker_keys(section: Any, file: Path) -> None:
    """Refuse the keys MLCube refuses in ``docker:`` (``run_args``, ``'--shm-size'``, a typo), in one line."""
    if not isinstance(section, dict):
        return
    unknown = [str(k) for k in section if str(k) not in MLCUBE_DOCKER_KEYS]
    if unknown:
        raise SpecError(
            f"Unknown keys: {unknown}. Namespace = runner. (MLCube 0.0.9 refuses them, and so MedPerf); allowed: "
            f"{', '.join(MLCUBE_DOCKER_KEYS)}; fix: remove {', '.join(unknown)} (docker run options belong in "
            "gpu_args/cpu_args)",
            file=str(file),
            field="docker",
        )
    tool = section.get("docker")
    if tool is not None and (
        not isinstance(tool, str) or PurePath(tool.split()[-1] if tool.split() else "").name != "docker"
    ):
        raise SpecError(
            f"docker.docker: {tool!r} cannot take effect: MLCube would run that program, but fedsim drives the "
            "Docker engine through its API (docker, 'sudo docker' or a path to docker mean the same); fix: remove "
            "the key or set it to docker",
            file=str(file),
            field="docker.docker",
        )


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
    """Set by :func:`load_cube` from where the file lies, never from the file (:mod:`fedsim.cube.origin`)."""

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

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            raise SpecError(
                f"cube {self.name!r} has no task {name!r}; it has: {', '.join(self.tasks)}",
                file=str(self.root / MLCUBE_FILE),
                field="tasks",
            )
        return self.tasks[name]


def load_cube(path: Path, workspace: Path | None = None) -> CubeSpec:
    """Load an MLCube from its directory (or the ``mlcube.yaml`` itself).

    ``workspace`` is MLCube's ``--workspace`` (default ``<root>/workspace``); OmegaConf references such as
    ``${runtime.workspace}`` are resolved against it exactly as ``mlcube run`` resolves them.
    """
    path = Path(path)
    file = path / MLCUBE_FILE if path.is_dir() else path
    root = file.parent.resolve()
    ws = Path(os.path.abspath(os.path.expanduser(str(workspace)))) if workspace is not None else None
    data = read_yaml_mapping(file)
    data.pop("workspace", None)  # MLCube overwrites it with the effective workspace
    data.pop("origin", None)  # fedsim's, decided below: a file cannot declare itself bundled
    data = interpolate(data, root, ws or root / "workspace", file)
    check_docker_keys(data.get("docker"), file)
    cube = validate_mapping(CubeSpec, data, file)
    return cube.model_copy(update={"root": root, "workspace": ws, "origin": cube_origin(root)})


def _has_reference(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(_has_reference(k) or _has_reference(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_reference(v) for v in value)
    return False


def interpolate(data: dict[str, Any], root: Path, workspace: Path, file: Path) -> dict[str, Any]:
    """Resolve OmegaConf references (``${runtime.root}``, ``${runtime.workspace}``, ``${workspace}``,
    ``${docker.image}``, ``${oc.env:VAR}``) with OmegaConf itself, the library MLCube resolves them with."""
    if not _has_reference(data):
        return data
    with warnings.catch_warnings():  # omegaconf 2.1 (MLCube's pin) imports the deprecated typing.io
        warnings.simplefilter("ignore", DeprecationWarning)
        from omegaconf import DictConfig, OmegaConf

    try:
        cfg = OmegaConf.create(data)
        extra = OmegaConf.create({"runtime": {"root": str(root), "workspace": str(workspace)}})
        merged = OmegaConf.merge(cfg, extra)
        assert isinstance(merged, DictConfig)  # merging two mappings gives a mapping
        merged["workspace"] = str(workspace)
        OmegaConf.resolve(merged)
        resolved = OmegaConf.to_container(merged)
    except Exception as exc:  # omegaconf raises many unrelated types for a bad reference
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(
            f"cannot resolve an interpolation: {first} (references may name keys of mlcube.yaml, "
            "runtime.root, runtime.workspace, workspace or oc.env:VAR)",
            file=str(file),
        ) from exc
    assert isinstance(resolved, dict)
    resolved.pop("workspace", None)
    if "runtime" not in data:
        resolved.pop("runtime", None)
    return {str(k): v for k, v in resolved.items()}


def image_only_cube(name: str, image: str) -> CubeSpec:
    """A submission given as a bare image: the FeTS ``infer`` contract (data_path in, output_path out)."""
    return CubeSpec.model_validate(
        {
            "name": name,
            "docker": {"image": image, "build_strategy": "pull"},
            "tasks": {
                "infer": {
                    "parameters": {
                        "inputs": {"data_path": {"type": "directory", "default": "data/"}},
                        "outputs": {"output_path": {"type": "directory", "default": "predictions/"}},
                    }
                }
            },
        }
    )
