"""Where a cube comes from, decided once when it is loaded: fedsim's own bundled reference cubes, or anyone
else's (a participant's submission, an organiser's cube).

The difference matters in one place only: where no sandbox can start, the bundled cubes — code that ships
inside the installed package and runs with the same rights as fedsim itself — may run as plain host processes
so that ``fedsim run benchmark`` works on any machine; every other cube keeps the refusal
(:func:`fedsim.runtimes.policy.resolve`).
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

from fedsim import bundled


class CubeOrigin(str, enum.Enum):
    """``bundled``: the cube's ``mlcube.yaml`` resolves into the installed ``fedsim.bundled`` package;
    ``submitted``: anything else (the default, and the only value a cube can be given from outside)."""

    BUNDLED = "bundled"
    SUBMITTED = "submitted"

    @property
    def trusted_code(self) -> bool:
        """The code is fedsim's own: it may run without containment where no sandbox can start."""
        return self is CubeOrigin.BUNDLED


def cube_origin(root: Path) -> CubeOrigin:
    """The origin of the cube whose ``mlcube.yaml`` lies in ``root``: by its real path (a symlink such as a
    clone's ``benchmarks/`` resolves into the package; a copy elsewhere, or a cube directory outside it whose
    build context points into it, does not)."""
    real = os.path.realpath(root)
    package = os.path.realpath(bundled.ROOT)
    inside = real == package or real.startswith(package.rstrip(os.sep) + os.sep)
    return CubeOrigin.BUNDLED if inside else CubeOrigin.SUBMITTED


__all__ = ["CubeOrigin", "cube_origin"]
