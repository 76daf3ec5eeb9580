"""Why a cube failed on the local runtime when its image would have worked: one line for the job's reason.

The local runtime reproduces an image from its Dockerfile's ``COPY``/``ADD`` lines and ``pip install``
requirements; what the image gets otherwise — files its ``RUN`` lines make, modules its base image ships —
cannot exist here, and the plain (unsandboxed) runtime cannot even bind the copied files at their paths.
These hints name the path or module, where the image would have had it, and the fix.
"""

from __future__ import annotations

import posixpath
import re

from fedsim.cube import Invocation
from fedsim.cube.dockerfile import run_paths
from fedsim.runtimes import pyenv
from fedsim.runtimes.entrypoint import cube_image

_ENOENT = re.compile(
    r"(?:No such file or directory|can't open file|does not exist|not found)[:\s]+['\"]?(/[^'\"\s:]+)"
    r"|['\"]?(/[^'\"\s:]+)['\"]?:? (?:No such file or directory|does not exist)"
)
_ANY_MISSING_PATH = re.compile(r"(?:No such file or directory|not found|does not exist)", re.IGNORECASE)


def missing_paths(log_text: str) -> list[str]:
    """Absolute paths the log reports missing, last first."""
    found = [a or b for a, b in _ENOENT.findall(log_text)]
    return [posixpath.normpath(p) for p in reversed(found)]


def layout_hint(inv: Invocation, log_text: str, *, python: str, sandboxed: bool) -> str | None:
    """The hint for ``inv``'s failure, or None."""
    image = cube_image(inv.cube)
    req = pyenv.cube_requirements(inv.cube, image)
    module = pyenv.missing_module_hint(log_text, image.stage.base_image if image else None, req, python)
    if module is not None:
        return module
    if image is None or not _ANY_MISSING_PATH.search(log_text):
        return None
    made = run_paths(image.stage, image.layout)
    for path in missing_paths(log_text):
        for made_path, line in made.items():
            if path == made_path or path.startswith(made_path + "/") or made_path.startswith(path + "/"):
                return (
                    f"{path} exists only in the built image: the RUN at {image.shown}:{line} makes {made_path}, "
                    "which the local runtime cannot reproduce; fix: COPY it from the build context, or use the "
                    "docker runtime"
                )
        host = image.layout.provider(path)
        if host is not None and not sandboxed:
            return (
                f"{path} is where {image.shown} copies {host}, and the plain local runtime cannot bind paths; fix: "
                "install bubblewrap (its sandbox lays the image's files out at their paths), or use the docker runtime"
            )
    return None


__all__ = ["layout_hint", "missing_paths"]
