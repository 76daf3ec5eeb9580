"""Static checks that need no container: the cube's file (``mlcube.yaml`` or MedPerf's ``container_config.yaml``),
what the container runs (the Dockerfile's ENTRYPOINT, a container config's ``run_args``), reliance on WORKDIR.

Singularity at a hospital ignores the image's WORKDIR and USER (docs/fets-contract.md, docs/containment.md):
an ENTRYPOINT or a script that reaches its files by a relative path works under ``docker run`` and fails
there. The same analysis runs on a Dockerfile (a cube folder) and on an image's config (a bare image, or a
cube whose image comes without its Dockerfile: pulled, or a ``docker save`` archive).

The two formats call the image differently, so "what runs" is checked by each one's rule: MLCube appends
``infer --data_path=... --output_path=...`` to the ENTRYPOINT (which must exist, in exec form); MedPerf runs
``[--entrypoint E] IMAGE [command]`` — docker's rule: ``run_args.entrypoint`` replaces the ENTRYPOINT and
clears the CMD, ``run_args.command`` replaces the CMD — so an image with only a CMD is fine there.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from fedsim.cube import CallConvention, CubeSpec, ImageKind, load_cube
from fedsim.cube import dockerfile as reader
from fedsim.cube.container_config import CONTAINER_CONFIG_FILE, is_container_config
from fedsim.cube.spec import MLCUBE_FILE, Task
from fedsim.errors import SpecError
from fedsim.runtimes.dockerargs import parse_build_args
from fedsim.submission.report import Check, failed, passed, skipped

MODEL_PARAMETERS = ("data_path", "output_path")
INTERPRETERS = re.compile(r"^(python[0-9.]*|bash|sh|dash|Rscript|perl|node)$")
EXAMPLE_ENTRYPOINT = '["python3", "/mlcube_project/mlcube.py"]'
_MAX_SCRIPTS = 200
_MAX_SCRIPT_BYTES = 1 << 20


@dataclass
class ImageCommand:
    """ENTRYPOINT, CMD and WORKDIR of the image's final stage; ``*_shell`` marks the shell form."""

    entrypoint: list[str] | None = None
    entrypoint_shell: bool = False
    cmd: list[str] | None = None
    cmd_shell: bool = False
    workdir: str | None = None
    source: str = "Dockerfile"
    notes: list[str] = field(default_factory=list)
    task_command: bool = False
    """The arguments are a container config's ``run_args.command`` (not the image's CMD)."""


MLCUBE_CHECK = "mlcube"
CONTAINER_CONFIG_CHECK = "container_config"
MEDPERF_INFER_FIX = (
    "declare infer: {input_volumes: {data_path: {mount_path: /mlcommons/volumes/data, type: directory}}, "
    "output_volumes: {output_path: {mount_path: /mlcommons/volumes/predictions, type: directory}}} "
    "(MedPerf's model template)"
)
MLCUBE_INFER_FIX = (
    "declare infer: {inputs: {data_path: {type: directory, default: data/}}, "
    "outputs: {output_path: {type: directory, default: predictions/}}}"
)


def load_cube_check(path: Path) -> tuple[CubeSpec | None, Check]:
    """The cube and its first check, named after the file that declares it (``mlcube`` or ``container_config``):
    valid, with an ``infer`` task taking data_path and output_path (an MLCube: and a docker section)."""
    medperf = is_container_config(path)
    check = CONTAINER_CONFIG_CHECK if medperf else MLCUBE_CHECK
    try:
        cube = load_cube(path)
    except SpecError as exc:
        name = path.name if path.is_file() else CONTAINER_CONFIG_FILE if medperf else MLCUBE_FILE
        return None, failed(
            check,
            f"{name} is invalid: {exc}",
            f"fix the field it names ({'MedPerf' if medperf else 'MLCube'}'s schema)",
        )
    fix = MEDPERF_INFER_FIX if cube.convention is CallConvention.MOUNT_PATHS else MLCUBE_INFER_FIX
    if "infer" not in cube.tasks:
        cause = f"{cube.spec_file} has no 'infer' task (tasks: {', '.join(cube.tasks)})"
        return cube, failed(check, cause, fix.replace("declare infer", "add tasks.infer", 1))
    problems = infer_problems(cube)
    if problems:
        return cube, failed(check, "; ".join(problems), fix)
    if cube.convention is CallConvention.MOUNT_PATHS:
        params = cube.tasks["infer"].parameters
        data, out = params.inputs["data_path"].mount_path, params.outputs["output_path"].mount_path
        return cube, passed(check, f"infer mounts data_path at {data} and output_path at {out}")
    if cube.docker is None:
        fix = "add docker: {image: ..., build_context: ..., build_file: ...}"
        return cube, failed(check, "mlcube.yaml has no docker section", fix)
    return cube, passed(check, "infer takes data_path and output_path")


