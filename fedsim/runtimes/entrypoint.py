"""The host command that stands in for a cube's container entrypoint (the local runtime's command head).

Precedence, first that applies:

1. ``local: {entrypoint: ...}`` in mlcube.yaml — used as written (``python``/``python3`` → this interpreter);
2. ``<build_context>/mlcube.py`` exists — ``<python> <build_context>/mlcube.py``;
3. the task's ``entrypoint`` (MLCube: it replaces the image's, and the task name is then not passed);
4. the ENTRYPOINT of the Dockerfile's final stage (MLCube passes ``TASK --param=...`` after it).

3 and 4 name container paths; each is mapped back to the host file a ``COPY``/``ADD`` line of the final
stage (and the stages it is built ``FROM``) copied there from the build context: relative sources and
destinations, ``WORKDIR``, directories copied by content, ``dest/`` directories, wildcards, and simple
``$VAR``/``${VAR}``/``${VAR:-default}`` from ``ARG`` (the cube's ``build_args`` win) and ``ENV``. The
interpreter word (``python3``, ``/usr/bin/python3.9``) becomes the interpreter running fedsim; the script
path after an interpreter and the program itself must map, other absolute arguments are mapped when a
``COPY`` line provides them. Whatever is not unambiguous — a shell command with shell syntax, a file made
by ``RUN``, copied ``--from`` another stage, downloaded or unpacked by ``ADD``, offered by several sources,
relative to a ``WORKDIR`` only the base image knows, a CMD-only image, no Dockerfile — raises
:class:`RuntimeUnavailable` with one line that says why and how to fix it. Pure: it reads files, runs nothing.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from fedsim.cube import CubeSpec
from fedsim.cube.dockerfile import (
    ARCHIVE,
    URL,
    Command,
    CopyOp,
    DockerfileError,
    ImageLayout,
    NotPlainWords,
    RunOp,
    Stage,
    copy_layout,
    expand_source,
    parse_dockerfile,
)
from fedsim.cube.spec import MLCUBE_FILE
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes.dockerargs import parse_build_args

FIX = "add 'local: {{entrypoint: \"python3 /path/to/mlcube.py\"}}' to {yaml}, or use the docker runtime"
_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")
_SHELLS = {"sh", "bash", "dash", "ash", "zsh"}
_VALUE_FLAGS = {"python": {"-W", "-X", "--check-hash-based-pycs"}, "shell": {"-o", "+o", "-O", "+O"}}
_DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class LocalCommand:
    """``head`` comes before the task's arguments; ``passes_task``: the task name goes first among them;
    ``passes_args``: the parameters follow at all — not after a one-word task entrypoint (``/bin/bash``), to
    which MLCube's docker runner passes nothing (``docker run --entrypoint=/bin/bash IMAGE``)."""

    head: tuple[str, ...]
    passes_task: bool
    origin: str
    passes_args: bool = True


class _Unmappable(Exception):
    """Why no host command follows unambiguously (the first half of the one-line error)."""


class _Ambiguous(Exception):
    """Where a container path comes from is unknown here: a ``which ...`` clause for :class:`_Unmappable`."""


def local_command(cube: CubeSpec, task: str, python: str | None = None) -> LocalCommand:
    """The host command for ``task`` of ``cube``; raises :class:`RuntimeUnavailable` when it is ambiguous."""
    python = python or sys.executable
    try:
        return _derive(cube, task, python)
    except _Unmappable as exc:
        fix = FIX.format(yaml=cube.root / MLCUBE_FILE)
        raise RuntimeUnavailable(f"cube {cube.name!r} cannot run locally: {exc}; {fix}") from None


