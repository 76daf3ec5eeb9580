"""Checks of the built image: files the calling (non-root) user cannot read, and the image's size.

Singularity runs the container as the user who starts it, never as root (DESIGN §3): a checkpoint or script
readable only by root raises PermissionError at the hospital although ``docker run`` (as root) works. We list
such files by running GNU ``find -readable`` in a throwaway container as that user (no network, nothing
mounted, removed afterwards); for images without ``find`` the exported filesystem is walked instead.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Iterable
from typing import IO, Any

from fedsim.errors import RuntimeUnavailable
from fedsim.submission.report import Check, failed, passed
from fedsim.submission.static import ImageCommand, image_command

GB = 1000**3
# Debian's own root-only files (shadow passwords, apt's and ldconfig's caches, root's home) are not the model's.
SYSTEM_PREFIXES = ("/etc/", "/var/", "/root", "/proc/", "/sys/", "/dev/", "/run/", "/tmp/", "/boot/", "/lost+found")
_FIND = [
    "/", "-xdev", "(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev", ")", "-prune", "-o",
    "(", "!", "-readable", "-o", "-type", "d", "!", "-executable", ")", "-print",
]  # fmt: skip
_SHOWN = 5


def _is_system(path: str) -> bool:
    return path.startswith(SYSTEM_PREFIXES) or path in {p.rstrip("/") for p in SYSTEM_PREFIXES}


def unreadable_in_tar(stream: IO[bytes], uid: int, gid: int) -> list[str]:
    """Paths of an exported filesystem (a tar stream) that ``uid:gid`` cannot read (or, for a directory, enter)."""
    found: list[str] = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if member.issym() or member.islnk():
                continue
            mode = member.mode
            if member.uid == uid:
                bits = (mode >> 6) & 7
            elif member.gid == gid:
                bits = (mode >> 3) & 7
            else:
                bits = mode & 7
            need = 5 if member.isdir() else 4
            if bits & need != need:
                found.append("/" + member.name.lstrip("./"))
    return found


class _Chunks:
    """A file-like object over an iterator of byte chunks (``container.export()``), for tarfile's stream mode."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def unreadable_files(client: Any, image: str, user: tuple[int, int], labels: dict[str, str]) -> list[str]:
    """Non-system paths of ``image`` that ``user`` cannot read; raises RuntimeUnavailable if it cannot tell."""
    import docker

    kwargs: dict[str, Any] = {
        "image": image,
        "entrypoint": ["find"],
        "command": _FIND,
        "user": f"{user[0]}:{user[1]}",
        "network_mode": "none",
        "labels": {"fedsim": "1", **labels},
        "detach": True,
    }
    container = None
    try:
        try:
            container = client.containers.run(**kwargs)
            status = container.wait(timeout=120)
            code = int(status.get("StatusCode", -1))
            out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            if code in (0, 1):  # find exits 1 when it met an unreadable directory, which we want to know about
                return [p for p in out.splitlines() if p.strip() and not _is_system(p)]
        except docker.errors.DockerException:
            pass  # no 'find' in the image (distroless, scratch): walk the exported filesystem
        if container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
        container = client.containers.create(image, entrypoint=["/fedsim-never-run"], labels=kwargs["labels"])
        paths = unreadable_in_tar(_Chunks(container.export()), *user)  # type: ignore[arg-type]
        return [p for p in paths if not _is_system(p)]
    except docker.errors.DockerException as exc:
        raise RuntimeUnavailable(f"cannot inspect the files of image {image}: {exc}") from exc
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)


def permissions_check(client: Any, image: str, user: tuple[int, int], labels: dict[str, str]) -> Check:
    paths = unreadable_files(client, image, user, labels)
    if not paths:
        return passed("image_permissions", f"every file of the image is readable by uid {user[0]}")
    shown = ", ".join(paths[:_SHOWN]) + (f" (+{len(paths) - _SHOWN} more)" if len(paths) > _SHOWN else "")
    return failed(
        "image_permissions",
        f"readable only by root: {shown}; singularity runs as the calling, non-root user (PermissionError)",
        "chmod a+rX them in the Dockerfile (e.g. RUN chmod -R a+rX /mlcube_project)",
        paths,
    )


def size_check(image_attrs: dict[str, Any], max_gb: float) -> Check:
    size = int(image_attrs.get("Size") or 0)
    text = f"{size / GB:.2f} GB"
    if size > max_gb * GB:
        return failed(
            "image_size",
            f"the image is {text}, above {max_gb:g} GB: slow to ship to every site",
            "drop build tools and caches (multi-stage build, --no-install-recommends, rm -rf /var/lib/apt/lists/*)",
        )
    return passed("image_size", text)


def config_command(image_attrs: dict[str, Any]) -> ImageCommand:
    return image_command(dict(image_attrs.get("Config") or {}))
