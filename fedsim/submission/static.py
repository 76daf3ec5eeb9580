"""Static checks that need no container: ``mlcube.yaml``, the Dockerfile's ENTRYPOINT, reliance on WORKDIR.

Singularity at a hospital ignores the image's WORKDIR and USER (docs/fets-contract.md, docs/containment.md):
an ENTRYPOINT or a script that reaches its files by a relative path works under ``docker run`` and fails
there. The same analysis runs on a Dockerfile (a cube folder) and on an image's config (a bare image).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from fedsim.cube import CubeSpec, load_cube
from fedsim.cube import dockerfile as reader
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


def load_mlcube(path: Path) -> tuple[CubeSpec | None, Check]:
    """The cube and the ``mlcube`` check: valid, with an ``infer`` task taking data_path and output_path."""
    try:
        cube = load_cube(path)
    except SpecError as exc:
        return None, failed("mlcube", f"mlcube.yaml is invalid: {exc}", "fix the field it names (MLCube's schema)")
    if "infer" not in cube.tasks:
        return cube, failed(
            "mlcube",
            f"mlcube.yaml has no 'infer' task (tasks: {', '.join(cube.tasks)})",
            "add tasks.infer with inputs data_path and outputs output_path",
        )
    params = cube.tasks["infer"].parameters
    problems = []
    if "data_path" not in params.inputs:
        problems.append("data_path is not an input of infer")
    if "output_path" not in params.outputs:
        problems.append("output_path is not an output of infer")
    for name, p in params.outputs.items():
        if p.declared_type(p.default if p.default is not None else name) is None:
            problems.append(f"output {name} has no type and its default does not end with '/' (MLCube refuses it)")
    if problems:
        return cube, failed(
            "mlcube",
            "; ".join(problems),
            "declare infer: {inputs: {data_path: {type: directory, default: data/}}, "
            "outputs: {output_path: {type: directory, default: predictions/}}}",
        )
    if cube.docker is None:
        fix = "add docker: {image: ..., build_context: ..., build_file: ...}"
        return cube, failed("mlcube", "mlcube.yaml has no docker section", fix)
    return cube, passed("mlcube", "infer takes data_path and output_path")


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


def _build_args(cube: CubeSpec) -> dict[str, str]:
    assert cube.docker is not None
    try:
        return parse_build_args(cube.docker.build_args, file=str(cube.root / "mlcube.yaml")).buildargs
    except SpecError:
        return {}


def dockerfile_checks(cube: CubeSpec) -> list[Check]:
    """The entrypoint and workdir checks from the cube's Dockerfile (skipped when there is none)."""
    assert cube.docker is not None
    context = cube.build_context_dir
    dockerfile = context / cube.docker.build_file
    if not dockerfile.is_file():
        why = f"no {cube.docker.build_file} in {context}: checked on the image instead, when docker runs"
        return [skipped("entrypoint", why), skipped("workdir", why)]
    try:
        cmd = parse_dockerfile(dockerfile.read_text(encoding="utf-8", errors="replace"), _build_args(cube))
    except OSError as exc:
        why = f"cannot read {dockerfile}: {exc.strerror}"
        return [skipped("entrypoint", why), skipped("workdir", why)]
    return [check_entrypoint(cmd), check_workdir(cmd, context)]