load_mlcube = load_cube_check  # its name from when a cube could only be an MLCube


def infer_problems(cube: CubeSpec) -> list[str]:
    """Why the cube's ``infer`` task cannot take the federation's two keys, in its format's words (empty: it
    can). A container config's volumes always have a type, which must be a directory; an MLCube may leave the
    type out, when MLCube can tell it from the default."""
    params = cube.task("infer").parameters
    if cube.convention is CallConvention.MOUNT_PATHS:
        problems = [
            f"{key} is not in the {where} of infer"
            for key, where, declared in (
                ("data_path", "input_volumes", params.inputs),
                ("output_path", "output_volumes", params.outputs),
            )
            if key not in declared
        ]
        data, out = params.inputs.get("data_path"), params.outputs.get("output_path")
        if data is not None and data.type != "directory":
            problems.append("data_path is a file, not the directory of case folders the federation mounts")
        if out is not None and out.type != "directory":
            problems.append("output_path is a file, not the directory the predictions are written to")
        return problems
    problems = []
    if "data_path" not in params.inputs:
        problems.append("data_path is not an input of infer")
    if "output_path" not in params.outputs:
        problems.append("output_path is not an output of infer")
    for name, p in params.outputs.items():
        if p.declared_type(p.default if p.default is not None else name) is None:
            problems.append(f"output {name} has no type and its default does not end with '/' (MLCube refuses it)")
    return problems


# ---------------------------------------------------------------- Dockerfile


def parse_dockerfile(text: str, build_args: dict[str, str] | None = None) -> ImageCommand:
    """ENTRYPOINT, CMD and WORKDIR of the final stage, read by the one Dockerfile reader (stage inheritance,
    ARG/ENV substitution); a Dockerfile without FROM has none of them."""
    try:
        stage = reader.parse_dockerfile(text, build_args)
    except reader.DockerfileError:
        return ImageCommand()
    result = ImageCommand(workdir=stage.workdir_set)
    if stage.entrypoint is not None:
        result.entrypoint, result.entrypoint_shell = stage.entrypoint.argv(), stage.entrypoint.shell
    if stage.cmd is not None:
        result.cmd, result.cmd_shell = stage.cmd.argv(), stage.cmd.shell
    return result


def image_command(config: dict[str, object]) -> ImageCommand:
    """The same facts from an image's config (``docker inspect``: Config.Entrypoint, Cmd, WorkingDir)."""
    entry = config.get("Entrypoint") or None
    cmd = config.get("Cmd") or None
    out = ImageCommand(source="image config", workdir=str(config.get("WorkingDir") or "") or None)
    if isinstance(entry, list):
        shell = len(entry) >= 3 and entry[0] in {"/bin/sh", "sh"} and entry[1] == "-c"
        out.entrypoint, out.entrypoint_shell = [str(a) for a in entry], shell
    if isinstance(cmd, list):
        out.cmd = [str(a) for a in cmd]
    return out


def _script_of(argv: list[str]) -> str | None:
    """The path an interpreter runs (``python3 -u x.py`` → ``x.py``); None for ``-m module`` or ``-c``."""
    if not argv or not INTERPRETERS.match(Path(argv[0]).name):
        return None
    args = iter(argv[1:])
    for arg in args:
        if arg in {"-m", "-c"}:
            return None
        if arg.startswith("-"):
            continue
        return arg
    return None


def _relative_paths(argv: list[str]) -> list[str]:
    """Relative program or script paths in an exec-form command."""
    found = []
    if argv and "/" in argv[0] and not argv[0].startswith("/"):
        found.append(argv[0])
    script = _script_of(argv)
    if script is not None and not script.startswith("/"):
        found.append(script)
    return found


