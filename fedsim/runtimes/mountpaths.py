"""The ``mount_paths`` call convention (MedPerf's container runners since 2025) for docker and singularity.

Pure functions, so every argument is unit-tested without an engine: the docker SDK keywords and the equivalent
``docker run`` command line in MedPerf's order (``containers/runners/docker_utils.py``
``craft_docker_run_command``), and the singularity command line (``singularity_utils.py``
``craft_singularity_run_command``). fedsim's departures — its hardening of submissions, GPUs it assigns itself,
its labels and init process — are added after MedPerf's own options and listed in
``docs/medperf-container-format.md`` §9.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

from fedsim.cube import Invocation
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes.hardening import harden, limit_memory, singularity_fidelity

LABEL = "fedsim"


def mounts(inv: Invocation) -> list[tuple[str, str, bool]]:
    """``(host, container, read_only)``: inputs read-only, then outputs read-write, each in declared order, then
    the job's fresh folder at ``/tmp`` (MedPerf's ``add_medperf_tmp_folder``)."""
    out = [(str(p.host_path), str(_mount_path(inv, p.name)), p.io == "input") for p in inv.parameters]
    if inv.scratch_dir is not None:
        out.append((str(inv.scratch_dir), "/tmp", False))
    return out


def _mount_path(inv: Invocation, name: str) -> str:
    params = inv.cube.task(inv.task).parameters
    param = params.inputs.get(name) or params.outputs.get(name)
    assert param is not None and param.mount_path is not None  # bound from these very declarations
    return param.mount_path


def run_user(untrusted: bool) -> tuple[int, int]:
    """MedPerf's ``-u <uid>:<gid>`` is the caller's ids, root included; a submission never runs as root here
    (fedsim's hardening: ``nobody`` when fedsim runs as root)."""
    uid, gid = os.getuid(), os.getgid()
    if untrusted and uid == 0:
        return (65534, 65534)
    return (uid, gid)


def task_environment(inv: Invocation) -> dict[str, str]:
    """The task's ``environment`` in its order, then fedsim's: ``PYTHONUNBUFFERED=1`` unless the task sets it (a
    log that streams, as MedPerf's pty gives it) and the job's own variables (its orphan-reaping token)."""
    env = dict(inv.cube.task(inv.task).environment)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(inv.env)
    return env


def docker_config(inv: Invocation, image: str) -> dict[str, Any]:
    """Keyword arguments for ``containers.create`` for a ``mount_paths`` cube (see :func:`docker_argv`)."""
    task = inv.cube.task(inv.task)
    iso = inv.isolation
    user = run_user(inv.untrusted)
    env = task_environment(inv)
    cfg: dict[str, Any] = {
        "name": container_name(inv.task),
        "image": image,
        "command": inv.command,
        "mounts": mounts(inv),
        "user": f"{user[0]}:{user[1]}",
        "network_mode": "none",
        "labels": {LABEL: "1", **inv.labels},
        "environment": env,
        "init": True,
        "detach": True,
    }
    entry = inv.entrypoint
    if entry is not None:
        cfg["entrypoint"] = entry
    if task.shm_size is not None:
        cfg["shm_size"] = task.shm_size
    limit_memory(cfg, iso)
    if iso.untrusted:
        harden(cfg, iso, tmpfs=False)
    if iso.singularity_fidelity:
        singularity_fidelity(cfg, env, iso, tmpfs=False)
    if inv.gpu_ids:
        cfg["gpu_device_ids"] = list(inv.gpu_ids)
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(inv.gpu_ids)
    return cfg


def container_name(task: str) -> str:
    """MedPerf's ``medperf-<task>-<16 hex>``: fresh for every run, so two jobs of one task never clash; characters
    docker refuses in a name become ``-``."""
    return f"medperf-{re.sub(r'[^a-zA-Z0-9_.-]', '-', task)}-{secrets.token_hex(8)}"


def docker_argv(cfg: dict[str, Any]) -> list[str]:
    """The ``docker run`` command line of :func:`docker_config`, in MedPerf's order: ``--name``, ``--rm``, ``-u``,
    the volumes, ``--network none``, ``--gpus``, ``--shm-size``, ``--env``, ``--entrypoint``; then fedsim's own
    options; then the image and the command."""
    argv = ["docker", "run"]
    if "name" in cfg:
        argv += ["--name", cfg["name"]]
    argv += ["--rm", "-u", cfg["user"]]
    for host, container, read_only in cfg["mounts"]:
        argv += ["--volume", f"{host}:{container}:{'ro' if read_only else 'rw'}"]
    argv += ["--network", cfg["network_mode"]]
    if "gpu_device_ids" in cfg:
        devices = f"device={','.join(cfg['gpu_device_ids'])}"
        # the docker CLI reads --gpus as CSV: two devices need the item quoted (MedPerf's bare form is refused)
        argv += ["--gpus", f'"{devices}"' if len(cfg["gpu_device_ids"]) > 1 else devices]
    if "shm_size" in cfg:
        argv += ["--shm-size", str(cfg["shm_size"])]
    for key, value in cfg["environment"].items():
        argv += ["--env", f"{key}={value}"]
    if "entrypoint" in cfg:
        argv += ["--entrypoint", cfg["entrypoint"][0]]
    argv += fedsim_docker_options(cfg)
    return [*argv, cfg["image"], *cfg["command"]]


def fedsim_docker_options(cfg: dict[str, Any]) -> list[str]:
    """fedsim's additions to MedPerf's command line (init, labels, limits, hardening), as ``--flag=value``."""
    out = ["--init"]
    out += [f"--label={k}={v}" for k, v in cfg["labels"].items()]
    if "mem_limit" in cfg:
        out += [f"--memory={cfg['mem_limit']}", f"--memory-swap={cfg['memswap_limit']}"]
    out += [f"--cap-drop={c}" for c in cfg.get("cap_drop", [])]
    out += [f"--security-opt={o}" for o in cfg.get("security_opt", [])]
    if "pids_limit" in cfg:
        out.append(f"--pids-limit={cfg['pids_limit']}")
    if "nano_cpus" in cfg:
        out.append(f"--cpus={cfg['nano_cpus'] / 1e9:g}")
    if "log_config" in cfg:
        out += ["--log-driver=json-file", "--log-opt=max-size=20m", "--log-opt=max-file=1"]
    if cfg.get("read_only"):
        out.append("--read-only")
    if "working_dir" in cfg:
        out.append(f"--workdir={cfg['working_dir']}")
    return out


def singularity_argv(binary: str, sif: str | Path, inv: Invocation) -> list[str]:
    """MedPerf's ``<exe> run -eC --bind … [--nv] --net --network none <sif> [entrypoint] command``; with an
    entrypoint ``exec`` and the entrypoint right after the image. The environment goes through
    :func:`singularity_env`, never the command line."""
    entry = inv.entrypoint
    argv = [binary, "run" if entry is None else "exec", "-eC"]
    for host, container, read_only in mounts(inv):
        if ":" in host or "," in host:
            raise RuntimeUnavailable(f"singularity cannot bind {host}: ':' and ',' are separators in --bind")
        argv += ["--bind", f"{host}:{container}:{'ro' if read_only else 'rw'}"]
    if inv.gpu_ids:
        argv.append("--nv")
    argv += ["--net", "--network", "none"]
    if inv.untrusted:
        argv.append(f"--pids-limit={inv.isolation.pids_limit}")  # fedsim's: the benchmark's max_pids
    return [*argv, str(sif), *(entry or []), *inv.command]


def singularity_env(prefix: str, inv: Invocation) -> dict[str, str]:
    """The task's environment as ``SINGULARITYENV_<K>`` (or ``APPTAINERENV_``) variables of the launcher, for
    this one process only (MedPerf writes them into its own environment, where they leak into later runs)."""
    env = {f"{prefix}{k}": v for k, v in task_environment(inv).items()}
    if inv.gpu_ids:
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(inv.gpu_ids)
        env[f"{prefix}CUDA_VISIBLE_DEVICES"] = ",".join(inv.gpu_ids)
    return env


__all__ = [
    "container_name",
    "docker_argv",
    "docker_config",
    "fedsim_docker_options",
    "mounts",
    "run_user",
    "singularity_argv",
    "singularity_env",
    "task_environment",
]
