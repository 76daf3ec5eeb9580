"""One live fedsim per run directory: an exclusive ``flock`` on ``<run>/run.lock``, held for the run's life.

The lock belongs to an open file description that only the run's process holds (Python's descriptors are not
inherited by the job processes it starts), so the kernel drops it when that process ends in any way — normal
exit, crash or SIGKILL: a dead run never blocks its resume, and a live run is never resumed, overwritten or
stripped of its containers by a second command. While held, the file says who holds it (pid, host, start
time) so that a refused command can name the holder. The file itself stays; it is the lock, not its content,
that counts.

Run ids name a directory inside ``--runs-dir`` and nothing else: :func:`check_run_id` refuses paths,
``..`` and names that could be taken for options or hidden files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fedsim.errors import BadRunId, RunExists, RunInUse, StoreError

LOCK_FILE = "run.lock"
MAX_RUN_ID = 128
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_run_id(run_id: str | None, option: str = "--run-id") -> str:
    """``run_id`` when it is a plain directory name: letters, digits, ``.``, ``_``, ``-``, starting with a
    letter or digit, no ``..``, at most 128 characters; else :class:`BadRunId` (exit 2)."""
    value = run_id or ""
    if len(value) <= MAX_RUN_ID and _RUN_ID.fullmatch(value) and ".." not in value:
        return value
    raise BadRunId(
        f"{option} {value!r} is not a valid run id: use letters, digits, '.', '_' and '-', starting with a letter "
        f"or digit (no path separators, no '..', at most {MAX_RUN_ID} characters); it names a directory in --runs-dir"
    )


@dataclass(frozen=True)
class Holder:
    """Who holds a run's lock, as its holder wrote it."""

    pid: int | None = None
    host: str | None = None
    started_at: float | None = None

    def describe(self) -> str:
        if self.pid is None:
            return "another fedsim process (it has not said which yet)"
        text = f"pid {self.pid} on host {self.host or '?'}"
        if self.started_at is not None:
            stamp = time.localtime(self.started_at)
            same_day = time.strftime("%Y%m%d", stamp) == time.strftime("%Y%m%d")
            text += " since " + time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", stamp)
        return text


def read_holder(path: Path) -> Holder:
    """What the lock file at ``path`` says about its holder (empty while the holder is still writing it)."""
    for attempt in range(5):
        try:
            data = json.loads(path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            pid, host, started = data.get("pid"), data.get("host"), data.get("started_at")
            return Holder(
                pid if isinstance(pid, int) else None,
                host if isinstance(host, str) else None,
                float(started) if isinstance(started, int | float) else None,
            )
        if attempt < 4:
            time.sleep(0.05)  # acquired a moment ago: the holder writes its name right after locking
    return Holder()


class RunLock:
    """The held lock of one run directory; :meth:`release` (or process death) gives it up."""

    def __init__(self, root: Path, fd: int) -> None:
        self.root = root
        self.path = root / LOCK_FILE
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, root: Path) -> RunLock:
        """Lock ``root`` (which must exist) or raise :class:`RunInUse` naming the live holder."""
        path = root / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the run lock {path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = read_holder(path).describe()
                raise RunInUse(f"run {root.name} is in use by {holder} (wait for it to finish, or stop it)") from None
            raise StoreError(f"cannot lock the run directory {root}: {exc.strerror or exc}") from exc
        lock = cls(root, fd)
        try:
            lock._write_holder()
        except OSError as exc:
            lock.release()
            raise StoreError(f"cannot write the run lock {path}: {exc.strerror or exc}") from exc
        return lock

    def _write_holder(self) -> None:
        assert self._fd is not None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": time.time(),
            "argv": sys.argv[1:],
        }
        data = (json.dumps(info) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up (idempotent); the file stays, emptied, for the next holder."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor of the open file description drops the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _has_content(root: Path) -> bool:
    try:
        return any(p.name != LOCK_FILE for p in root.iterdir())
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot read the run directory {root}: {exc.strerror or exc}") from exc


def _exists_refusal(root: Path, runs_dir: Path) -> RunExists:
    run_id = root.name
    return RunExists(
        f"run {run_id} already exists in {runs_dir}; continue it with --resume {run_id}, or pick another --run-id"
    )


def claim_run(root: Path, *, resume: bool, runs_dir: Path | None = None) -> RunLock:
    """Lock the run directory ``root`` for this process.

    A new run creates the directory and must find it empty (nothing but a lock file left by a run that
    stopped before writing anything): an existing run is :class:`RunExists` (exit 2). A resumed run's
    directory must exist. Either way a live holder is :class:`RunInUse` (exit 1), checked first.
    """
    if resume:
        if not root.is_dir():
            raise StoreError(f"no run {root.name!r} to resume in {runs_dir or root.parent}")
    else:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create run directory {root}: {exc.strerror or exc}") from exc
    lock = RunLock.acquire(root)
    if not resume and _has_content(root):
        lock.release()
        raise _exists_refusal(root, runs_dir or root.parent)
    return lock


__all__ = ["LOCK_FILE", "Holder", "RunLock", "check_run_id", "claim_run", "read_holder"]
