"""A Python environment per cube for the local runtime, built like an image: what the cube's image would
``pip install`` (its ``requirements.txt``, the Dockerfile's ``RUN pip install`` lines) installed into a cached
virtual environment on top of the Python running fedsim.

- **Fast path**: requirements that fedsim's own Python already satisfies (``importlib.metadata`` versions
  against ``packaging`` specifiers and markers) need no environment: the cube runs with that Python, as every
  bundled cube does.
- **Build**: otherwise ``uv`` where it is on PATH, else ``python -m venv --system-site-packages`` and pip,
  into ``<fedsim cache>/pyenv/<key>`` (the key hashes the requirements and the interpreter), once: a
  finished environment carries a marker and is reused by every later run; a half-built one is rebuilt. The
  system site packages stay visible, so what a base image provides and a requirements file omits (the FeTS
  template's ``torch``) can come from the user's own installation. ``offline`` (``--offline``,
  ``FEDSIM_OFFLINE=1``) installs from caches only (pip ``--no-index``, uv ``--offline``).
- **Missing modules**: :func:`missing_module_hint` names, in one line, a module a cube could not import, the
  base image that would have provided it and the fix.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from fedsim.cube import CubeSpec
from fedsim.cube.dockerfile import pip_requirements
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes.entrypoint import CubeImage, cube_image
from fedsim.store.cache import pyenv_root

OFFLINE_ENV = "FEDSIM_OFFLINE"
REQUIREMENTS_FILE = "requirements.txt"
READY = ".fedsim-ready"
# import name -> distribution name, where they differ (for the one-line fix)
PIP_NAMES = {
    "cv2": "opencv-python", "PIL": "Pillow", "sklearn": "scikit-learn", "skimage": "scikit-image",
    "yaml": "PyYAML", "SimpleITK": "SimpleITK", "nibabel": "nibabel", "torch": "torch", "monai": "monai",
}  # fmt: skip
_MISSING = re.compile(r"ModuleNotFoundError: No module named '([A-Za-z_][\w.]*)'")


class EnvironmentFailed(RuntimeUnavailable):
    """A cube's requirements could not be installed (one line: what failed, and the fix)."""


def offline() -> bool:
    """Whether environments may be built from caches only (``FEDSIM_OFFLINE``)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in {"", "0", "no", "false", "off"}


@dataclass(frozen=True)
class Requirements:
    """What a cube's image would pip-install: requirement ``lines`` (nested ``-r`` files expanded, local paths
    made absolute), where they come from, and the base image that provides everything else."""

    lines: tuple[str, ...]
    sources: tuple[str, ...]
    base_image: str | None = None

    def key(self, python: str = sys.executable) -> str:
        """The environment's cache key: the requirements and the interpreter they are installed on top of."""
        facts = {"lines": sorted(self.lines), "python": os.path.realpath(python), "version": sys.version}
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]

    @property
    def shown(self) -> str:
        return " and ".join(self.sources)


def read_requirements(path: Path, _seen: frozenset[Path] = frozenset()) -> list[str]:
    """The requirement lines of a pip requirements file: comments and blanks dropped, ``-r`` files inlined,
    relative local paths made absolute (pip reads them relative to the working directory)."""
    path = path.resolve()
    if path in _seen or not path.is_file():
        return []
    out: list[str] = []
    joined = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8", errors="replace"))
    for raw in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        m = re.match(r"^(-r|--requirement)(?:\s+|=)(\S+)$", line)
        if m:
            out += read_requirements(path.parent / m.group(2), _seen | {path})
            continue
        m = re.match(r"^(-e|--editable)?\s*(\.{1,2}(/\S*)?|\./\S+)$", line)
        if m:
            out.append(f"{m.group(1) + ' ' if m.group(1) else ''}{(path.parent / m.group(2)).resolve()}")
            continue
        out.append(line)
    return out


