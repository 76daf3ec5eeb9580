"""Where a submitted cube is declared: one answer for ``check-submission``, ``dry-run`` and ``stress``.

A participant names a cube the way its format lays it out — an MLCube folder (``mlcube.yaml``, also the FeTS
layout's ``<cube>/mlcube/mlcube.yaml``), a MedPerf container folder (``container_config.yaml`` with its
Dockerfile or image archive beside it), or either file itself (MedPerf's configs may have any name, as its
tests' ``container_config_as_docker_archive.yaml``). :func:`fedsim.cube.load_cube` then parses whichever it is.
"""

from __future__ import annotations

from pathlib import Path

from fedsim.cube.container_config import CONTAINER_CONFIG_FILE, is_container_config
from fedsim.cube.spec import MLCUBE_FILE
from fedsim.errors import SpecError

CUBE_FILES = (MLCUBE_FILE, CONTAINER_CONFIG_FILE)


def cube_location(path: Path) -> Path | None:
    """What :func:`fedsim.cube.load_cube` reads for ``path``: the file itself when it is an ``mlcube.yaml`` or a
    container config, else the folder (``path`` or its ``mlcube/``) holding one of the two; None otherwise."""
    if path.is_file():
        return path if path.name == MLCUBE_FILE or is_container_config(path) else None
    for candidate in (path, path / "mlcube"):
        if any((candidate / name).is_file() for name in CUBE_FILES):
            return candidate
    return None


def locate_cube(path: Path, field: str) -> Path:
    """:func:`cube_location`, or a one-line :class:`SpecError` that says what was looked for where."""
    found = cube_location(path)
    if found is not None:
        return found
    if path.is_file():
        raise SpecError(
            f"{path} is neither an {MLCUBE_FILE} nor a MedPerf container config (it sets no container_type); "
            "fix: give the cube's folder or the file that declares it",
            field=field,
        )
    if not path.exists():
        raise SpecError(f"no such file or folder: {path}", field=field)
    raise SpecError(
        f"no {MLCUBE_FILE} or {CONTAINER_CONFIG_FILE} in {path} (nor in its mlcube/); fix: give a cube folder "
        "or the file that declares the cube",
        field=field,
    )


def default_name(location: Path) -> str:
    """The submission's name: its folder's (a FeTS cube's top folder, not its ``mlcube/``)."""
    folder = (location.parent if location.is_file() else location).resolve()
    return folder.parent.name if folder.name == "mlcube" else folder.name


__all__ = ["CUBE_FILES", "cube_location", "default_name", "locate_cube"]
