"""The one place fedsim spawns and kills host process trees (local and singularity runtimes).

Each task gets its own session (and so its own process group). PIDs of every descendant seen while the
task ran are remembered, so a child that calls ``setsid()`` to escape the group is still killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from fedsim.runtimes.base import ProcessHandle

KILL_AT_ONCE_BELOW_S = 1.0


def kills_at_once(grace_s: float) -> bool:
    """Whether a stop with ``grace_s`` of grace is a plain SIGKILL: below one second (a limit kill) a cube gets no
    SIGTERM it could ignore or write late on. The docker runtime's handle, whose stop grace is whole seconds, asks
    the same question."""
    return grace_s < KILL_AT_ONCE_BELOW_S


class HostProcess(ProcessHandle):
    def __init__(self, argv: list[str], *, log_path: Path, cwd: Path, env: dict[str, str]) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed in _close_log
        self.started_at = time.monotonic()
        try:
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError:
            self._log.close()
            raise
        self.pid = self._popen.pid
        self._known: dict[int, float] = {}  # pid -> create_time, to never kill a recycled PID
        self._remember(self.pid)
        self._returncode: int | None = None

    def _remember(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self._known.setdefault(pid, psutil.Process(pid).create_time())

    def _tree(self) -> list[psutil.Process]:
        procs: list[psutil.Process] = []
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            pass
        for p in procs:
            self._remember(p.pid)
        seen = {p.pid for p in procs}
        for pid, created in list(self._known.items()):  # orphans re-parented to init after their parent died
            if pid not in seen and _same_alive(pid, created):
                with contextlib.suppress(psutil.Error):
                    procs.append(psutil.Process(pid))
        return procs

    def root_pid(self) -> int | None:
        return self.pid

    def host_pids(self) -> set[int]:
        return {p.pid for p in self._tree() if _alive(p)}

    def wait(self, timeout: float | None = None) -> int | None:
        if self._returncode is not None:
            return self._returncode
        try:
            rc = self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._returncode = rc
        self._close_log()
        return rc

    def terminate(self, grace_s: float = 2.0) -> None:
        """SIGTERM, ``grace_s`` seconds, then SIGKILL to every process of the tree; below
        :data:`KILL_AT_ONCE_BELOW_S` of grace (a limit kill) SIGKILL at once (:func:`kills_at_once`)."""
        self._tree()
        if not kills_at_once(grace_s):
            self._signal_all(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and self._survivors():
                time.sleep(0.02)
        self._signal_all(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=5)
        self._returncode = self._popen.returncode
        self._close_log()

    def _survivors(self) -> list[int]:
        return [pid for pid, created in self._known.items() if _same_alive(pid, created)]

    def _signal_all(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        for pid in self._survivors():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def cleanup(self) -> None:
        if self._survivors():
            self.terminate(grace_s=0.5)
        self._close_log()

    def _close_log(self) -> None:
        if not self._log.closed:
            self._log.close()


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _same_alive(pid: int, created: float) -> bool:
    try:
        p = psutil.Process(pid)
        return p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