def cube_requirements(cube: CubeSpec, image: CubeImage | None = None) -> Requirements | None:
    """The cube's requirements: ``requirements.txt`` in its build context, the files the Dockerfile's ``RUN
    pip install -r`` lines name (mapped through its COPY lines) and the packages they name. None: none."""
    img = image if image is not None else cube_image(cube)
    files: list[Path] = []
    packages: tuple[str, ...] = ()
    if img is not None:
        installs = pip_requirements(img.stage)
        for container in installs.requirements:
            host = img.layout.provider(container)
            if host is not None and host.is_file():
                files.append(host)
        packages = installs.packages
    default = cube.build_context_dir / REQUIREMENTS_FILE
    if default.is_file():
        files.append(default)
    lines: list[str] = []
    sources: list[str] = []
    for f in dict.fromkeys(p.resolve() for p in files):
        lines += read_requirements(f)
        sources.append(_rel(f, cube))
    if packages and img is not None:
        lines += packages
        sources.append(f"the RUN pip install lines of {img.shown}")
    if not lines:
        return None
    return Requirements(tuple(dict.fromkeys(lines)), tuple(sources), img.stage.base_image if img else None)


def _rel(path: Path, cube: CubeSpec) -> str:
    base = cube.root.parent if cube.root.name == "mlcube" else cube.root
    try:
        return str(path.relative_to(base.resolve()))
    except ValueError:
        return str(path)


def unsatisfied(lines: tuple[str, ...] | list[str]) -> list[str]:
    """The requirement lines this Python does not satisfy (an option line counts as satisfied; a line that is
    not a plain requirement — a path, a URL without a name — as unsatisfied)."""
    env = {key: str(value) for key, value in default_environment().items()}  # a plain str mapping for evaluate
    out: list[str] = []
    for line in lines:
        if line.startswith("-"):
            if line.split()[0] in {"-e", "--editable"}:
                out.append(line)
            continue  # --index-url, -c, --hash...: options for pip, nothing to satisfy
        try:
            req = Requirement(line.split(" --")[0].split(";")[0].strip() + _marker(line))
        except InvalidRequirement:
            out.append(line)
            continue
        if req.marker is not None and not req.marker.evaluate(dict(env)):
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(line)
            continue
        if req.url is None and not req.specifier.contains(version, prereleases=True):
            out.append(line)
    return out


def _marker(line: str) -> str:
    _, semi, marker = line.partition(";")
    return f"; {marker.strip()}" if semi and marker.strip() else ""


@dataclass(frozen=True)
class PyEnv:
    """A cube's environment: ``python`` to run it with, ``root`` to bind read-only (None: fedsim's own Python)."""

    python: str
    root: Path | None = None
    action: str = "present"  # built, or present (nothing to do / reused)


def env_dir(req: Requirements, python: str = sys.executable) -> Path:
    return pyenv_root() / req.key(python)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_commands(
    root: Path, req_file: Path, *, python: str, uv: str | None, offline: bool, outer_pip: bool = False
) -> list[list[str]]:
    """The commands that make the environment (pure): uv, else venv and pip (``outer_pip``: the interpreter's
    own, ``pip --python``)."""
    venv_python = str(root / "bin" / "python")
    if uv is not None:
        install = [uv, "pip", "install", "--python", venv_python, "-r", str(req_file)]
        return [
            [uv, "venv", "--python", python, "--system-site-packages", "--seed", str(root)],
            install + (["--offline"] if offline else []),
        ]
    opts = ["install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
    opts += [*(["--no-index"] if offline else []), "-r", str(req_file)]
    if outer_pip:  # the interpreter's own pip installs into the environment: no pip copied into it (seconds)
        return [
            [python, "-m", "venv", "--system-site-packages", "--without-pip", str(root)],
            [python, "-m", "pip", "--python", venv_python, *opts],
        ]
    return [[python, "-m", "venv", "--system-site-packages", str(root)], [venv_python, "-m", "pip", *opts]]


def _outer_pip(python: str) -> bool:
    """Whether this interpreter's pip can install into another environment (``pip --python``, pip 22.3+)."""
    if os.path.realpath(python) != os.path.realpath(sys.executable):
        return False
    try:
        return Version(metadata.version("pip")) >= Version("22.3")
    except (metadata.PackageNotFoundError, InvalidVersion):
        return False


def cached_env(req: Requirements | None, *, python: str = sys.executable) -> PyEnv | None:
    """The environment without building: fedsim's Python on the fast path, a finished cached one, else None."""
    if req is None or not unsatisfied(req.lines):
        return PyEnv(python)
    root = env_dir(req, python)
    if (root / READY).is_file() and (root / "bin" / "python").exists():
        return PyEnv(str(root / "bin" / "python"), root)
    return None


def ensure_env(
    cube: CubeSpec,
    req: Requirements | None,
    *,
    python: str = sys.executable,
    progress: Callable[[str], None] | None = None,
    offline_only: bool | None = None,
) -> PyEnv:
    """The environment ``cube`` runs with: fedsim's Python when it satisfies ``req``, else the cached
    environment, built now when missing. Raises :class:`EnvironmentFailed` (one line) when it cannot be built."""
    if req is None or not unsatisfied(req.lines):
        return PyEnv(python)
    root = env_dir(req, python)
    venv_python = root / "bin" / "python"
    with _locked(root.with_name(root.name + ".lock")):
        if (root / READY).is_file() and venv_python.exists():
            return PyEnv(str(venv_python), root)
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)  # a build that did not finish
        root.mkdir(parents=True)
        req_file = root / "fedsim-requirements.txt"
        req_file.write_text("\n".join(req.lines) + "\n", encoding="utf-8")
        is_offline = offline() if offline_only is None else offline_only
        uv = shutil.which("uv")
        lines: list[str] = []
        outer = _outer_pip(python)
        commands = build_commands(root, req_file, python=python, uv=uv, offline=is_offline, outer_pip=outer)
        for argv in commands:
            code = _stream(argv, lines, progress)
            if code != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise EnvironmentFailed(_failure(cube, req, lines, code, is_offline, python))
        marker = {"requirements": list(req.lines), "python": python, "built": time.time(), "uv": uv is not None}
        (root / READY).write_text(json.dumps(marker, indent=1), encoding="utf-8")
    return PyEnv(str(venv_python), root, "built")


