"""Parse ``mlcube.yaml`` into a :class:`CubeSpec` — only the parts fedsim interprets.

Other top-level platform sections (ssh, gcp, k8s, ...) are allowed and ignored, so an MLCube that works
with ``mlcube run`` loads here unchanged. The parts we do interpret (tasks, parameters) are strict.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path, PurePath
from typing import Any

from fedsim.cube.origin import cube_origin
from fedsim.cube.spec import MLCUBE_FILE, CubeSpec
from fedsim.errors import SpecError
from fedsim.spec.loader import read_yaml_mapping, validate_mapping

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


def load_mlcube(path: Path, workspace: Path | None = None) -> CubeSpec:
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
    for own in ("origin", "convention", "image_source", "spec_file"):
        data.pop(own, None)  # fedsim's, decided here: a file cannot declare itself bundled or change its scheme
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
