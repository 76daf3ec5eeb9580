"""The image's file layout as read-only mounts: build-context files at the container paths a Dockerfile copies
them to, for the local sandbox (which has no image).

:func:`image_mounts` merges a :class:`~fedsim.cube.dockerfile.ImageLayout` as docker's layers would — a later
copy wins over an earlier one at the same path, and a directory copied onto another merges with it — into
the fewest mounts that show exactly that: whole directories bound where nothing overlaps them, and, where
something does, a fresh directory holding binds of its entries. No mount point is ever created inside a
host directory (bwrap would create it on the host), no mount lands in the system directories the sandbox
takes from the host (``/usr``, ``/etc``, ...), and no bound directory holds a path in ``avoid`` (a job's
data, the data cache): such a directory is split into its entries, leaving that path out.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fedsim.cube.dockerfile import SYSTEM_PREFIXES, ImageLayout

MAX_SPLIT_ENTRIES = 4096  # a directory split into more entries than this is left out instead (a huge context)


@dataclass(frozen=True)
class ImageMount:
    """``host`` appears read-only at ``dest``; ``host`` None: an empty read-only directory (a parent of mounts)."""

    dest: str
    host: str | None


@dataclass
class _Node:
    host: Path | None = None  # bound as a whole
    children: dict[str, _Node] = field(default_factory=dict)  # a made directory (host None)


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _split(node: _Node) -> None:
    """A bound directory becomes a made one holding a bind of each entry."""
    host = node.host
    node.host = None
    if host is None or not host.is_dir():
        return
    try:
        names = sorted(os.listdir(host))
    except OSError:
        names = []
    if len(names) > MAX_SPLIT_ENTRIES:
        names = []
    # a symlink is never a mount source (bwrap would follow it on the host, out of the context): left out
    node.children = {n: _Node(host / n) for n in names if not (host / n).is_symlink()}


def _put(root: _Node, dest: str, host: Path) -> None:
    parts = [p for p in dest.split("/") if p]
    node = root
    for part in parts:
        if node.host is not None:
            _split(node)  # something lands inside a bound directory: list it instead
        node = node.children.setdefault(part, _Node())
    if host.is_dir() and (node.host is not None or node.children) and not _covers(host, node):
        if node.host is not None:
            if not node.host.is_dir():  # a file replaced by a directory
                node.host, node.children = host, {}
                return
            _split(node)
        try:
            names = sorted(os.listdir(host))
        except OSError:
            names = []
        for name in names:  # a directory copied onto another: merged, entry by entry
            if not (host / name).is_symlink():
                _put(node, name, host / name)
        return
    node.host, node.children = host, {}


def _covers(host: Path, node: _Node, budget: list[int] | None = None) -> bool:
    """Whether copying directory ``host`` onto ``node`` replaces everything there (every path it has, host has
    too): then one bind of ``host`` shows the merge exactly."""
    budget = budget if budget is not None else [MAX_SPLIT_ENTRIES]
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if node.host is not None:
        if not node.host.is_dir():
            return True  # a file (or a directory copied over a file): the directory replaces it
        try:
            names = os.listdir(node.host)
        except OSError:
            return False
        inner = {n: _Node(node.host / n) for n in names}
    else:
        inner = node.children
    for name, child in inner.items():
        target = host / name
        if not (target.exists() or target.is_symlink()):
            return False
        if target.is_dir() and not _covers(target, child, budget):
            return False
    return True


def _prune(node: _Node, avoid: Sequence[str]) -> bool:
    """Split binds that would expose an avoided path; False when the node itself must go."""
    if node.host is not None:
        real = os.path.realpath(node.host)
        if _under(real, avoid):
            return False
        if any(_under(a, (real,)) for a in avoid):
            _split(node)
        else:
            return True
    for name in list(node.children):
        if not _prune(node.children[name], avoid):
            del node.children[name]
    return True


def _emit(node: _Node, dest: str, out: list[ImageMount]) -> None:
    if node.host is not None:
        out.append(ImageMount(dest, str(node.host)))
        return
    if dest != "/":
        out.append(ImageMount(dest, None))
    for name in sorted(node.children):
        _emit(node.children[name], posixpath.join(dest, name), out)


def image_mounts(
    layout: ImageLayout, *, avoid: Sequence[str] = (), reserved: Sequence[str] = SYSTEM_PREFIXES
) -> tuple[ImageMount, ...]:
    """The mounts that reproduce ``layout``, parents first; destinations under ``reserved`` are left out."""
    root = _Node()
    for entry in layout.entries:
        dest = posixpath.normpath(entry.dest)
        if dest == "/":
            try:
                names = sorted(os.listdir(entry.host)) if entry.host.is_dir() else []
            except OSError:
                names = []
            for name in names:
                if not _under("/" + name, reserved):
                    _put(root, "/" + name, entry.host / name)
            continue
        if _under(dest, reserved):
            continue
        _put(root, dest, entry.host)
    avoid_real = [os.path.realpath(a) for a in avoid]
    _prune(root, avoid_real)
    out: list[ImageMount] = []
    _emit(root, "/", out)
    return tuple(out)


__all__ = ["ImageMount", "image_mounts"]