def _stream(argv: list[str], lines: list[str], progress: Callable[[str], None] | None) -> int:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"}}
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env
        )
    except OSError as exc:
        lines.append(f"cannot start {argv[0]}: {exc.strerror}")
        return 127
    with proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if not line.strip():
                continue
            lines.append(line)
            if progress is not None:
                try:
                    progress(line)
                except BaseException:
                    proc.kill()
                    raise
        return proc.wait()


def _failure(cube: CubeSpec, req: Requirements, lines: list[str], code: int, is_offline: bool, python: str) -> str:
    errors = [ln.strip() for ln in lines if ln.strip().startswith(("ERROR:", "error:", "×", "╰─▶"))]
    why = errors[0] if errors else (lines[-1].strip() if lines else f"exit code {code}")
    why = re.sub(r"^(ERROR|error):\s*", "", why)
    fix = f"correct {req.shown}, or install them into the Python running fedsim ({python} -m pip install ...)"
    if is_offline:
        fix = f"run once without --offline (the environment is then cached and reused offline), or {fix}"
    return (
        f"cube {cube.name!r}: cannot install the requirements of {req.shown} into its Python environment"
        f"{' (offline: caches only)' if is_offline else ''}: {why}; fix: {fix}, or use the docker runtime"
    )


def missing_module_hint(log_text: str, base_image: str | None, req: Requirements | None, python: str) -> str | None:
    """One line for a cube that could not import a module: which, what would have provided it, the fix."""
    found = _MISSING.findall(log_text)
    if not found:
        return None
    module = found[-1].split(".")[0]
    dist = PIP_NAMES.get(module, module)
    where = "fedsim's Python" + (f" plus {req.shown}" if req is not None else "")
    image = f"its base image {base_image} would have provided it" if base_image else "its image would have had it"
    fix = f"install it into the Python running fedsim ({python} -m pip install {dist})"
    fix += f", add {dist} to {req.shown if req is not None else REQUIREMENTS_FILE}, or use the docker runtime"
    return f"module {module!r} is missing on the local runtime (it runs with {where}): {image}; fix: {fix}"


__all__ = [
    "OFFLINE_ENV",
    "EnvironmentFailed",
    "PyEnv",
    "Requirements",
    "build_commands",
    "cached_env",
    "cube_requirements",
    "ensure_env",
    "env_dir",
    "missing_module_hint",
    "offline",
    "read_requirements",
    "unsatisfied",
]
