"""The one Dockerfile reader: what a cube's image is built from, as typed values.

:func:`parse_dockerfile` reads the final stage (the stages it is built ``FROM`` included): ``ENTRYPOINT``,
``CMD``, ``WORKDIR``, ``ENV``/``ARG`` with docker's ``$VAR``/``${VAR:-word}`` substitution (``--build-arg``
values win), and every ``COPY``/``ADD``/``RUN`` in order. :func:`copy_layout` turns its ``COPY``/``ADD``
lines into the image's file layout — which build-context file or directory appears at which container path,
later copies over earlier ones — so that a runtime without an image (the local sandbox) can put the same
files at the same paths. :func:`pip_requirements` finds what its ``RUN pip install`` lines install, and
:func:`run_paths` the absolute paths its ``RUN`` lines name (made in the image, absent without it).

Pure apart from reading the build context (globs, which sources exist); runs nothing.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fedsim.errors import SpecError

_VAR = re.compile(r"\\\$|\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_HEREDOC = re.compile(r"<<-?([\"']?)([A-Za-z_][A-Za-z0-9_]*)\1")
URL = re.compile(r"^([a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)
ARCHIVE = re.compile(r"\.(tar|tgz|tbz2?|txz|tar\.(gz|bz2|xz|zst))$", re.IGNORECASE)
GLOB_CHARS = "*?["
SHELL_SYNTAX = re.compile(r"[$`;&|<>(){}*?\[\]~#\\]")  # what makes a shell-form command more than plain words
# container paths whose content comes from the base image and the system, never from a build context here
SYSTEM_PREFIXES = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/var", "/proc",
                   "/dev", "/sys", "/tmp", "/run", "/boot")  # fmt: skip


class DockerfileError(SpecError):
    """A Dockerfile that cannot be read as docker would read it (no ``FROM``)."""


class NotPlainWords(ValueError):
    """A shell-form ENTRYPOINT/CMD whose words only a shell can tell (variables, operators, open quotes)."""


@dataclass
class CopyOp:
    """One ``COPY``/``ADD`` line; ``dest`` is the absolute container path, None when it depends on something
    unknown here (``unknown_dest`` says what)."""

    line: int
    text: str
    add: bool
    sources: list[str]
    dest: str | None
    dest_raw: str
    dest_is_dir: bool
    from_stage: str | None
    heredoc: bool
    missing: list[str]  # undefined variables in the sources
    unknown_dest: str = ""


@dataclass
class RunOp:
    line: int
    text: str


@dataclass
class Command:
    """An ENTRYPOINT or CMD: ``words`` in exec form; ``shell`` form keeps ``text`` only."""

    line: int
    text: str
    words: list[str]
    shell: bool

    def argv(self) -> list[str]:
        """The words, also of a shell-form command (split as a shell would, best effort)."""
        return self.words if not self.shell else _words(self.text)

    def plain_words(self) -> list[str]:
        """The words docker runs, where no shell is needed to know them: the exec form's, or a shell form's that
        is plain words (a leading ``exec`` dropped: the shell replaces itself by the rest). Raises
        :class:`NotPlainWords` (why, as a predicate: ``is a shell command with shell syntax (...)``) otherwise."""
        if not self.shell:
            return self.words
        if SHELL_SYNTAX.search(self.text):
            raise NotPlainWords(f"is a shell command with shell syntax ({self.text})")
        try:
            words = shlex.split(self.text)
        except ValueError as exc:
            raise NotPlainWords(f"is not a command line ({exc})") from None
        return words[1:] if words[:1] == ["exec"] else words


@dataclass
class Stage:
    """The final build stage as the image ends up: its base, instructions, variables and commands."""

    name: str | None
    base: str
    ops: list[CopyOp | RunOp] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    workdir_why: str = ""
    workdir_set: str | None = None  # the last WORKDIR as written (relative ones joined), also when unresolvable
    entrypoint: Command | None = None
    cmd: Command | None = None
    bases: tuple[str, ...] = ()  # the external base images, outermost stage first

    def vars(self) -> dict[str, str]:
        return {**self.args, **self.env}  # ENV wins over ARG, as in docker

    def child(self, name: str | None, base: str) -> Stage:
        return Stage(
            name, base, list(self.ops), dict(self.env), {}, self.workdir, self.workdir_why, self.workdir_set,
            self.entrypoint, self.cmd, self.bases,
        )  # fmt: skip

    @property
    def base_image(self) -> str:
        """The external image the final stage is built on (through its parent stages)."""
        return self.bases[0] if self.bases else self.base


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


def substitute(text: str, env: dict[str, str], missing: list[str] | None = None) -> str:
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


def _command(line: int, text: str) -> Command | None:
    if text.startswith("["):
        try:
            argv = json.loads(text)
        except ValueError:
            argv = None
        if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
            return Command(line, text, argv, False) if argv else None
    return Command(line, text, [], True)


def parse_dockerfile(text: str, build_args: dict[str, str] | None = None) -> Stage:
    """The final stage: its ENTRYPOINT/CMD/WORKDIR and every COPY/ADD/RUN it is built from, in order."""
    build_args = build_args or {}
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line, keyword, rest in dockerfile_instructions(text):
        if keyword == "ARG":
            for word in _words(rest):
                name, eq, default = word.partition("=")
                scope = global_args if stage is None else stage.args
                if name in build_args:
                    scope[name] = build_args[name]
                elif eq:
                    scope[name] = substitute(default, global_args if stage is None else stage.vars())
                else:
                    scope[name] = global_args.get(name, "")
            continue
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            base = substitute(words[0], global_args) if words else ""
            stage_name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
            parent = stages.get(base.lower())
            if parent is not None:
                stage = parent.child(stage_name, base)
            else:
                stage = Stage(stage_name, base, bases=(base,))
                if base == "scratch":
                    stage.workdir = "/"
                else:
                    stage.workdir_why = f"the WORKDIR of the base image {base}, unknown here"
            if stage_name:
                stages[stage_name] = stage
            continue
        if stage is None:
            continue
        if keyword == "ENV":
            env = stage.vars()
            words = _words(rest)
            if words and "=" not in words[0]:
                key, _, value = rest.partition(" ")
                stage.env[key] = substitute(value.strip(), env)
            else:
                for word in words:
                    key, _, value = word.partition("=")
                    stage.env[key] = substitute(value, env)
        elif keyword == "WORKDIR":
            _workdir(line, rest, stage)
        elif keyword in {"COPY", "ADD"}:
            op = _copy(line, keyword, rest, stage)
            if op is not None:
                stage.ops.append(op)
        elif keyword == "RUN":
            stage.ops.append(RunOp(line, rest))
        elif keyword == "ENTRYPOINT":
            stage.entrypoint, stage.cmd = _command(line, rest), None  # docker: ENTRYPOINT resets CMD
        elif keyword == "CMD":
            stage.cmd = _command(line, rest)
    if stage is None:
        raise DockerfileError("has no FROM line")
    return stage


def _workdir(line: int, rest: str, stage: Stage) -> None:
    missing: list[str] = []
    target = substitute(rest.strip("\"'"), stage.vars(), missing)
    written = target if target.startswith("/") or not stage.workdir_set else posixpath.join(stage.workdir_set, target)
    stage.workdir_set = written
    if missing:
        stage.workdir = None
        stage.workdir_why = f"the WORKDIR at line {line}, which uses undefined ${missing[0]}"
    elif target.startswith("/"):
        stage.workdir = posixpath.normpath(target)
    elif stage.workdir is not None:
        stage.workdir = posixpath.normpath(posixpath.join(stage.workdir, target))


def _copy(line: int, keyword: str, rest: str, stage: Stage) -> CopyOp | None:
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
    sources = [substitute(w, env, missing) for w in words[:-1]]
    dest_missing: list[str] = []
    dest_raw = substitute(words[-1], env, dest_missing)
    from_stage = next((f.partition("=")[2] for f in flags if f.startswith("--from=")), None)
    text = " ".join([keyword, *flags, *words])
    text = text if len(text) <= 80 else text[:77] + "..."
    op = CopyOp(
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


def read_dockerfile(path: Path, build_args: dict[str, str] | None = None) -> Stage:
    """:func:`parse_dockerfile` of a file (``OSError`` when unreadable)."""
    return parse_dockerfile(path.read_text(encoding="utf-8", errors="replace"), build_args)


def expand_source(context: Path, source: str) -> list[Path]:
    """The build-context paths a COPY source names (globs expanded); none outside the context."""
    rel = posixpath.normpath(source.lstrip("/") or ".")
    if rel == ".." or rel.startswith("../"):
        return []  # outside the build context: docker refuses it
    if rel == ".":
        return [context]
    if any(c in rel for c in GLOB_CHARS):
        return sorted(context.glob(rel))
    path = context / rel
    return [path] if path.exists() else []


# ---------------------------------------------------------------- the image's file layout


@dataclass(frozen=True)
class LayoutEntry:
    """``host`` (a file or a directory of the build context) appears at container path ``dest``; a directory's
    content is copied, as docker copies it. ``line``: the Dockerfile line that copies it."""

    dest: str
    host: Path
    line: int


@dataclass(frozen=True)
class Unreproduced:
    """A COPY/ADD line whose files cannot be laid out without the image, and why."""

    line: int
    text: str
    why: str


@dataclass(frozen=True)
class ImageLayout:
    """The files a build context contributes to its image, in Dockerfile order (later entries win)."""

    context: Path
    entries: tuple[LayoutEntry, ...] = ()
    skipped: tuple[Unreproduced, ...] = ()

    def provider(self, path: str) -> Path | None:
        """The host path the image has at container ``path`` (the last entry that provides it)."""
        path = posixpath.normpath(path)
        for e in reversed(self.entries):
            if path == e.dest:
                return e.host
            if e.host.is_dir() and path.startswith(e.dest.rstrip("/") + "/"):
                candidate = e.host / posixpath.relpath(path, e.dest)
                if candidate.exists() or candidate.is_symlink():
                    return candidate
        return None

    def dests(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.dest for e in self.entries))


def _safe(host: Path, context: Path) -> bool:
    """A source that really lies in the build context (a symlink out of it is never laid out)."""
    try:
        host.resolve().relative_to(context.resolve())
    except (ValueError, OSError):
        return False
    return not host.is_symlink()


def copy_layout(stage: Stage, context: Path) -> ImageLayout:
    """The image's file layout from the stage's COPY/ADD lines: each source at its destination (a directory by
    content, a file at ``dest/name`` or at ``dest``), ``WORKDIR``-relative destinations resolved. Lines that
    copy from another stage, download, unpack, write inline or depend on an unknown variable or WORKDIR are
    listed in ``skipped``."""
    entries: list[LayoutEntry] = []
    skipped: list[Unreproduced] = []
    for op in stage.ops:
        if not isinstance(op, CopyOp):
            continue
        why = ""
        if op.from_stage is not None:
            why = f"copies from build stage {op.from_stage}"
        elif op.heredoc:
            why = "writes an inline file"
        elif op.missing:
            why = f"uses undefined ${op.missing[0]}"
        elif op.dest is None:
            why = op.unknown_dest.removeprefix("whose ")
        elif op.add and any(URL.match(s) for s in op.sources):
            why = "downloads"
        if why:
            skipped.append(Unreproduced(op.line, op.text, why))
            continue
        assert op.dest is not None
        many = op.dest_is_dir or any(c in s for s in op.sources for c in GLOB_CHARS)
        for source in op.sources:
            for host in expand_source(context, source):
                if not _safe(host, context) and host != context:
                    continue
                if host.is_dir():
                    entries.append(LayoutEntry(op.dest, host, op.line))
                elif op.add and ARCHIVE.search(host.name):
                    skipped.append(Unreproduced(op.line, op.text, f"unpacks {source}"))
                else:
                    dest = posixpath.join(op.dest, host.name) if many else op.dest
                    entries.append(LayoutEntry(dest, host, op.line))
    return ImageLayout(context, tuple(entries), tuple(skipped))


# ---------------------------------------------------------------- what RUN lines install and make

_PIP = re.compile(r"(?:^|[\s;&|(])(?:\S*/)?(?:pip[0-9.]*|python[0-9.]*\s+-m\s+pip|uv\s+pip)\s+install\s+([^;&|)\n]*)")
_PIP_VALUE_FLAGS = {
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint", "--target", "-t",
    "--prefix", "--root", "--src", "--trusted-host", "--platform", "--python-version", "--implementation",
    "--abi", "--cache-dir", "--log", "--progress-bar", "-e", "--editable",
}  # fmt: skip


@dataclass(frozen=True)
class PipInstalls:
    """What the final stage's ``RUN pip install`` lines install: ``requirements`` files (container paths, as
    written, WORKDIR-relative ones resolved) and named ``packages`` (requirement strings)."""

    requirements: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()


def pip_requirements(stage: Stage) -> PipInstalls:
    """The requirements files and packages the stage's ``RUN`` lines ``pip install`` (``-e``/local paths
    and URLs are left out: they are the cube's own code or not resolvable by name)."""
    files: list[str] = []
    packages: list[str] = []
    workdir = stage.workdir_set or "/"
    for op in stage.ops:
        if isinstance(op, CopyOp):
            continue
        for m in _PIP.finditer(substitute(op.text, stage.vars())):
            words = _words(m.group(1))
            i = 0
            while i < len(words):
                word = words[i]
                i += 1
                if word in {"-r", "--requirement"} and i < len(words):
                    files.append(posixpath.normpath(posixpath.join(workdir, words[i])))
                    i += 1
                elif word.startswith("--requirement=") or (word.startswith("-r") and len(word) > 2):
                    value = word.partition("=")[2] if word.startswith("--") else word[2:]
                    files.append(posixpath.normpath(posixpath.join(workdir, value)))
                elif word in _PIP_VALUE_FLAGS:
                    i += 1
                elif word.startswith("-") or "/" in word or word in {".", ".."} or URL.match(word):
                    continue
                elif re.match(r"^[A-Za-z0-9]", word):
                    packages.append(word)
    return PipInstalls(tuple(dict.fromkeys(files)), tuple(dict.fromkeys(packages)))


