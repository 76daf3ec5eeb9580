"""Turn the tail of a failed job's log into one line naming the likely cause and the fix.

Containers that work under ``docker run`` fail at hospitals for a handful of classic reasons (DESIGN §3):
relying on WORKDIR, writing outside ``output_path``, files readable only by root. Recognising them here
lets the job record say *why* and *what to change*, not just "exit code 1".

The log is read from its end: the last recognisable error is the one that killed the job (a traceback ends
with it), while earlier lines may hold warnings the cube survived.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fedsim.cube import Isolation

MOUNT_PREFIX = "/mlcube_io"


def _py(group: str) -> str:
    """A path as Python prints it after an error: ``...: 'path'``."""
    return rf"""['"](?P<{group}>[^'"]+)['"]"""


def _sh(group: str) -> str:
    """A path as coreutils and shells print it before an error: ``path: message``."""
    return rf"""(?:^|[\s'"])(?P<{group}>[^\s'":|][^\s'":|]*)['"]?"""


_NOT_FOUND = re.compile(rf"No such file or directory: {_py('path1')}|{_sh('path2')}: No such file or directory")
_CANT_OPEN = re.compile(rf"can't open file {_py('path')}: \[Errno 2\]")
_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded|\[Errno 28\]")
_READ_ONLY = re.compile(rf"Read-only file system(?:: {_py('path1')})?|{_sh('path2')}: Read-only file system")
_DENIED = re.compile(rf"Permission denied: {_py('path1')}|{_sh('path2')}: Permission denied")

Rule = Callable[[str, Isolation], "str | None"]  # a line -> a hint, or None


def _path(match: re.Match[str]) -> str | None:
    """The first named ``path`` group that matched (the patterns have one per alternative)."""
    for name in match.re.groupindex:
        if name.startswith("path") and match.group(name):
            return match.group(name)
    return None


def _relative_path(line: str, iso: Isolation) -> str | None:
    """Singularity starts in the caller's cwd, not the image's WORKDIR: relative paths break."""
    for m in _NOT_FOUND.finditer(line):
        path = _path(m)
        if path and not path.startswith("/"):
            return (
                f"opens {path!r} by a relative path: relies on the image's WORKDIR: singularity ignores it; "
                "use absolute paths (e.g. from __file__)"
            )
    m = _CANT_OPEN.search(line)
    if m:
        return (
            f"the entrypoint runs {_path(m)!r} relative to the image's WORKDIR: singularity ignores it; "
            "use an absolute path in ENTRYPOINT/CMD"
        )
    return None


def _no_space(line: str, iso: Isolation) -> str | None:
    """Singularity's writable overlay is a small tmpfs; big scratch data outside output_path fills it."""
    if not _NO_SPACE.search(line):
        return None
    mib = iso.tmpfs_bytes // (1 << 20)
    return (
        f"wrote outside output_path: no space left (under singularity only output_path is writable and /tmp "
        f"holds {mib} MiB); write results and scratch data to output_path only"
    )


def _read_only(line: str, iso: Isolation) -> str | None:
    """The image and the inputs are read-only under singularity; only output_path takes writes."""
    m = _READ_ONLY.search(line)
    if not m:
        return None
    path = _path(m)
    if path and path.startswith(MOUNT_PREFIX):
        where = f"into a read-only input ({path})"
    elif path:
        where = f"to {path}, outside output_path"
    else:
        where = "outside output_path"
    return f"wrote {where}: the image and inputs are read-only under singularity; write results to output_path only"


def _root_only(line: str, iso: Isolation) -> str | None:
    """Singularity runs as the calling (non-root) user: files readable only by root are unreadable."""
    for m in _DENIED.finditer(line):
        path = _path(m)
        if path and not path.startswith(MOUNT_PREFIX):
            return (
                f"{path}: a file in the image is readable only by root; singularity runs as the calling user: "
                "chmod a+r it in the Dockerfile"
            )
    return None


# Checked in this order on each line, from the last line backwards; the first hit wins.
_RULES: list[Rule] = [_relative_path, _no_space, _read_only, _root_only]


def explain_failure(log_tail: str, isolation: Isolation) -> str | None:
    """A one-line cause and fix for a failed job, or None when nothing known matches."""
    lines = [ln for chunk in log_tail.splitlines() for ln in chunk.split(" | ") if ln.strip()]
    for line in reversed(lines):
        for rule in _RULES:
            hint = rule(line, isolation)
            if hint:
                return " ".join(hint.split())
    return None
