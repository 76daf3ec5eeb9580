"""Checks of the built image: files the calling (non-root) user cannot read, and the image's size.

Singularity runs the container as the user who starts it, never as root (docs/fets-contract.md): a checkpoint or script
readable only by root raises PermissionError at the hospital although ``docker run`` (as root) works. We list
such files by running GNU ``find -readable`` in a throwaway container as that user; for images without a
usable ``find`` the exported filesystem is walked instead. Symlinks are judged by what they name (at its own
path), so a link into a system directory is ignored wherever it is reached from.

The ``find`` that runs is the submission's own (its image decides what ``find`` is), so the scan container
gets the hardening of ``infer`` — no network, no capabilities, no new privileges, a non-root user, a memory and
a PID limit, a read-only image with a small ``/tmp``, nothing mounted — and its own short deadline
(:data:`SCAN_TIMEOUT_S`); a scan that runs past it fails the check. Only an image without a usable GNU ``find``
falls back to the walk: any other engine error is raised (the check cannot tell), never read as "no find".
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Iterable
from typing import IO, Any

from fedsim.errors import RuntimeUnavailable
from fedsim.spec.models import DEFAULT_MAX_PIDS
from fedsim.submission.report import Check, failed, passed
from fedsim.submission.static import ImageCommand, image_command

GB = 1000**3
# Debian's own root-only files (shadow passwords, apt's and ldconfig's caches, root's home) are not the model's.
SYSTEM_PREFIXES = ("/etc/", "/var/", "/root", "/proc/", "/sys/", "/dev/", "/run/", "/tmp/", "/boot/", "/lost+found")
_FIND = [
    "/", "-xdev", "(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev", ")", "-prune", "-o",
    "!", "-type", "l", "(", "!", "-readable", "-o", "-type", "d", "!", "-executable", ")", "-print",
]  # fmt: skip
# A symlink is never listed itself: what it names is, at its own path, which the walk reaches too — so a link
# into a system path (Debian's /usr/lib/ssl/private -> /etc/ssl/private, root-only) is a system path, and a
# dangling link is no permission problem. (`-readable` on a link tests its target: it listed such links.)
_SHOWN = 5
SCAN_TIMEOUT_S = 60.0  # a find over a multi-GB image takes seconds; a hostile "find" gets no longer
SCAN_RAM_BYTES = 512 * 1024**2
SCAN_TMPFS_BYTES = 16 * 1024**2
# what the engine says when the entrypoint does not exist in the image (runc, crun)
_NO_FIND = ("executable file not found", "no such file or directory", "not found in $path")


class ScanTimeout(RuntimeUnavailable):
    """The image's ``find`` ran past :data:`SCAN_TIMEOUT_S`."""


def scan_config(image: str, user: tuple[int, int], labels: dict[str, str]) -> dict[str, Any]:
    """Keyword arguments of the scan container (``containers.create``): the hardening profile of an untrusted
    ``infer`` (see :func:`fedsim.runtimes.docker.container_config`); pure, so it is unit-tested."""
    return {
        "image": image,
        "entrypoint": ["find"],
        "command": _FIND,
        "user": f"{user[0]}:{user[1]}",
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": DEFAULT_MAX_PIDS,
        "mem_limit": SCAN_RAM_BYTES,
        "memswap_limit": SCAN_RAM_BYTES,
        "nano_cpus": int(1e9),
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,noexec,size={SCAN_TMPFS_BYTES},mode=1777"},
        "init": True,
        "log_config": {"type": "json-file", "config": {"max-size": "20m", "max-file": "1"}},
        "labels": {"fedsim": "1", **labels},
        "detach": True,
    }


def _no_find(exc: Exception) -> bool:
    text = str(getattr(exc, "explanation", None) or exc).lower()
    return any(marker in text for marker in _NO_FIND)


def _find_was_usable(code: int, stderr: str) -> bool:
    """GNU find exits 0, or 1 having met unreadable directories (each reported as 'Permission denied');
    anything else (busybox's find rejecting ``-readable``, a crash) means it could not scan."""
    if code == 0:
        return True
    if code != 1:
        return False
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return all("Permission denied" in ln for ln in lines)


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
    """Non-system paths of ``image`` that ``user`` cannot read.

    Raises :class:`ScanTimeout` when the image's ``find`` runs past its deadline, and
    :class:`RuntimeUnavailable` when the engine fails in any other way (the scan cannot tell).
    """
    import docker

    cfg = scan_config(image, user, labels)
    container = None
    try:
        try:
            container = client.containers.create(**{k: v for k, v in cfg.items() if k != "detach"})
            container.start()
        except docker.errors.DockerException as exc:
            if not _no_find(exc):
                raise
            usable = False  # no 'find' in the image (distroless, scratch): walk the exported filesystem
        else:
            try:
                status = container.wait(timeout=SCAN_TIMEOUT_S)
            except docker.errors.DockerException:
                raise
            except Exception as exc:  # the HTTP read timed out: the deadline (requests' ReadTimeout, ConnectionError)
                with contextlib.suppress(docker.errors.DockerException):
                    container.kill()
                raise ScanTimeout(
                    f"the permission scan (the image's own find) ran past its {SCAN_TIMEOUT_S:.0f} s deadline"
                ) from exc
            code = int(status.get("StatusCode", -1))
            out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            err = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
            usable = _find_was_usable(code, err)
            if usable:
                return [p for p in out.splitlines() if p.strip() and not _is_system(p)]
        if container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
            container = None
        container = client.containers.create(image, entrypoint=["/fedsim-never-run"], labels=cfg["labels"])
        paths = unreadable_in_tar(_Chunks(container.export()), *user)  # type: ignore[arg-type]
        return [p for p in paths if not _is_system(p)]
    except docker.errors.DockerException as exc:
        raise RuntimeUnavailable(f"cannot inspect the files of image {image}: {exc}") from exc
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)


def permissions_check(client: Any, image: str, user: tuple[int, int], labels: dict[str, str]) -> Check:
    try:
        paths = unreadable_files(client, image, user, labels)
    except ScanTimeout as exc:
        return failed(
            "image_permissions",
            str(exc),
            "ship a standard GNU find (or none), and keep the image's filesystem to what the model needs",
        )
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
