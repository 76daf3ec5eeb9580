"""Host-path translation for bind mounts when fedsim itself runs in a container (the orchestrator image).

The Docker engine resolves a bind mount's source on the **host**. When fedsim talks to the host's engine
through ``/var/run/docker.sock`` from inside a container, its own paths (``/work/runs/...``) must be
translated to the host paths behind them before they become mount sources of sibling containers.

Sources of the mapping, first match wins:

1. ``FEDSIM_HOST_ROOT``: one or more ``HOST:CONTAINER`` pairs separated by ``,`` — the same text as the
   orchestrator's ``docker run -v HOST:CONTAINER`` — e.g. ``FEDSIM_HOST_ROOT=/srv/fedsim:/work``. The value
   ``none`` turns translation off.
2. Discovery, when fedsim runs in a container and the variable is unset: the engine is asked for this
   container's own ``Mounts`` (its id from ``/proc/self/mountinfo`` or the hostname).
3. Otherwise no translation (fedsim runs on the host, or the directories are mounted at the same path).

The longest container prefix wins. With a mapping in force, a path under no mounted prefix lives only in the
orchestrator's own filesystem, where no sibling container can see it: that is an error naming the path.
Everything except :func:`discover_mounts` is pure.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fedsim.errors import RuntimeUnavailable, SpecError

ENV = "FEDSIM_HOST_ROOT"


@dataclass(frozen=True)
class PathMapping:
    host: PurePosixPath
    container: PurePosixPath


def _absolute(text: str, what: str) -> PurePosixPath:
    path = PurePosixPath(text.strip())
    if not path.is_absolute():
        raise SpecError(f"{ENV}: {what} {text!r} is not absolute; write HOST:CONTAINER pairs", field=ENV)
    return PurePosixPath(os.path.normpath(str(path)))


def parse_host_root(value: str) -> tuple[PathMapping, ...]:
    """``"/srv/a:/work, /srv/b:/data"`` → mappings; ``""`` or ``"none"`` → no mapping."""
    value = value.strip()
    if not value or value.lower() == "none":
        return ()
    out: list[PathMapping] = []
    for item in filter(None, (p.strip() for p in value.split(","))):
        host, sep, container = item.partition(":")
        if not sep or not host or not container or ":" in container:
            raise SpecError(
                f"{ENV}: {item!r} is not HOST:CONTAINER (e.g. {ENV}=/srv/fedsim:/work, as given to docker run -v)",
                field=ENV,
            )
        out.append(PathMapping(_absolute(host, "host path"), _absolute(container, "container path")))
    return tuple(out)


def mappings_from_mounts(mounts: Iterable[Mapping[str, Any]]) -> tuple[PathMapping, ...]:
    """A container's ``docker inspect`` ``Mounts`` list → mappings (binds and volumes; the socket is skipped)."""
    out: list[PathMapping] = []
    for m in mounts:
        src, dst = m.get("Source"), m.get("Destination")
        if m.get("Type", "bind") not in {"bind", "volume"} or not src or not dst:
            continue
        if dst == "/var/run/docker.sock":
            continue
        out.append(PathMapping(PurePosixPath(src), PurePosixPath(dst)))
    return tuple(out)


@dataclass(frozen=True)
class HostPaths:
    """Translate this process's paths to the Docker host's; identity when ``mappings`` is empty."""

    mappings: tuple[PathMapping, ...] = ()
    origin: str = "none"

    def to_host(self, path: str | Path) -> str:
        if not self.mappings:
            return str(path)
        p = PurePosixPath(os.path.normpath(str(path)))
        best: PathMapping | None = None
        for m in self.mappings:
            if (p == m.container or m.container in p.parents) and (
                best is None or len(m.container.parts) > len(best.container.parts)
            ):
                best = m
        if best is None:
            known = ", ".join(f"{m.host}:{m.container}" for m in self.mappings)
            raise RuntimeUnavailable(
                f"{p} is not under any directory mounted from the Docker host ({self.origin}: {known}); "
                "sibling containers cannot see it — mount it into the orchestrator or move it under a mount"
            )
        return str(best.host / p.relative_to(best.container))


_CONTAINER_ID = re.compile(r"/(?:docker/)?containers/([0-9a-f]{64})/")


def own_container_id(mountinfo: str, hostname: str) -> str | None:
    """This container's id from ``/proc/self/mountinfo`` (its hostname/hosts files), else the hostname."""
    found = _CONTAINER_ID.search(mountinfo)
    if found:
        return found.group(1)
    return hostname or None


def in_container(root: Path = Path("/")) -> bool:
    return (root / ".dockerenv").exists()


def discover_mounts(client: Any) -> tuple[PathMapping, ...]:
    """Ask the engine for this container's own mounts (empty when fedsim is not in a container)."""
    if not in_container():
        return ()
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        mountinfo = ""
    hostname = socket.gethostname()
    cid = own_container_id(mountinfo, hostname)
    if cid is None:
        return ()
    try:
        attrs = client.api.inspect_container(cid)
    except Exception:  # not our engine's container (e.g. a nested engine, a custom hostname): no discovery
        return ()
    if (attrs.get("Config") or {}).get("Hostname") != hostname:
        return ()  # a sibling that happens to be called like our hostname
    return mappings_from_mounts(attrs.get("Mounts") or [])


def host_paths(client: Any, environ: Mapping[str, str] | None = None) -> HostPaths:
    """The translation in force for a Docker client: ``FEDSIM_HOST_ROOT``, else discovery, else identity."""
    env = os.environ if environ is None else environ
    if ENV in env:
        return HostPaths(parse_host_root(env[ENV]), origin=ENV)
    found = discover_mounts(client)
    return HostPaths(found, origin="the orchestrator container's mounts") if found else HostPaths()


__all__ = [
    "ENV",
    "HostPaths",
    "PathMapping",
    "discover_mounts",
    "host_paths",
    "mappings_from_mounts",
    "own_container_id",
    "parse_host_root",
]
