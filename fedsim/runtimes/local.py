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

import dataclasses
import os
import shlex
import sys
import threading
import time
from pathlib import Path

from fedsim.cube import CubeSpec, Invocation
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes import pyenv, sandbox
from fedsim.runtimes.base import BuildProgress, Capabilities, Prepared, ProcessHandle, Runtime
from fedsim.runtimes.entrypoint import cube_image, local_command, mount_paths_command
from fedsim.runtimes.handover import hand_over, take_back
from fedsim.runtimes.imagefs import ImageMount, image_mounts
from fedsim.runtimes.layouthint import layout_hint
from fedsim.runtimes.process import HostProcess


class LocalRuntime(Runtime):
    """The plain local runtime: a cube's Python environment (:mod:`.pyenv`) but no image layout — it cannot
    bind paths, so a cube that opens a path its Dockerfile copies to (``/mlcube_project/...``) fails here."""

    name = "local"
    capabilities = Capabilities(supports_gpus=True)

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        self._envs: dict[str, pyenv.PyEnv | pyenv.EnvironmentFailed] = {}
        self._env_lock = threading.Lock()

    def containment(self, inv: Invocation) -> str:
        return "none"

    def prepare(
        self, cube: CubeSpec, base_image: str | None = None, *, progress: BuildProgress | None = None
    ) -> Prepared | None:
        """Build the cube's Python environment when its requirements need one (None: fedsim's Python does)."""
        env = self.environment(cube, build=True, progress=progress)
        if env.root is None:
            return None
        return Prepared(f"python env {env.root.name}", env.action)

    def environment(self, cube: CubeSpec, *, build: bool = False, progress: BuildProgress | None = None) -> pyenv.PyEnv:
        """The Python ``cube`` runs with: built once per runtime (``build``), else a finished cached one, else
        this runtime's interpreter. A failed build raises its one-line error again for every job."""
        key = str(cube.root)
        with self._env_lock:
            known = self._envs.get(key)
            if isinstance(known, pyenv.EnvironmentFailed):
                raise known
            if known is not None:
                return known
            req = pyenv.cube_requirements(cube)
            if not build:
                env = pyenv.cached_env(req, python=self.python)
                return env if env is not None else pyenv.PyEnv(self.python)  # not built yet: prepare builds it
            shown = f"python env of {cube.name}"
            try:
                env = pyenv.ensure_env(
                    cube, req, python=self.python, progress=(lambda ln: progress(shown, ln)) if progress else None
                )
            except pyenv.EnvironmentFailed as exc:
                self._envs[key] = exc
                raise
            self._envs[key] = env
            return env

    def failure_hint(self, inv: Invocation, log_text: str) -> str | None:
        """A module the cube's environment lacks; a path only its image has (made by RUN, or bound only by the
        sandbox)."""
        python = self.environment(inv.cube).python
        return layout_hint(inv, log_text, python=python, sandboxed=self.containment(inv) != "none")

    def argv(self, inv: Invocation) -> list[str]:
        python = self.environment(inv.cube).python
        if inv.mount_paths:  # only the sandbox runs these (the policy): container paths, the image's command
            return list(mount_paths_command(inv.cube, inv.task, python=python).argv)
        cmd = local_command(inv.cube, inv.task, python=python)  # RuntimeUnavailable when ambiguous
        args = inv.host_args() if cmd.passes_args else []  # a one-word task entrypoint gets none, as under docker
        return [*cmd.head, *([inv.task] if cmd.passes_task else []), *args]

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
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as fh:  # the command first, as docker, singularity, bwrap do
            fh.write("$ " + shlex.join(argv) + "\n")
        try:
            return HostProcess(argv, log_path=log_path, cwd=workdir, env=env)
        except OSError as exc:
            raise RuntimeUnavailable(f"cannot start {argv[0]}: {exc.strerror}") from exc


class SandboxedLocalRuntime(LocalRuntime):
    """The local runtime inside bubblewrap; refuses to exist where :func:`sandbox.probe` fails."""

    capabilities = Capabilities(
        isolates_filesystem=True, isolates_network=True, supports_gpus=True, containment="bwrap", mounts_at_paths=True
    )

    def __init__(self, python: str | None = None) -> None:
        super().__init__(python)
        found = sandbox.probe()
        if not found.ok:
            fix = f"; fix: {found.fix}" if found.fix else ""
            raise RuntimeUnavailable(f"the local sandbox cannot run: {found.reason}{fix}")
        self.probe = found

    def containment(self, inv: Invocation) -> str:
        return "bwrap"

    def sandbox_binary(self) -> str | None:
        return self.probe.binary.label if self.probe.binary is not None else self.probe.bwrap

    def argv(self, inv: Invocation) -> list[str]:
        """The command line as a job would run it (with the caller's uid where a job gets a leased one)."""
        lease = sandbox.UidLease(os.getuid(), os.getgid())
        policy = self._policy(inv, lease)
        return sandbox.bwrap_argv(inv, super().argv(inv), policy)

    def _policy(self, inv: Invocation, lease: sandbox.UidLease) -> sandbox.SandboxPolicy:
        """The host's policy plus the image's file layout and the cube's Python environment, read-only."""
        policy = sandbox.host_policy(self.probe, lease, inv, inv.isolation.pids_limit)
        env = self.environment(inv.cube)
        layout = policy.layout
        if env.root is not None:
            layout = dataclasses.replace(layout, runtime_paths=(*layout.runtime_paths, str(env.root)))
        image = cube_image(inv.cube)
        mounts: tuple[ImageMount, ...] = ()
        if image is not None:
            avoid = [str(p.host_path) for p in inv.parameters] + list(policy.hidden)
            mounts = image_mounts(image.layout, avoid=avoid)
        workdir = mount_paths_command(inv.cube, inv.task).workdir if inv.mount_paths else "/"
        return dataclasses.replace(policy, layout=layout, image=mounts, workdir=workdir)

    def launch(self, inv: Invocation, log_path: Path, workdir: Path) -> ProcessHandle:
        command = super().command(inv)
        try:
            lease = sandbox.UidLease.acquire()
        except OSError as exc:
            raise RuntimeUnavailable(f"no sandbox uid free: {exc.strerror}") from exc
        policy = self._policy(inv, lease)
        argv = sandbox.bwrap_argv(inv, command, policy)
        env = sandbox.sandbox_env(inv, os.environ, policy, self.environment(inv.cube).python)
        handed = hand_over(inv, (lease.uid, lease.gid))
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
            take_back(handed)
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
        """:meth:`HostProcess.terminate`, then wait for the tree to be gone: killing the sandbox's init takes its
        whole PID namespace, asynchronously."""
        super().terminate(grace_s)
        gone_by = time.monotonic() + 5  # as a container's stop: return once the whole tree is gone
        while self._survivors() and time.monotonic() < gone_by:
            time.sleep(0.01)

    def cleanup(self) -> None:
        super().cleanup()
        if self._returned:
            return
        self._returned = True
        sandbox.strip_privileged_bits(self._outputs)
        take_back(self._handed)
        self._lease.release()
