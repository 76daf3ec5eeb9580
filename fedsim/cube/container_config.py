"""Parse MedPerf's ``container_config.yaml`` into the one :class:`~fedsim.cube.spec.CubeSpec`.

The schema is MedPerf's (``cli/medperf/containers/parsers/simple_container.py`` and ``runners/utils.py`` on
mlcommons/medperf ``main``; ``docs/medperf-container-format.md`` §1): ``container_type``, ``image`` and ``tasks``
with ``run_args``, ``input_volumes`` and ``output_volumes``. MedPerf checks only key names and only at run time;
fedsim checks every value when the cube is loaded, and where MedPerf would crash with a Python traceback or
silently do something else (a mapping as ``command``, a list as ``entrypoint``, ``gpus: "1,2"``) it refuses in
one line naming the file, the task, the key and the fix (the departures: ``docs/medperf-container-format.md`` §9).

Beside the config, as in MedPerf's templates and examples: ``workspace/parameters.yaml`` (or ``parameters.yaml``)
is the registered parameters file; ``workspace/additional_files/`` (or an ``additional_files.tar.gz`` tarball,
unpacked once into fedsim's cache by content hash) the registered additional files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from fedsim.cachedir import cache_root
from fedsim.cube.origin import cube_origin
from fedsim.cube.spec import (
    CallConvention,
    CubeSpec,
    DockerSection,
    ImageKind,
    ImageSource,
    Parameter,
    Task,
    TaskParameters,
)
from fedsim.errors import SpecError
from fedsim.spec.loader import read_yaml_mapping

CONTAINER_CONFIG_FILE = "container_config.yaml"

# container_type -> (where the root file system comes from, gpg-encrypted) (MedPerf: enums.py ContainerTypes)
CONTAINER_TYPES: dict[str, tuple[ImageKind, bool]] = {
    "DockerImage": (ImageKind.REGISTRY, False),
    "DockerArchive": (ImageKind.ARCHIVE, False),
    "EncryptedDockerArchive": (ImageKind.ARCHIVE, True),
    "SingularityFile": (ImageKind.SIF, False),
    "EncryptedSingularityFile": (ImageKind.SIF, True),
}
RUN_ARGS = ("command", "entrypoint", "environment", "gpus", "shm_size")  # runners/utils.py check_allowed_run_args
TASK_KEYS = ("run_args", "input_volumes", "output_volumes")
VOLUME_KEYS = ("mount_path", "type")
ADDITIONAL_TARBALLS = ("additional_files.tar.gz", "additional_files.tgz", "additional_files.tar")

# The keys MedPerf supplies to each task it runs in an evaluation (docs/medperf-container-format.md §4;
# entities/cube.py Cube.run, commands/dataset/prepare.py, commands/execution/container_execution.py).
# Every task may also declare parameters_file and additional_files. Keys marked by PREPARE_DECLARED are supplied
# only when prepare declares them as outputs (simple_container.py is_report_specified / is_metadata_specified).
MEDPERF_KEYS: dict[str, tuple[str, ...]] = {
    "prepare": ("data_path", "labels_path", "output_path", "output_labels_path", "metadata_path", "report_file"),
    "sanity_check": ("data_path", "labels_path", "metadata_path"),
    "statistics": ("data_path", "labels_path", "metadata_path", "output_path"),
    "infer": ("data_path", "output_path"),
    "evaluate": ("predictions", "labels", "output_path", "local_outputs_path"),
}
EVERY_TASK_KEYS = ("parameters_file", "additional_files")
PREPARE_DECLARED = ("metadata_path", "report_file")


def _error(file: Path, field: str, message: str) -> SpecError:
    return SpecError(message, file=str(file), field=field)


def is_container_config(path: Path) -> bool:
    """Whether ``path`` (a directory or a YAML file) holds a MedPerf container config rather than an MLCube."""
    if path.is_dir():
        return (path / CONTAINER_CONFIG_FILE).is_file() and not (path / "mlcube.yaml").is_file()
    return path.name != "mlcube.yaml" and path.suffix in (".yaml", ".yml") and _declares_type(path)


def _declares_type(file: Path) -> bool:
    try:
        head = file.read_text(encoding="utf-8", errors="replace")[:65536]
    except OSError:
        return False
    return any(line.startswith("container_type") for line in head.splitlines())


def load_container_config(path: Path, *, name: str | None = None) -> CubeSpec:
    """Load a container config from its directory or from the YAML file itself (any name, as MedPerf's tests'
    ``container_config_as_docker_archive.yaml``). ``name``: the cube's name (default: its directory's)."""
    path = Path(path)
    file = path / CONTAINER_CONFIG_FILE if path.is_dir() else path
    if not file.is_file():
        raise _error(file, "<file>", "no container config here; fix: give the directory holding container_config.yaml")
    root = file.parent.resolve()
    data = read_yaml_mapping(file)
    kind, encrypted = _container_type(data, file)
    image = data.get("image")
    if image is None:
        raise _error(file, "image", "Container config should have an 'image' field (MedPerf's words); fix: add it")
    if not isinstance(image, str) or not image.strip():
        raise _error(file, "image", f"image must be a non-empty string, got {image!r}")
    source = ImageSource(kind=kind, location=_location(image.strip(), kind, root, file), encrypted=encrypted)
    raw_tasks = data.get("tasks")
    if raw_tasks is None:
        raise _error(file, "tasks", "Container config should have a 'tasks' field (MedPerf's words); fix: add it")
    if not isinstance(raw_tasks, dict) or not raw_tasks:
        raise _error(file, "tasks", "tasks must be a non-empty mapping of task name to its settings")
    defaults = _registered_files(root)
    tasks = {str(t): _task(str(t), spec, file, defaults) for t, spec in raw_tasks.items()}
    _check_supplied(tasks, file)
    dockerfile = (root / "Dockerfile").is_file()
    docker = (
        DockerSection(image=source.location, build_context=".", build_strategy="auto" if dockerfile else "pull")
        if kind is ImageKind.REGISTRY
        else None
    )
    return CubeSpec(
        name=name or root.name,
        root=root,
        docker=docker,
        tasks=tasks,
        platform={"accelerator_count": _gpu_count(tasks)},
        origin=cube_origin(root),
        convention=CallConvention.MOUNT_PATHS,
        image_source=source,
        spec_file=file.name,
    )


def _container_type(data: Mapping[str, Any], file: Path) -> tuple[ImageKind, bool]:
    value = data.get("container_type")
    known = ", ".join(CONTAINER_TYPES)
    if value is None:
        raise _error(
            file,
            "container_type",
            f"Container configuration should contain a 'container_type' field (MedPerf's words); fix: one of {known}",
        )
    if value == "mlcube":
        raise _error(
            file,
            "container_type",
            "container_type 'mlcube' is not a container config (MedPerf refuses it too); fix: give the cube's "
            f"mlcube.yaml instead, or one of {known}",
        )
    if not isinstance(value, str) or value not in CONTAINER_TYPES:
        raise _error(file, "container_type", f"Invalid container type: {value}. Expected: {known}")
    return CONTAINER_TYPES[value]


def _location(image: str, kind: ImageKind, root: Path, file: Path) -> str:
    """A registry reference as written; a file as an absolute path (relative to the config) or a URL.

    MedPerf takes file images only as download resources (``http(s)://``, ``direct:``, ``synapse:``); fedsim
    also takes a local path or ``file://`` (a participant rehearsing with the archive they are about to upload).
    """
    if kind is ImageKind.REGISTRY:
        if any(c.isspace() for c in image):
            raise _error(file, "image", f"{image!r} is not an image reference (it holds white space)")
        return image
    if image.startswith("direct:"):
        image = image.removeprefix("direct:")
    if image.startswith(("http://", "https://")):
        return image
    if image.startswith("synapse:"):
        raise _error(
            file,
            "image",
            f"{image}: fedsim cannot log in to Synapse; fix: download the file and give its path (relative to "
            "the config) or an http(s):// URL",
        )
    if image.startswith("file://"):
        image = image.removeprefix("file://")
    path = Path(os.path.expanduser(image))
    return str(path if path.is_absolute() else (root / path).resolve())


def _registered_files(root: Path) -> dict[str, str | None]:
    """What MedPerf would mount as ``parameters_file`` and ``additional_files`` for this cube."""
    params = next((p for p in (root / "workspace" / "parameters.yaml", root / "parameters.yaml") if p.is_file()), None)
    extra: Path | None = root / "workspace" / "additional_files"
    if extra is None or not extra.is_dir():
        extra = root / "additional_files" if (root / "additional_files").is_dir() else None
    if extra is None:
        tarball = next((root / n for n in ADDITIONAL_TARBALLS if (root / n).is_file()), None)
        extra = unpack_additional_files(tarball) if tarball is not None else empty_additional_files()
    return {"parameters_file": str(params) if params else None, "additional_files": str(extra)}


def unpack_additional_files(tarball: Path) -> Path:
    """Unpack a cube's additional-files tarball once into the cache, by content hash (as MedPerf caches it by
    hash); members that would land outside the folder (absolute paths, ``..``, links out) are refused."""
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    target = cache_root() / "additional_files" / digest
    if target.is_dir():
        return target
    partial = target.with_name(f".{digest}.{os.getpid()}")
    partial.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(partial, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise SpecError(f"cannot unpack {tarball.name}: {exc}", file=str(tarball)) from exc
    with contextlib.suppress(OSError):  # another process unpacked it first: use theirs
        os.replace(partial, target)
    return target


def empty_additional_files() -> Path:
    """An empty folder to mount as ``additional_files`` when the cube has none (MedPerf always creates one)."""
    target = cache_root() / "additional_files" / "empty"
    target.mkdir(parents=True, exist_ok=True)
    return target


def _task(name: str, spec: Any, file: Path, defaults: Mapping[str, str | None]) -> Task:
    where = f"tasks.{name}"
    if spec is None:
        raise _error(file, where, "the task has no settings; fix: give it input_volumes/output_volumes (or remove it)")
    if not isinstance(spec, dict):
        raise _error(file, where, f"a task must be a mapping of {', '.join(TASK_KEYS)}, got {type(spec).__name__}")
    unknown = [str(k) for k in spec if k not in TASK_KEYS]
    if unknown:
        raise _error(
            file,
            f"{where}.{unknown[0]}",
            f"unknown task key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: MedPerf ignores "
            f"{'them' if len(unknown) > 1 else 'it'}, so it cannot take effect; fix: remove it (run options "
            f"belong in run_args: {', '.join(RUN_ARGS)})",
        )
    for key in ("input_volumes", "output_volumes"):
        if key in spec and spec[key] is None:
            raise _error(
                file,
                f"{where}.{key}",
                f"{key} is given with no value (MedPerf fails with a TypeError); fix: list the volumes or remove "
                f"{key}",
            )
    inputs = _volumes(spec.get("input_volumes"), f"{where}.input_volumes", file, defaults, output=False)
    outputs = _volumes(spec.get("output_volumes"), f"{where}.output_volumes", file, defaults, output=True)
    mounts = [p.mount_path for p in (*inputs.values(), *outputs.values())]
    dupes = sorted({m for m in mounts if mounts.count(m) > 1 and m is not None})
    if dupes:
        raise _error(file, where, f"mount path {dupes[0]} is used twice; docker refuses a duplicate mount point")
    run = _run_args(spec, f"{where}.run_args", file)
    return Task(parameters=TaskParameters(inputs=inputs, outputs=outputs), **run)


def _volumes(
    raw: Any, where: str, file: Path, defaults: Mapping[str, str | None], *, output: bool
) -> dict[str, Parameter]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _error(file, where, f"volumes must be a mapping of key to {{mount_path, type}}, got {type(raw).__name__}")
    out: dict[str, Parameter] = {}
    for key, vol in raw.items():
        at = f"{where}.{key}"
        if not isinstance(vol, dict) or "type" not in vol or "mount_path" not in vol:
            raise _error(
                file,
                at,
                "Container config task volumes should have a 'type' and 'mount_path' fields (MedPerf's words); "
                "fix: give both, e.g. {mount_path: /mlcommons/volumes/data, type: directory}",
            )
        extra = [str(k) for k in vol if k not in VOLUME_KEYS]
        if extra:
            raise _error(
                file,
                f"{at}.{extra[0]}",
                f"unknown volume key {', '.join(extra)}: MedPerf ignores it (inputs are always read-only, outputs "
                "read-write), so it cannot take effect; fix: remove it",
            )
        kind = vol["type"]
        if kind not in ("file", "directory"):
            raise _error(
                file, f"{at}.type", f"Mount type should be either a file or a directory (got {kind!r}; MedPerf's words)"
            )
        mount = vol["mount_path"]
        if not isinstance(mount, str) or not PurePosixPath(mount).is_absolute():
            raise _error(file, f"{at}.mount_path", f"mount_path must be an absolute container path, got {mount!r}")
        clean = os.path.normpath(mount)
        if clean == "/" or clean == "/tmp" or clean.startswith("/tmp/"):
            raise _error(
                file,
                f"{at}.mount_path",
                f"{mount} clashes with the container's {'root' if clean == '/' else '/tmp'} (MedPerf mounts a fresh "
                "host folder at /tmp); fix: mount it elsewhere, e.g. under /mlcommons/volumes/",
            )
        default = None if output else defaults.get(str(key))
        out[str(key)] = Parameter(type=kind, default=default, opts="rw" if output else "ro", mount_path=clean)
    return out


def _run_args(spec: Mapping[str, Any], where: str, file: Path) -> dict[str, Any]:
    if "run_args" not in spec:
        return {}
    raw = spec["run_args"]
    if not isinstance(raw, dict):
        raise _error(
            file,
            where,
            f"run_args must be a mapping of {', '.join(RUN_ARGS)}, got {'nothing' if raw is None else repr(raw)} "
            "(MedPerf fails with an AttributeError); fix: give the options or remove run_args",
        )
    unknown = sorted(str(k) for k in raw if k not in RUN_ARGS)
    if unknown:
        raise _error(
            file,
            f"{where}.{unknown[0]}",
            f"Run args {', '.join(unknown)} are not allowed (MedPerf's words); allowed: {', '.join(RUN_ARGS)}",
        )
    out: dict[str, Any] = {}
    if "command" in raw:
        out["command"] = _command(raw["command"], f"{where}.command", file)
    if "entrypoint" in raw:
        out["entrypoint"] = _entrypoint(raw["entrypoint"], f"{where}.entrypoint", file)
    if "environment" in raw:
        out["environment"] = _environment(raw["environment"], f"{where}.environment", file)
    if "gpus" in raw:
        out["gpus"] = normalise_gpus(raw["gpus"], file=file, field=f"{where}.gpus")
    if "shm_size" in raw:
        out["shm_size"] = _shm_size(raw["shm_size"], f"{where}.shm_size", file)
    return out


def _command(value: Any, where: str, file: Path) -> tuple[str, ...] | None:
    """A string is shell-split; a list passes item by item, its trailing empty item dropped (MedPerf hands the
    argv to pexpect as one ``shlex.join`` string, whose re-split loses it); empty: the image's CMD."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise _error(file, where, f"cannot split {value!r}: {exc}") from exc
        return tuple(words) or None
    if isinstance(value, list):
        bad = next((i for i, v in enumerate(value) if not isinstance(v, str)), None)
        if bad is not None:
            raise _error(
                file,
                f"{where}[{bad}]",
                f"command items must be strings, got {value[bad]!r} (MedPerf fails with a TypeError); fix: quote it",
            )
        words = list(value)
        if words and words[-1] == "":
            words.pop()
        return tuple(words) or None
    raise _error(
        file,
        where,
        f"command must be a string or a list of strings, got {type(value).__name__} (MedPerf would "
        f"{'pass the mapping’s keys' if isinstance(value, dict) else 'fail with a TypeError'})",
    )


