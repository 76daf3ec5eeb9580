"""Parse ``mlcube.yaml`` into a :class:`CubeSpec` — only the parts fedsim interprets.

Other top-level platform sections (ssh, gcp, k8s, ...) are allowed and ignored, so an MLCube that works
with ``mlcube run`` loads here unchanged. The parts we do interpret (tasks, parameters) are strict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fedsim.errors import SpecError
from fedsim.spec.loader import read_yaml_mapping, validate_mapping

MLCUBE_FILE = "mlcube.yaml"


class Parameter(BaseModel):
    """One task parameter: ``{type, default, opts}`` or a bare string that is the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["directory", "file"] | None = None
    default: str
    opts: Literal["ro", "rw"] | None = None

    @model_validator(mode="after")
    def _infer_type(self) -> Parameter:
        # MLCube: no type given → a directory when the path ends with a slash, else a file.
        if self.type is None:
            object.__setattr__(self, "type", "directory" if self.default.endswith("/") else "file")
        return self


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
            return {k: {"default": v} if isinstance(v, str) else v for k, v in value.items()}
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
    model_config = ConfigDict(extra="allow", frozen=True)

    image: str
    build_context: str = "."
    build_file: str = "Dockerfile"
    build_strategy: Literal["pull", "auto", "always", "never"] = "pull"
    build_args: dict[str, str] = Field(default_factory=dict)
    gpu_args: str = ""
    cpu_args: str = ""
    env_args: dict[str, str] = Field(default_factory=dict)


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


def load_cube(path: Path) -> CubeSpec:
    """Load an MLCube from its directory (or the ``mlcube.yaml`` itself)."""
    path = Path(path)
    file = path / MLCUBE_FILE if path.is_dir() else path
    data = read_yaml_mapping(file)
    cube = validate_mapping(CubeSpec, data, file)
    return cube.model_copy(update={"root": file.parent.resolve()})


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