def _derive(cube: CubeSpec, task: str, python: str) -> LocalCommand:
    explicit = cube.local.entrypoint if cube.local else None
    if explicit is not None:
        parts = shlex.split(explicit) if isinstance(explicit, str) else list(explicit)
        return LocalCommand(tuple(python if p in {"python", "python3"} else p for p in parts), True, "local.entrypoint")
    script = cube.build_context_dir / "mlcube.py"
    if script.is_file():
        return LocalCommand((python, str(script)), True, str(script))
    mapper = _Mapper(cube, python)
    entry = cube.task(task).entrypoint
    if entry is not None and entry.strip():
        label = f"the entrypoint of task {task!r}"
        try:
            words = shlex.split(entry)
        except ValueError as exc:
            raise _Unmappable(f"{label} is not a command line ({exc})") from None
        head = tuple(mapper.command(words, label))
        return LocalCommand(head, False, f"tasks.{task}.entrypoint", passes_args=len(words) > 1)
    df = mapper.dockerfile()
    if df is None:
        raise _Unmappable(
            f"there is no mlcube.py in {cube.build_context_dir} and no {mapper.shown} to read the ENTRYPOINT from"
        )
    ep = df.stage.entrypoint
    if ep is None:
        if df.stage.cmd is not None:
            raise _Unmappable(
                f"{df.shown} has CMD but no ENTRYPOINT, and MLCube's task arguments replace CMD, so the image "
                f"runs no task unless tasks.{task} sets an 'entrypoint'"
            )
        raise _Unmappable(f"{df.shown} sets no ENTRYPOINT (the base image's, if any, is unknown here)")
    label = f"the ENTRYPOINT at {df.shown}:{ep.line}"
    try:
        words = ep.plain_words()  # a shell form with variables or operators is ambiguous
    except NotPlainWords as exc:
        raise _Unmappable(f"{label} {exc}") from None
    return LocalCommand(tuple(mapper.command(words, label)), True, f"ENTRYPOINT of {df.shown}")


@dataclass(frozen=True)
class ImageCommand:
    """What docker would run for a ``mount_paths`` cube built from the Dockerfile beside it, and where."""

    argv: tuple[str, ...]
    workdir: str


def mount_paths_command(cube: CubeSpec, task: str, python: str | None = None) -> ImageCommand:
    """Docker's rule for a ``mount_paths`` cube (MedPerf's ``--entrypoint E`` and command): the task's
    entrypoint replaces the image's ENTRYPOINT and CMD, its command replaces CMD; the image's are read from the
    Dockerfile (a shell form runs under ``/bin/sh -c``). The words stay container paths — the sandbox mounts the
    image's layout at them — except that a Python interpreter is the cube's environment's. Raises
    :class:`RuntimeUnavailable` where no Dockerfile tells what the image holds."""
    python = python or sys.executable
    spec = cube.task(task)
    mapper = _Mapper(cube, python)
    try:
        df = mapper.dockerfile()
    except _Unmappable as exc:
        raise RuntimeUnavailable(f"cube {cube.name!r} cannot run locally: {exc}") from None
    if df is None:
        raise RuntimeUnavailable(
            f"cube {cube.name!r} cannot run locally: there is no {mapper.shown} beside {cube.spec_path.name} to "
            "lay out its image from (the sandbox builds a cube's root file system from its build context); "
            "fix: use the docker runtime"
        )

    def docker_form(command: Command | None) -> list[str]:
        if command is None:
            return []
        return ["/bin/sh", "-c", command.text] if command.shell else list(command.words)

    if spec.entrypoint is not None:
        words = [spec.entrypoint, *(spec.command or ())]
    else:
        words = docker_form(df.stage.entrypoint) + (list(spec.command or ()) or docker_form(df.stage.cmd))
    if not words:
        raise RuntimeUnavailable(
            f"cube {cube.name!r} cannot run locally: task {task!r} gives no command and {df.shown} sets neither "
            f"ENTRYPOINT nor CMD; fix: set tasks.{task}.run_args.command in {cube.spec_path.name}"
        )
    if _PYTHON.fullmatch(posixpath.basename(words[0])):
        words[0] = python
    return ImageCommand(tuple(words), df.stage.workdir or "/")


def _build_args(cube: CubeSpec) -> dict[str, str]:
    """The cube's ``--build-arg`` values (mapping or CLI fragment), read as the docker runtime reads them."""
    if cube.docker is None:
        return {}
    return parse_build_args(cube.docker.build_args, file=str(cube.spec_path)).buildargs


# ---------------------------------------------------------------- container paths → host paths