def check_entrypoint(cmd: ImageCommand) -> Check:
    """ENTRYPOINT in exec form, with an absolute path to what it runs."""
    where = cmd.source
    if cmd.entrypoint is None:
        return failed(
            "entrypoint",
            f"no ENTRYPOINT in the {where}: MLCube passes 'infer --data_path=... --output_path=...' as the "
            "container's arguments, which replace CMD",
            f"add ENTRYPOINT {EXAMPLE_ENTRYPOINT}",
        )
    if cmd.entrypoint_shell:
        return failed(
            "entrypoint",
            f"ENTRYPOINT in shell form ({' '.join(cmd.entrypoint)}) runs through /bin/sh -c and drops the task "
            "arguments MLCube passes",
            f"use the exec form: ENTRYPOINT {EXAMPLE_ENTRYPOINT}",
        )
    relative = _relative_paths(cmd.entrypoint)
    if relative:
        base = cmd.workdir or "/"
        absolute = [a if a not in relative else f"{base.rstrip('/')}/{a}" for a in cmd.entrypoint]
        return failed(
            "entrypoint",
            f"ENTRYPOINT runs {relative[0]!r} by a relative path (resolved against WORKDIR {base}, which "
            "singularity ignores)",
            f"use an absolute path: ENTRYPOINT {json.dumps(absolute)}",
        )
    return passed("entrypoint", f"exec form: {json.dumps(cmd.entrypoint)}")


def _relative_opens(source: str, context: Path) -> list[tuple[int, str]]:
    """(line, path) of calls whose first argument is a relative path literal naming a file of the context."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        arg = node.args[0]
        if not isinstance(arg, ast.Constant) or not isinstance(arg.value, str):
            continue
        value = arg.value
        if not value or value.startswith(("/", "~")) or value in {".", ".."} or len(value) > 255 or "\n" in value:
            continue
        try:
            exists = (context / value).exists()
        except (OSError, ValueError):
            exists = False
        if exists:
            found.append((node.lineno, value))
    return found


def check_workdir(cmd: ImageCommand, context: Path | None) -> Check:
    """Code relying on WORKDIR: relative paths in ENTRYPOINT/CMD, or scripts opening files relatively."""
    if not cmd.workdir or cmd.workdir == "/":
        return passed("workdir", "no WORKDIR set")
    details: list[str] = []
    for label, argv, shell in (("ENTRYPOINT", cmd.entrypoint, cmd.entrypoint_shell), ("CMD", cmd.cmd, cmd.cmd_shell)):
        if argv and not shell:
            details += [f"{label} runs {p!r} relative to WORKDIR {cmd.workdir}" for p in _relative_paths(argv)]
    if context is not None and context.is_dir():
        scripts = sorted(p for p in context.rglob("*.py") if p.is_file())[:_MAX_SCRIPTS]
        for script in scripts:
            try:
                if script.stat().st_size > _MAX_SCRIPT_BYTES:
                    continue
                text = script.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            rel = script.relative_to(context)
            details += [
                f"{rel}:{line} opens {value!r} relative to the working directory"
                for line, value in _relative_opens(text, context)
            ]
    if details:
        return failed(
            "workdir",
            f"relies on WORKDIR {cmd.workdir}, which singularity ignores: {details[0]}"
            + (f" (+{len(details) - 1} more)" if len(details) > 1 else ""),
            "use absolute paths (e.g. Path(__file__).resolve().parent / 'model.txt') and an absolute ENTRYPOINT",
            details,
        )
    return passed("workdir", f"WORKDIR {cmd.workdir} set, but nothing found that relies on it")


def task_command(cmd: ImageCommand, task: Task) -> ImageCommand:
    """What a container config's task runs in an image whose own command is ``cmd`` (docker's rule, as
    MedPerf's ``docker run [--entrypoint E] IMAGE [command]`` applies it)."""
    source = f"{cmd.source} and run_args"
    command = list(task.command) if task.command else None
    if task.entrypoint is not None:  # --entrypoint replaces ENTRYPOINT and clears CMD; "" leaves none
        entry = [task.entrypoint] if task.entrypoint else None
        return ImageCommand(entry, False, command, False, cmd.workdir, source, task_command=command is not None)
    if command is not None:
        return ImageCommand(
            cmd.entrypoint, cmd.entrypoint_shell, command, False, cmd.workdir, source, task_command=True
        )
    return ImageCommand(cmd.entrypoint, cmd.entrypoint_shell, cmd.cmd, cmd.cmd_shell, cmd.workdir, cmd.source)


