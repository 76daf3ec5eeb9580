"""Find and kill what a dead fedsim left running: containers by label, host processes by job token.

Every job's processes carry ``FEDSIM_JOB_TOKEN=<run-id>:<job>`` in their environment (inherited by
children, also by those that detach into their own session), and every container the ``fedsim.run`` label;
a resumed run kills both before it starts anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

import psutil

from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes import engine

TOKEN_VAR = "FEDSIM_JOB_TOKEN"
log = logging.getLogger("fedsim.runtimes")


def job_token(run_id: str, job_key: str) -> str:
    return f"{run_id}:{job_key}"


def orphan_processes(run_id: str) -> list[psutil.Process]:
    prefix = f"{TOKEN_VAR}={run_id}:".encode()
    me = os.getpid()
    found: list[psutil.Process] = []
    for pid in psutil.pids():
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if prefix in env:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
    return found


def kill_orphans(run_id: str) -> tuple[int, int]:
    """Kill the run's leftover host processes and containers; returns (processes, containers) killed."""
    procs = orphan_processes(run_id)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=5)
    containers = 0
    from fedsim.runtimes.select import docker_available

    if docker_available():
        import docker

        try:
            with contextlib.closing(engine.docker_client(engine.SWEEP_TIMEOUT_S)) as client:
                for c in client.containers.list(all=True, filters={"label": f"fedsim.run={run_id}"}):
                    with contextlib.suppress(docker.errors.DockerException):
                        c.remove(force=True)
                        containers += 1
        except (RuntimeUnavailable, docker.errors.DockerException) as exc:
            log.warning("could not look for leftover containers of run %s: %s", run_id, exc)
    return len(procs), containers
