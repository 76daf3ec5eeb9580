"""Output hand-over between the invoking user and a job's own uid.

A container (docker ``user``) or a sandbox (a leased uid) runs as a user other than the one running fedsim, and
can write into host output locations only if that user owns them; afterwards the invoking user must own what
was written, or it could not read, move or delete its own run directory. Both runtimes use this one module.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from fedsim.cube import Invocation

Handed = list[tuple[Path, bool]]  # (path, whether the whole tree is the job's)


def hand_over(inv: Invocation, user: tuple[int, int]) -> Handed:
    """Make output locations writable by the container's user; returns what to take back afterwards."""
    if (os.getuid(), os.getgid()) == user:
        return []
    handed: Handed = []
    for p in inv.parameters:
        if p.io != "output":
            continue
        if inv.mount_paths and p.type == "file":
            target = p.host_path  # mounted by itself (created and touched before the run): the file is handed
        else:
            target = p.host_path if p.type == "directory" else p.host_path.parent
            target.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chown(target, *user)
            handed.append((target, p.type == "directory"))
    if inv.scratch_dir is not None:  # the container's /tmp
        inv.scratch_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chown(inv.scratch_dir, *user)
            handed.append((inv.scratch_dir, True))
    return handed


def take_back(handed: Handed) -> None:
    """Give every output back to the invoking user (recursively for output directories)."""
    uid, gid = os.getuid(), os.getgid()
    for path, recursive in handed:
        with contextlib.suppress(OSError):
            os.chown(path, uid, gid)
        if not recursive:
            for child in path.iterdir() if path.is_dir() else []:
                if child.is_file() and not child.is_symlink():
                    with contextlib.suppress(OSError):
                        os.chown(child, uid, gid)
            continue
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                with contextlib.suppress(OSError):
                    os.lchown(os.path.join(root, name), uid, gid)


__all__ = ["Handed", "hand_over", "take_back"]