_ABS_PATH = re.compile(r"(?<![\w.:/$-])(/[A-Za-z0-9_.+@-][A-Za-z0-9_.+@/-]*)")


def run_paths(stage: Stage, layout: ImageLayout | None = None) -> dict[str, int]:
    """Absolute paths the stage's ``RUN`` lines name outside the system directories, which a build context
    does not provide: path → the line of the first RUN naming it. These exist only in the built image."""
    out: dict[str, int] = {}
    for op in stage.ops:
        if not isinstance(op, RunOp):
            continue
        for m in _ABS_PATH.finditer(substitute(op.text, stage.vars())):
            path = posixpath.normpath(m.group(1))
            if path == "/" or any(path == p or path.startswith(p + "/") for p in SYSTEM_PREFIXES):
                continue
            if layout is not None and layout.provider(path) is not None:
                continue
            out.setdefault(path, op.line)
    return out


__all__ = [
    "ARCHIVE",
    "SHELL_SYNTAX",
    "SYSTEM_PREFIXES",
    "URL",
    "Command",
    "CopyOp",
    "DockerfileError",
    "ImageLayout",
    "LayoutEntry",
    "NotPlainWords",
    "PipInstalls",
    "RunOp",
    "Stage",
    "Unreproduced",
    "copy_layout",
    "dockerfile_instructions",
    "expand_source",
    "parse_dockerfile",
    "pip_requirements",
    "read_dockerfile",
    "run_paths",
    "substitute",
]