@dataclass
class _Dockerfile:
    path: Path
    shown: str
    context: Path
    stage: Stage

    def provider(self, path: str) -> Path | None:
        """The host file the final image has at container ``path`` (the last COPY/ADD that provides it)."""
        for op in reversed(self.stage.ops):
            if isinstance(op, CopyOp):
                host = self._provides(op, path)
                if host is not None:
                    return host
        return None

    def run_hint(self, path: str) -> str:
        name = posixpath.basename(path)
        for op in self.stage.ops:
            if isinstance(op, RunOp) and (path in op.text or re.search(rf"(?<![\w.-]){re.escape(name)}\b", op.text)):
                return f" (the RUN at line {op.line} makes it)"
        return ""

    def _expand(self, source: str) -> list[Path]:
        return expand_source(self.context, source)

    def _provides(self, op: CopyOp, path: str) -> Path | None:
        where = f"{self.shown} line {op.line}: {op.text}"
        if op.dest is None:
            if self._could_provide(op, path):
                raise _Ambiguous(f"which may come from a copy ({where}) {op.unknown_dest}")
            return None
        if not (path == op.dest or path.startswith(op.dest.rstrip("/") + "/")):
            return None
        if op.from_stage is not None:
            raise _Ambiguous(f"which comes from another build stage ({where})")
        if op.heredoc:
            raise _Ambiguous(f"which is written inline ({where})")
        if op.missing:
            raise _Ambiguous(f"which may come from a source with undefined ${op.missing[0]} ({where})")
        found: list[Path] = []
        many = op.dest_is_dir or any(c in s for s in op.sources for c in "*?[")
        for source in op.sources:
            if op.add and URL.match(source):
                raise _Ambiguous(f"which may be downloaded ({where})")
            for host in self._expand(source):
                if host.is_dir():
                    rel = posixpath.relpath(path, op.dest)
                    candidate = host if rel == "." else host / rel
                    if candidate.exists():
                        found.append(candidate)
                elif op.add and ARCHIVE.search(host.name):
                    raise _Ambiguous(f"which may be unpacked from {source} ({where})")
                elif path == posixpath.join(op.dest, host.name) or (path == op.dest and not many):
                    found.append(host)
        unique = list(dict.fromkeys(found))
        if len(unique) > 1:
            names = ", ".join(str(p.relative_to(self.context)) for p in unique)
            raise _Ambiguous(f"which several sources provide: {names} ({where})")
        return unique[0] if unique else None

    def _could_provide(self, op: CopyOp, path: str) -> bool:
        """Whether a COPY whose destination is unknown here might be where ``path`` comes from."""
        if op.from_stage is not None or op.heredoc or op.missing:
            return True
        parts = path.strip("/").split("/")
        for source in op.sources:
            if op.add and URL.match(source):
                return True
            for host in self._expand(source):
                if host.is_dir() and any((host / "/".join(parts[k:])).exists() for k in range(len(parts))):
                    return True
                if host.is_file() and parts[-1] in {host.name, posixpath.basename(op.dest_raw.rstrip("/"))}:
                    return True
        return False


