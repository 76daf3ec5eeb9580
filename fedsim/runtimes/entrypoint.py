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

import json
import os
import posixpath
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fedsim.cube import CubeSpec
from fedsim.cube.mlcube import MLCUBE_FILE
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes.dockerargs import parse_build_args

FIX = "add 'local: {{entrypoint: \"python3 /path/to/mlcube.py\"}}' to {yaml}, or use the docker runtime"
_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")
_SHELLS = {"sh", "bash", "dash", "ash", "zsh"}
_VALUE_FLAGS = {"python": {"-W", "-X", "--check-hash-based-pycs"}, "shell": {"-o", "+o", "-O", "+O"}}
_SHELL_SYNTAX = re.compile(r"[$`;&|<>(){}*?\[\]~#\\]")
_VAR = re.compile(r"\\\$|\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_HEREDOC = re.compile(r"<<-?([\"']?)([A-Za-z_][A-Za-z0-9_]*)\1")
_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)
_DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ARCHIVE = re.compile(r"\.(tar|tgz|tbz2?|txz|tar\.(gz|bz2|xz|zst))$", re.IGNORECASE)


@dataclass(frozen=True)
class LocalCommand:
    """``head`` comes before the task's arguments; ``passes_task``: the task name goes first among them."""

    head: tuple[str, ...]
    passes_task: bool
    origin: str


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
        return LocalCommand(tuple(mapper.command(words, label)), False, f"tasks.{task}.entrypoint")
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
    words = _shell_words(ep.text, label) if ep.shell else ep.words
    return LocalCommand(tuple(mapper.command(words, label)), True, f"ENTRYPOINT of {df.shown}")


def _shell_words(text: str, label: str) -> list[str]:
    """A shell-form command that is plain words (``exec`` dropped); variables or operators are ambiguous."""
    if _SHELL_SYNTAX.search(text):
        raise _Unmappable(f"{label} is a shell command with shell syntax ({text})")
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise _Unmappable(f"{label} is not a command line ({exc})") from None
    return words[1:] if words[:1] == ["exec"] else words


# ---------------------------------------------------------------- Dockerfile model


@dataclass
class _Copy:
    line: int
    text: str
    add: bool
    sources: list[str]
    dest: str | None  # absolute container path; None when it depends on something unknown here
    dest_raw: str
    dest_is_dir: bool
    from_stage: str | None
    heredoc: bool
    missing: list[str]  # undefined variables in the sources
    unknown_dest: str = ""  # why dest is None


@dataclass
class _Run:
    line: int
    text: str


@dataclass
class _Command:
    line: int
    text: str
    words: list[str]
    shell: bool


@dataclass
class _Stage:
    name: str | None
    base: str
    ops: list[_Copy | _Run] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    workdir_why: str = ""
    entrypoint: _Command | None = None
    cmd: _Command | None = None

    def vars(self) -> dict[str, str]:
        return {**self.args, **self.env}  # ENV wins over ARG, as in docker

    def child(self, name: str | None, base: str) -> _Stage:
        return _Stage(
            name, base, list(self.ops), dict(self.env), {}, self.workdir, self.workdir_why, self.entrypoint, self.cmd
        )


def dockerfile_instructions(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, KEYWORD, rest) with continuations joined, comments dropped, heredoc bodies appended."""
    lines = text.splitlines()
    escape = "\\"
    for raw in lines:  # parser directives come first
        m = re.fullmatch(r"#\s*(\w+)\s*=\s*(\S+)\s*", raw.strip())
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in {"\\", "`"}:
            escape = m.group(2)
    current, start, i = "", 0, 0
    while i < len(lines):
        stripped = lines[i].strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue  # blank lines and comments, also inside a continued instruction
        if not current:
            start = i
        if stripped.endswith(escape):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = re.sub(r"\s", " ", current, count=1).partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        current = ""
        if keyword in {"RUN", "COPY", "ADD"}:
            for m in list(_HEREDOC.finditer(rest)):
                end = next((j for j in range(i, len(lines)) if lines[j].strip() == m.group(2)), None)
                if end is None:
                    continue  # no terminator: a '<<' that is not a heredoc
                rest += "\n" + "\n".join(lines[i:end])
                i = end + 1
        yield start, keyword, rest


def _substitute(text: str, env: dict[str, str], missing: list[str] | None = None) -> str:
    """Docker's ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR:+word}`` (and without the colon)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "\\$":
            return "$"
        name = m.group(1) or m.group(4)
        op, word, value = m.group(2), m.group(3) or "", env.get(name)
        if op in {":-", "-"}:
            return word if value is None or (op == ":-" and value == "") else value
        if op in {":+", "+"}:
            return word if value is not None and (op == "+" or value != "") else ""
        if value is None:
            if missing is not None:
                missing.append(name)
            return ""
        return value

    return _VAR.sub(one, text)


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _command(line: int, text: str) -> _Command | None:
    if text.startswith("["):
        try:
            argv = json.loads(text)
        except ValueError:
            argv = None
        if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
            return _Command(line, text, argv, False) if argv else None
    return _Command(line, text, [], True)


def _build_args(cube: CubeSpec) -> dict[str, str]:
    """The cube's ``--build-arg`` values (mapping or CLI fragment), read as the docker runtime reads them."""
    if cube.docker is None:
        return {}
    return parse_build_args(cube.docker.build_args, file=str(cube.root / "mlcube.yaml")).buildargs


def parse_dockerfile(text: str, build_args: dict[str, str] | None = None) -> _Stage:
    """The final stage: its ENTRYPOINT/CMD/WORKDIR and every COPY/ADD/RUN it is built from, in order."""
    build_args = build_args or {}
    global_args: dict[str, str] = {}
    stages: dict[str, _Stage] = {}
    stage: _Stage | None = None
    for line, keyword, rest in dockerfile_instructions(text):
        if keyword == "ARG":
            for word in _words(rest):
                name, eq, default = word.partition("=")
                scope = global_args if stage is None else stage.args
                if name in build_args:
                    scope[name] = build_args[name]
                elif eq:
                    scope[name] = _substitute(default, global_args if stage is None else stage.vars())
                else:
                    scope[name] = global_args.get(name, "")
            continue
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            base = _substitute(words[0], global_args) if words else ""
            name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
            parent = stages.get(base.lower())
            if parent is not None:
                stage = parent.child(name, base)
            else:
                stage = _Stage(name, base)
                if base == "scratch":
                    stage.workdir = "/"
                else:
                    stage.workdir_why = f"the WORKDIR of the base image {base}, unknown here"
            if name:
                stages[name] = stage
            continue
        if stage is None:
            continue
        if keyword == "ENV":
            env = stage.vars()
            words = _words(rest)
            if words and "=" not in words[0]:
                key, _, value = rest.partition(" ")
                stage.env[key] = _substitute(value.strip(), env)
            else:
                for word in words:
                    key, _, value = word.partition("=")
                    stage.env[key] = _substitute(value, env)
        elif keyword == "WORKDIR":
            missing: list[str] = []
            target = _substitute(rest.strip("\"'"), stage.vars(), missing)
            if missing:
                stage.workdir = None
                stage.workdir_why = f"the WORKDIR at line {line}, which uses undefined ${missing[0]}"
            elif target.startswith("/"):
                stage.workdir = posixpath.normpath(target)
            elif stage.workdir is not None:
                stage.workdir = posixpath.normpath(posixpath.join(stage.workdir, target))
        elif keyword in {"COPY", "ADD"}:
            op = _copy(line, keyword, rest, stage)
            if op is not None:
                stage.ops.append(op)
        elif keyword == "RUN":
            stage.ops.append(_Run(line, rest))
        elif keyword == "ENTRYPOINT":
            stage.entrypoint, stage.cmd = _command(line, rest), None  # docker: ENTRYPOINT resets CMD
        elif keyword == "CMD":
            stage.cmd = _command(line, rest)
    if stage is None:
        raise _Unmappable("has no FROM line")
    return stage


def _copy(line: int, keyword: str, rest: str, stage: _Stage) -> _Copy | None:
    first = rest.split("\n", 1)[0]
    m = re.match(r"((?:--\S+\s+)*)(.*)", first, re.DOTALL)
    assert m is not None
    flags, body = m.group(1).split(), m.group(2).strip()
    words: list[str] | None = None
    if body.startswith("["):
        try:
            parsed = json.loads(body)
            words = [str(w) for w in parsed] if isinstance(parsed, list) else None
        except ValueError:
            words = None
    if words is None:
        words = body.split()
    if len(words) < 2:
        return None
    env = stage.vars()
    missing: list[str] = []
    sources = [_substitute(w, env, missing) for w in words[:-1]]
    dest_missing: list[str] = []
    dest_raw = _substitute(words[-1], env, dest_missing)
    from_stage = next((f.partition("=")[2] for f in flags if f.startswith("--from=")), None)
    text = " ".join([keyword, *flags, *words])
    text = text if len(text) <= 80 else text[:77] + "..."
    op = _Copy(
        line,
        text,
        keyword == "ADD",
        sources,
        None,
        dest_raw,
        dest_raw.endswith("/") or dest_raw in {".", ".."} or dest_raw.endswith("/.") or len(sources) > 1,
        from_stage,
        any(s.startswith("<<") for s in sources),
        missing,
    )
    if dest_missing:
        op.unknown_dest = f"whose destination uses undefined ${dest_missing[0]}"
    elif dest_raw.startswith("/"):
        op.dest = posixpath.normpath(dest_raw)
    elif stage.workdir is not None:
        op.dest = posixpath.normpath(posixpath.join(stage.workdir, dest_raw))
    else:
        op.unknown_dest = f"whose destination {dest_raw!r} is relative to {stage.workdir_why}"
    return op


# ---------------------------------------------------------------- container paths → host paths


@dataclass
class _Dockerfile:
    path: Path
    shown: str
    context: Path
    stage: _Stage

    def provider(self, path: str) -> Path | None:
        """The host file the final image has at container ``path`` (the last COPY/ADD that provides it)."""
        for op in reversed(self.stage.ops):
            if isinstance(op, _Copy):
                host = self._provides(op, path)
                if host is not None:
                    return host
        return None

    def run_hint(self, path: str) -> str:
        name = posixpath.basename(path)
        for op in self.stage.ops:
            if isinstance(op, _Run) and (path in op.text or re.search(rf"(?<![\w.-]){re.escape(name)}\b", op.text)):
                return f" (the RUN at line {op.line} makes it)"
        return ""

    def _expand(self, source: str) -> list[Path]:
        rel = posixpath.normpath(source.lstrip("/") or ".")
        if rel == "..":
            return []
        if rel.startswith("../"):
            return []  # outside the build context: docker refuses it
        if rel == ".":
            return [self.context]
        if any(c in rel for c in "*?["):
            return sorted(self.context.glob(rel))
        path = self.context / rel
        return [path] if path.exists() else []

    def _provides(self, op: _Copy, path: str) -> Path | None:
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
            if op.add and _URL.match(source):
                raise _Ambiguous(f"which may be downloaded ({where})")
            for host in self._expand(source):
                if host.is_dir():
                    rel = posixpath.relpath(path, op.dest)
                    candidate = host if rel == "." else host / rel
                    if candidate.exists():
                        found.append(candidate)
                elif op.add and _ARCHIVE.search(host.name):
                    raise _Ambiguous(f"which may be unpacked from {source} ({where})")
                elif path == posixpath.join(op.dest, host.name) or (path == op.dest and not many):
                    found.append(host)
        unique = list(dict.fromkeys(found))
        if len(unique) > 1:
            names = ", ".join(str(p.relative_to(self.context)) for p in unique)
            raise _Ambiguous(f"which several sources provide: {names} ({where})")
        return unique[0] if unique else None

    def _could_provide(self, op: _Copy, path: str) -> bool:
        """Whether a COPY whose destination is unknown here might be where ``path`` comes from."""
        if op.from_stage is not None or op.heredoc or op.missing:
            return True
        parts = path.strip("/").split("/")
        for source in op.sources:
            if op.add and _URL.match(source):
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
            except _Unmappable as exc:
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