def _entrypoint(value: Any, where: str, file: Path) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        raise _error(
            file,
            where,
            f"entrypoint must be one string (MedPerf passes a list as its printed form {str(value)!r}); fix: give "
            "the program as entrypoint and its arguments at the start of command",
        )
    raise _error(file, where, f"entrypoint must be a string, got {value!r}")


def _environment(value: Any, where: str, file: Path) -> dict[str, str]:
    """Values as MedPerf's docker runner formats them (an f-string: ``true`` → ``True``, null → ``None``)."""
    if not isinstance(value, dict):
        raise _error(
            file,
            where,
            f"environment must be a mapping of NAME: value, got {'nothing' if value is None else repr(value)}",
        )
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise _error(file, f"{where}.{key}", f"{key!r} is not an environment variable name")
        if isinstance(val, (dict, list)):
            raise _error(file, f"{where}.{key}", f"environment values must be scalars, got {val!r}")
        out[key] = f"{val}"
    return out


def _shm_size(value: Any, where: str, file: Path) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not text or not _is_size(text):
        raise _error(file, where, f"shm_size must be a size such as 2g or 512m, got {value!r}")
    return text


def _is_size(text: str) -> bool:
    body = text[:-1] if text[-1].lower() in "bkmg" else text
    return body.replace(".", "", 1).isdigit()