class _Mapper:
    """Maps the words of a container command onto the host, reading the Dockerfile only when needed."""

    def __init__(self, cube: CubeSpec, python: str) -> None:
        self.python = python
        if cube.docker is not None:
            context = Path(cube.docker.build_context).expanduser()
            self.context = context if context.is_absolute() else (cube.root / context).resolve()
            name = cube.docker.build_file
        else:
            self.context, name = cube.build_context_dir, "Dockerfile"
        self.path = self.context / name  # MLCube: build_file is relative to the build context
        try:
            self.shown = str(self.path.relative_to(cube.root))
        except ValueError:
            self.shown = str(self.path)
        self._build_args = _build_args(cube)
        self._df: _Dockerfile | None = None

    def dockerfile(self) -> _Dockerfile | None:
        if self._df is None and self.path.is_file():
            try:
                stage = parse_dockerfile(self.path.read_text(errors="replace"), self._build_args)
            except DockerfileError as exc:
                raise _Unmappable(f"{self.shown} {exc}") from None
            self._df = _Dockerfile(self.path, self.shown, self.context, stage)
        return self._df

    def command(self, words: list[str], label: str) -> list[str]:
        if not words:
            raise _Unmappable(f"{label} is empty")
        if posixpath.basename(words[0]) == "env" and len(words) > 1 and "=" not in words[1]:
            words = words[1:]
        prog, args = words[0], words[1:]
        name = posixpath.basename(prog)
        kind = ""
        if _PYTHON.fullmatch(name):
            out, kind = [self.python], "python"
        elif name in _SHELLS:
            out, kind = [self._system(prog, label)], "shell"
        else:
            out = self._program(prog, label)
        pending = bool(kind)  # the script an interpreter runs is still to come
        i = 0
        while i < len(args):
            word = args[i]
            i += 1
            if pending and kind == "python" and word in {"-m", "-c", "-"}:
                return [*out, *args[i - 1 :]]  # a module, inline code or stdin: the rest is theirs
            if pending and kind == "shell" and re.fullmatch(r"-[a-zA-Z]*c[a-zA-Z]*", word):
                raise _Unmappable(f"{label} runs an inline shell command ({' '.join(words[:4])} ...)")
            if pending and word.startswith("-"):
                out.append(word)
                if word in _VALUE_FLAGS.get(kind, set()) and i < len(args):
                    out.append(args[i])
                    i += 1
                continue
            if pending:
                pending = False
                out.append(self.host(word, label, required=True))
                continue
            out.append(self._argument(word, label))
        return out

    def host(self, word: str, label: str, *, required: bool) -> str:
        """The host path for a container path the command names (a relative one is under WORKDIR)."""
        absolute = word.startswith("/")
        df = self.dockerfile()
        if df is None:
            if absolute and (os.path.exists(word) or not required):
                return word
            raise _Unmappable(f"{label} runs {word}, and there is no {self.shown} to map it through")
        if absolute:
            container = posixpath.normpath(word)
        elif df.stage.workdir is None:
            raise _Unmappable(f"{label} runs {word!r} relative to {df.stage.workdir_why}")
        else:
            container = posixpath.normpath(posixpath.join(df.stage.workdir, word))
        verb = "runs" if required else "passes"
        try:
            host = df.provider(container)
        except _Ambiguous as exc:
            raise _Unmappable(f"{label} {verb} {container}, {exc}") from None
        if host is not None:
            return str(host)
        if absolute and (os.path.exists(word) or not required):
            return word  # a system file (/bin/bash), or an argument fedsim leaves as written
        hint = df.run_hint(container)
        raise _Unmappable(f"{label} {verb} {container}, which no COPY or ADD line of {df.shown} provides{hint}")

    def _argument(self, word: str, label: str) -> str:
        """An argument after the script: absolute container paths (also ``--k=/path``) map when copied."""
        key, eq, value = word.partition("=")
        if eq and key.startswith("-") and value.startswith("/"):
            return f"{key}={self.host(value, label, required=False)}"
        return self.host(word, label, required=False) if word.startswith("/") else word

    def _system(self, prog: str, label: str) -> str:
        """A shell: the same path on the host, else the one on PATH."""
        if prog.startswith("/") and os.path.exists(prog):
            return prog
        found = shutil.which(posixpath.basename(prog))
        if found is None:
            raise _Unmappable(f"{label} runs {prog}, which this machine does not have")
        return found

    def _program(self, prog: str, label: str) -> list[str]:
        """A program run directly: mapped (a bare name through the image's PATH, else this machine's);
        a script that is not executable here runs through its #! line."""
        if "/" in prog:
            host = self.host(prog, label, required=True)
        else:
            mapped = self._on_image_path(prog)
            if mapped is None:
                if shutil.which(prog) is None:
                    raise _Unmappable(f"{label} runs {prog!r}, which is not on this machine's PATH")
                return [prog]
            host = mapped
        path = Path(host)
        if not path.is_file() or os.access(path, os.X_OK):
            return [host]
        with path.open("rb") as fh:
            first = fh.readline(256).decode(errors="replace").strip()
        words = first[2:].split() if first.startswith("#!") else []
        if not words:
            raise _Unmappable(f"{label} runs {prog}, which is not executable here and has no #! line")
        return [*self.command(words, f"the #! line of {host}"), host]

    def _on_image_path(self, prog: str) -> str | None:
        """A bare program name that a COPY line put on the image's PATH."""
        df = self.dockerfile()
        if df is None:
            return None
        for directory in df.stage.vars().get("PATH", _DOCKER_PATH).split(":"):
            if not directory.startswith("/"):
                continue
            try:
                host = df.provider(posixpath.join(directory, prog))
            except _Ambiguous:
                return None
            if host is not None:
                return str(host)
        return None


@dataclass(frozen=True)
class CubeImage:
    """What a cube's Dockerfile says about its image, for a runtime that has none: the final stage, its file
    layout and where the Dockerfile lies (``shown``: as the cube's messages name it)."""

    stage: Stage
    layout: ImageLayout
    shown: str


def cube_image(cube: CubeSpec) -> CubeImage | None:
    """The cube's Dockerfile read with its build arguments (None: no Dockerfile, or none docker could build)."""
    mapper = _Mapper(cube, sys.executable)
    try:
        df = mapper.dockerfile()
    except _Unmappable:
        return None
    if df is None:
        return None
    shown = df.shown
    if cube.root.name == "mlcube" and os.path.isabs(shown):  # the FeTS layout: <cube>/mlcube beside <cube>/project
        with contextlib.suppress(ValueError):
            shown = str(df.path.relative_to(cube.root.parent))
    return CubeImage(df.stage, copy_layout(df.stage, df.context), shown)
