"""fedsim's hardening of a docker container, on top of what the cube's own convention asks for (MLCube's or
MedPerf's). One place, so both conventions hold a submission the same way; the departures it makes from each
runner are listed in ``docs/mlcube-compatibility.md`` and ``docs/medperf-container-format.md``."""

from __future__ import annotations

import os
from typing import Any

from fedsim.cube import Isolation

FIDELITY_HOME = "/home/fedsim-nohome"


def limit_memory(cfg: dict[str, Any], iso: Isolation) -> None:
    """The site's RAM as the container's memory, swap included (every container, trusted or not)."""
    if iso.ram_bytes:
        cfg["mem_limit"] = iso.ram_bytes
        cfg["memswap_limit"] = iso.ram_bytes


def harden(cfg: dict[str, Any], iso: Isolation, *, tmpfs: bool = True) -> None:
    """A submission: no network, no capabilities, no new privileges, a PID limit, a read-only image, a bounded
    engine log, the site's CPUs; ``tmpfs``: a ``/tmp`` in memory (False where a host folder is mounted there)."""
    cfg["network_mode"] = "none"
    cfg["cap_drop"] = ["ALL"]
    cfg["security_opt"] = ["no-new-privileges"]
    cfg["pids_limit"] = iso.pids_limit
    # no unbounded writable layer: the image is read-only and /tmp is a tmpfs charged to the memory cgroup
    cfg["read_only"] = True
    # no unbounded engine-side log either (the job log fedsim streams is capped separately)
    cfg["log_config"] = {"type": "json-file", "config": {"max-size": "20m", "max-file": "1"}}
    if iso.cpus:
        cfg["nano_cpus"] = int(min(iso.cpus, os.cpu_count() or 1) * 1e9)
    if tmpfs:
        cfg["tmpfs"] = {"/tmp": f"rw,nosuid,nodev,size={iso.untrusted_tmpfs_bytes},mode=1777"}


def singularity_fidelity(cfg: dict[str, Any], env: dict[str, str], iso: Isolation, *, tmpfs: bool = True) -> None:
    """What a hospital's singularity gives a container: a read-only image, a small ``/tmp`` (unless a host folder
    is mounted there), no writable HOME, a working directory that is not the image's WORKDIR."""
    cfg["read_only"] = True
    if tmpfs:
        cfg["tmpfs"] = {"/tmp": f"rw,nosuid,nodev,size={iso.tmpfs_bytes},mode=1777"}
    cfg["working_dir"] = "/"
    env["HOME"] = FIDELITY_HOME


__all__ = ["FIDELITY_HOME", "harden", "limit_memory", "singularity_fidelity"]