def normalise_gpus(value: Any, *, file: Path | None = None, field: str = "gpus") -> str | None:
    """MedPerf's ``_normalize_gpu_arg`` (``runners/utils.py``): none for ``0``/``""``/null/false; ``all``; a
    count; ``device=a,b``. fedsim also refuses ``true`` (MedPerf would give docker ``--gpus True``, which
    docker refuses) and keeps MedPerf's refusal of everything else."""
    if value is None or value is False or value == "" or (isinstance(value, int) and value == 0) or value == "0":
        return None
    if value == "all":
        return "all"
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.isdigit():
        return str(int(value))
    if isinstance(value, str) and value.startswith("device="):
        ids = value.removeprefix("device=").split(",")
        if ids and all(i.strip() for i in ids):
            return "device=" + ",".join(i.strip() for i in ids)
    raise SpecError(
        f"Invalid gpus argument {value!r} (MedPerf's words); fix: one of all, a count such as 1, device=0 or "
        "device=0,1, or 0 for none",
        file=str(file) if file else None,
        field=field,
    )


def _gpu_count(tasks: Mapping[str, Task]) -> int:
    """The GPUs a task asks for, as the scheduler counts them (fedsim lends the site's, FeTS: one)."""
    count = 0
    for task in tasks.values():
        g = task.gpus
        if g is None:
            continue
        n = 1 if g == "all" else (len(g.removeprefix("device=").split(",")) if g.startswith("device=") else int(g))
        count = max(count, n)
    return count


