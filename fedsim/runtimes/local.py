"""Run a cube's code directly on the host, without containers — plainly, or inside a bubblewrap sandbox.

Default command: ``<python> <build_context>/mlcube.py TASK --param=/host/path ...`` — the layout every FeTS
cube uses — or the cube's explicit ``local: {entrypoint: ...}``; else the task's ``entrypoint`` or the
Dockerfile's ENTRYPOINT with its container paths mapped back to the build context (:mod:`.entrypoint`).
``python3`` means the interpreter running fedsim, so the reference cubes find the ``fedsim`` package they
import.

:class:`LocalRuntime` gives no isolation: it is for trusted cubes and for a participant's own cube.
:class:`SandboxedLocalRuntime` runs the very same command line inside ``bwrap`` (:mod:`fedsim.runtimes.sandbox`):
no network, no view of anything but the cube's code, its inputs (read-only) and its outputs, never root, a
process limit. :mod:`fedsim.runtimes.select` decides which one a job gets.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from fedsim.cube import Invocation
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes import sandbox
from fedsim.runtimes.base import Capabilities, ProcessHandle, Runtime
from fedsim.runtimes.entrypoint import local_command
from fedsim.runtimes.process import HostProcess


class LocalRuntime(Runtime):
    name = "local"
    capabilities = Capabilities(supports_gpus=True)

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def containment(self, inv: Invocation) -> str:
        return "none"

    def argv(self, inv: Invocation) -> list[str]:
        cmd = local_command(inv.cube, inv.task, python=self.python)  # RuntimeUnavailable when ambiguous
        return [*cmd.head, *([inv.task] if cmd.passes_task else []), *inv.host_args()]

    def command(self, inv: Invocation) -> list[str]:
        """The plain host command (:meth:`LocalRuntime.argv`, never a subclass's wrapped one)."""
        return LocalRuntime.argv(self, inv)

    def launch(self, inv: Invocation, log_path: Path, workdir: Path) -> ProcessHandle:
        argv = self.command(inv)
        env = dict(os.environ)
        env.update(inv.env)
        env["PYTHONUNBUFFERED"] = "1"
        if inv.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(inv.gpu_ids)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            return HostProcess(argv, log_path=log_path, cwd=workdir, env=env)
        except OSError as exc:
            raise RuntimeUnavailable(f"cannot start {argv[0]}: {exc.strerror}") from exc


class SandboxedLocalRuntime(LocalRuntime):
    """The local runtime inside bubblewrap; refuses to exist where :func:`sandbox.probe` fails."""

    capabilities = Capabilities(isolates_filesystem=True, isolates_network=True, supports_gpus=True)

    def __init__(self, python: str | None = None) -> None:
        super().__init__(python)
        found = sandbox.probe()
        if not found.ok:
            raise RuntimeUnavailable(f"the local sandbox cannot run: {found.reason}")
        self.probe = found

    def containment(self, inv: Invocation) -> str:
        return "bwrap"

    def argv(self, inv: Invocation) -> list[str]:
        """The command line as a job would run it (with the caller's uid where a job gets a leased one)."""
        lease = sandbox.UidLease(os.getuid(), os.getgid())
        policy = sandbox.host_policy(self.probe, lease, inv, inv.isolation.pids_limit)
        return sandbox.bwrap_argv(inv, super().argv(inv), policy)

    def launch(self, inv: Invocation, log_path: Path, workdir: Path) -> ProcessHandle:
        from fedsim.runtimes.docker import _hand_over, _take_back  # the docker runtime's output hand-over

        command = super().command(inv)
        try:
            lease = sandbox.UidLease.acquire()
        except OSError as exc:
            raise RuntimeUnavailable(f"no sandbox uid free: {exc.strerror}") from exc
        policy = sandbox.host_policy(self.probe, lease, inv, inv.isolation.pids_limit)
        argv = sandbox.bwrap_argv(inv, command, policy)
        env = sandbox.sandbox_env(inv, os.environ, policy, self.python)
        handed = _hand_over(inv, (lease.uid, lease.gid))
        outputs = [
            p.host_path if p.type == "directory" else p.host_path.parent for p in inv.parameters if p.io != "input"
        ]
        workdir.mkdir(parents=True, exist_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write("$ " + shlex.join(argv) + "\n")
        try:
            return SandboxProcess(
                argv, log_path=log_path, cwd=workdir, env=env, lease=lease, handed=handed, outputs=outputs
            )
        except OSError as exc:
            sandbox.strip_privileged_bits(outputs)
            _take_back(handed)
            lease.release()
            raise RuntimeUnavailable(f"cannot start {argv[0]}: {exc.strerror}") from exc


class SandboxProcess(HostProcess):
    """A sandboxed job: after it ended, outputs lose setuid/setgid bits and go back to the invoking user,
    and the job's uid is released."""

    def __init__(
        self,
        argv: list[str],
        *,
        log_path: Path,
        cwd: Path,
        env: dict[str, str],
        lease: sandbox.UidLease,
        handed: list[tuple[Path, bool]],
        outputs: list[Path],
    ) -> None:
        self._lease = lease
        self._handed = handed
        self._outputs = outputs
        self._returned = False
        super().__init__(argv, log_path=log_path, cwd=cwd, env=env)

    def terminate(self, grace_s: float = 2.0) -> None:
        """As docker's runtime does: below one second of grace a limit kill is a plain SIGKILL, so a cube
        never sees a SIGTERM it could ignore; killing the sandbox's init takes its whole PID namespace."""
        if grace_s >= 1:
            super().terminate(grace_s)
        else:
            self._tree()
            self._signal_all(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=5)
            self._returncode = self._popen.returncode
            self._close_log()
        gone_by = time.monotonic() + 5  # as a container's stop: return once the whole tree is gone
        while self._survivors() and time.monotonic() < gone_by:
            time.sleep(0.01)

    def cleanup(self) -> None:
        super().cleanup()
        if self._returned:
            return
        self._returned = True
        from fedsim.runtimes.docker import _take_back

        sandbox.strip_privileged_bits(self._outputs)
        _take_back(self._handed)
        self._lease.release()