def check_task_command(cmd: ImageCommand) -> Check:
    """The ``entrypoint`` check of a container config: something runs, a task command is not dropped by a
    shell-form ENTRYPOINT, and what runs is reached by an absolute path (the same rule as an MLCube's)."""
    where = cmd.source
    if cmd.entrypoint_shell and cmd.task_command:
        return failed(
            "entrypoint",
            f"ENTRYPOINT in shell form ({' '.join(cmd.entrypoint or [])}) runs through /bin/sh -c and drops "
            "run_args.command",
            'use the exec form: ENTRYPOINT ["python3", "/project/infer.py"], or run_args.entrypoint',
        )
    argv = [*(cmd.entrypoint or []), *([] if cmd.entrypoint_shell else cmd.cmd or [])]
    if not argv:
        return failed(
            "entrypoint",
            f"nothing to run: no ENTRYPOINT or CMD in the {where}, and tasks.infer.run_args sets no command "
            "(MedPerf runs the image's own command)",
            'add CMD ["python3", "/project/infer.py"] to the Dockerfile, or run_args: {command: ...}',
        )
    relative = _relative_paths(argv)
    if relative:
        base = cmd.workdir or "/"
        absolute = [a if a not in relative else f"{base.rstrip('/')}/{a}" for a in argv]
        return failed(
            "entrypoint",
            f"the container runs {relative[0]!r} by a relative path (resolved against WORKDIR {base}, which "
            "singularity ignores)",
            f"use an absolute path: {json.dumps(absolute)}",
        )
    return passed("entrypoint", f"runs {json.dumps(argv)}")


def command_checks(cube: CubeSpec | None, cmd: ImageCommand, context: Path | None) -> list[Check]:
    """The ``entrypoint`` and ``workdir`` checks of an image command (from a Dockerfile or an image's config),
    by the cube's convention; ``cube`` None: a bare image (the FeTS MLCube contract)."""
    if cube is not None and cube.convention is CallConvention.MOUNT_PATHS:
        cmd = task_command(cmd, cube.task("infer"))
        return [check_task_command(cmd), check_workdir(cmd, context)]
    return [check_entrypoint(cmd), check_workdir(cmd, context)]


def _build_args(cube: CubeSpec) -> dict[str, str]:
    assert cube.docker is not None
    try:
        return parse_build_args(cube.docker.build_args, file=str(cube.spec_path)).buildargs
    except SpecError:
        return {}


ON_IMAGE = "checked on the image instead, when docker runs"


def dockerfile_checks(cube: CubeSpec) -> list[Check]:
    """The entrypoint and workdir checks from the cube's Dockerfile (skipped, to be done on the image, when the
    image comes without one)."""
    if cube.docker is None:
        source = cube.image_source
        kind = "a Singularity file" if source is not None and source.kind is ImageKind.SIF else "a docker save archive"
        why = f"the image is {kind}, not built from a Dockerfile: {ON_IMAGE}"
        return [skipped("entrypoint", why), skipped("workdir", why)]
    context = cube.build_context_dir
    dockerfile = context / cube.docker.build_file
    if not dockerfile.is_file():
        why = f"no {cube.docker.build_file} in {context}: {ON_IMAGE}"
        return [skipped("entrypoint", why), skipped("workdir", why)]
    try:
        cmd = parse_dockerfile(dockerfile.read_text(encoding="utf-8", errors="replace"), _build_args(cube))
    except OSError as exc:
        why = f"cannot read {dockerfile}: {exc.strerror}"
        return [skipped("entrypoint", why), skipped("workdir", why)]
    return command_checks(cube, cmd, context)


def without_dockerfile(cube: CubeSpec) -> bool:
    """Whether no Dockerfile tells what the cube's image runs (an archive, a pulled image): its config does."""
    return cube.docker is None or not (cube.build_context_dir / cube.docker.build_file).is_file()