def _check_supplied(tasks: Mapping[str, Task], file: Path) -> None:
    """A key a task declares that MedPerf never supplies to it is an error here (MedPerf: a ``KeyError``)."""
    prepare = tasks.get("prepare")
    prepared = set(prepare.parameters.outputs) & set(PREPARE_DECLARED) if prepare is not None else set()
    for task_name, task in tasks.items():
        if task_name not in MEDPERF_KEYS:
            continue  # a task an evaluation never runs (training, run_script, ...): MedPerf's other flows
        supplied = set(MEDPERF_KEYS[task_name]) | set(EVERY_TASK_KEYS)
        if task_name != "prepare":
            supplied -= set(PREPARE_DECLARED) - prepared
        else:
            supplied -= {k for k in PREPARE_DECLARED if k in task.parameters.inputs}
        for io, params in (("input_volumes", task.parameters.inputs), ("output_volumes", task.parameters.outputs)):
            for key in params:
                if key in supplied:
                    continue
                why = (
                    f"MedPerf supplies {key} to {task_name} only when prepare declares it in its output_volumes"
                    if key in PREPARE_DECLARED
                    else f"MedPerf supplies {task_name} only {', '.join(sorted(supplied))}"
                )
                raise _error(
                    file,
                    f"tasks.{task_name}.{io}.{key}",
                    f"{key} is never supplied to {task_name} ({why}; MedPerf fails with KeyError: {key!r}); fix: "
                    "remove it or rename it to a supplied key",
                )


__all__ = [
    "CONTAINER_CONFIG_FILE",
    "CONTAINER_TYPES",
    "MEDPERF_KEYS",
    "RUN_ARGS",
    "is_container_config",
    "load_container_config",
    "normalise_gpus",
]
