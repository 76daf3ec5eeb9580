"""Run cube tasks in Docker containers through the docker SDK, with MLCube's mount scheme.

Model cubes (untrusted) get the hardening profile: no network, no capabilities, no new privileges, a PID
limit, ``mem_limit == memswap_limit``, an init process, a non-root user. In singularity-fidelity mode they
also get what a hospital's singularity gives them: a read-only image, a 64 MiB ``/tmp``, no writable
HOME, a working directory that is not the image's WORKDIR, and no host environment.

Outputs must be writable by the container's user: the runtime hands each output directory to that user
before the start and takes everything back for the invoking user afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from fedsim.cube import CubeSpec, ImageKind, Invocation, container_mounts
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes import mountpaths
from fedsim.runtimes.base import BuildProgress, Capabilities, Prepared, ProcessHandle, Runtime
from fedsim.runtimes.dockerargs import RunOptions, parse_run_fragment
from fedsim.runtimes.engine import RUNTIME_TIMEOUT_S, docker_client
from fedsim.runtimes.handover import hand_over, take_back
from fedsim.runtimes.hardening import harden, limit_memory, singularity_fidelity
from fedsim.runtimes.imagefiles import ArchiveLoader, ImageFileError, check_image_digest, image_provenance
from fedsim.runtimes.images import ImageBuilder
from fedsim.runtimes.paths import host_paths
from fedsim.runtimes.process import kills_at_once

LABEL = "fedsim"
MAX_LOG_BYTES = 64 * 2**20
NOBODY = 65534


def container_user() -> tuple[int, int]:
    """The invoking user's uid:gid, or nobody when that is root (submissions never run as root)."""
    uid, gid = os.getuid(), os.getgid()
    return (NOBODY, NOBODY) if uid == 0 else (uid, gid)


def cube_run_options(inv: Invocation) -> RunOptions:
    """What MLCube adds to ``docker run`` for this cube: ``gpu_args`` or ``cpu_args`` (by the declared
    ``accelerator_count``), the ``--key: value`` entries and ``env_args`` — parsed, and for submissions
    without the options that would loosen the hardening."""
    d = inv.cube.docker
    if d is None:
        return RunOptions()
    file = str(inv.cube.spec_path)
    fragments = [
        (
            "docker.gpu_args" if inv.cube.platform.accelerator_count else "docker.cpu_args",
            d.gpu_args if inv.cube.platform.accelerator_count else d.cpu_args,
        ),
        ("docker", " ".join(shlex.quote(o) for o in d.run_options())),
        (
            "docker.env_args",
            d.env_args
            if isinstance(d.env_args, str)
            else " ".join(shlex.quote(f"-e={k}={v}") for k, v in d.env_args.items()),
        ),
    ]
    merged = RunOptions()
    for source, fragment in fragments:
        part = parse_run_fragment(fragment, source=source, file=file, untrusted=inv.untrusted)
        for key, value in part.sdk.items():
            if isinstance(value, dict):
                merged.sdk.setdefault(key, {}).update(value)
            elif isinstance(value, list):
                merged.sdk.setdefault(key, []).extend(value)
            else:
                merged.sdk[key] = value
        merged.cli += part.cli
        merged.dropped += part.dropped
    return merged


def container_config(inv: Invocation, image: str, user: tuple[int, int]) -> dict[str, Any]:
    """Keyword arguments for ``containers.create``; pure, so the hardening is unit-tested without docker.

    Trusted cubes (data prep, metrics) get what ``mlcube run`` gives them — MLCube's mounts and modes, the
    image's user (the invoking user when that is not root), the network, the cube's docker options — plus an
    init process, labels and the site's RAM limit. Submissions get the hardening profile on top. A cube of the
    ``mount_paths`` convention gets MedPerf's invocation instead (:mod:`fedsim.runtimes.mountpaths`).
    """
    if inv.mount_paths:
        return mountpaths.docker_config(inv, image)
    mounts, args = container_mounts(inv)
    iso = inv.isolation
    opts = cube_run_options(inv)
    env = {"PYTHONUNBUFFERED": "1", **inv.env}
    entry = inv.entrypoint
    cfg: dict[str, Any] = {
        "image": image,
        "command": [inv.task, *args] if entry is None else ([*entry[1:], *args] if len(entry) > 1 else []),
        "mounts": [(str(m.host_path), m.container_path, m.read_only) for m in mounts],
        "labels": {LABEL: "1", **inv.labels},
        "environment": env,
        "init": True,
        "detach": True,
    }
    if entry is not None:
        cfg["entrypoint"] = [entry[0]]
    sdk = dict(opts.sdk)
    sdk.pop("gpus", None)  # fedsim assigns GPUs itself (device ids below)
    env.update(sdk.pop("environment", {}))
    for key, value in sdk.items():
        cfg[key] = value
    if opts.cli:
        cfg["cube_options"] = [o for o in opts.cli if not o.startswith(("--gpus", "-e=", "--env"))]
    if opts.dropped:
        cfg["dropped_options"] = opts.dropped
    if iso.untrusted or os.getuid() != 0:
        cfg["user"] = f"{user[0]}:{user[1]}"
    limit_memory(cfg, iso)
    if iso.untrusted:
        harden(cfg, iso)
    if iso.singularity_fidelity:
        singularity_fidelity(cfg, env, iso)
    if inv.gpu_ids:
        cfg["gpu_device_ids"] = list(inv.gpu_ids)
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(inv.gpu_ids)
    return cfg


# SDK keyword -> docker run flag, for the options a cube's fragments may set
_FLAGS = {
    "shm_size": "--shm-size",
    "ipc_mode": "--ipc",
    "privileged": "--privileged",
    "cpuset_cpus": "--cpuset-cpus",
    "runtime": "--runtime",
    "volumes": "--volume",
    "devices": "--device",
    "cap_add": "--cap-add",
    "pid_mode": "--pid",
    "group_add": "--group-add",
    "extra_hosts": "--add-host",
    "hostname": "--hostname",
    "ulimits": "--ulimit",
}


def docker_argv(cfg: dict[str, Any]) -> list[str]:
    """The equivalent ``docker run`` command line, for logs and for people reproducing a job by hand."""
    argv = ["docker", "run", "--rm", "--init"]
    if "user" in cfg:
        argv.append(f"--user={cfg['user']}")
    if "network_mode" in cfg:
        argv.append(f"--network={cfg['network_mode']}")
    if "entrypoint" in cfg:
        argv.append(f"--entrypoint={cfg['entrypoint'][0]}")
    for k, v in cfg["labels"].items():
        argv.append(f"--label={k}={v}")
    for src, dst, ro in cfg["mounts"]:
        argv.append(f"--volume={src}:{dst}" + (":ro" if ro else ""))
    for k, v in cfg["environment"].items():
        argv.append(f"--env={k}={v}")
    if "mem_limit" in cfg:
        argv.append(f"--memory={cfg['mem_limit']}")
    if "memswap_limit" in cfg:
        argv.append(f"--memory-swap={cfg['memswap_limit']}")
    for cap in cfg.get("cap_drop", []):
        argv.append(f"--cap-drop={cap}")
    for opt in cfg.get("security_opt", []):
        argv.append(f"--security-opt={opt}")
    if "pids_limit" in cfg:
        argv.append(f"--pids-limit={cfg['pids_limit']}")
    if "nano_cpus" in cfg:
        argv.append(f"--cpus={cfg['nano_cpus'] / 1e9:g}")
    if "log_config" in cfg:
        argv += ["--log-driver=json-file", "--log-opt=max-size=20m", "--log-opt=max-file=1"]
    if cfg.get("read_only"):
        argv.append("--read-only")
    for path, opts in cfg.get("tmpfs", {}).items():
        argv.append(f"--tmpfs={path}:{opts}")
    if "working_dir" in cfg:
        argv.append(f"--workdir={cfg['working_dir']}")
    for key, flag in _FLAGS.items():
        value = cfg.get(key)
        if value is None:
            continue
        if value is True:
            argv.append(flag)
        elif key == "ulimits":
            argv += [f"{flag}={n}={soft}:{hard}" for n, soft, hard in value]
        else:
            argv += [f"{flag}={v}" for v in (value if isinstance(value, list) else [value])]
    if "gpu_device_ids" in cfg:
        argv.append(f"--gpus=device={','.join(cfg['gpu_device_ids'])}")
    return [*argv, cfg["image"], *cfg["command"]]


def prepared_key(cube: CubeSpec, base_image: str | None) -> tuple[str, str | None]:
    """Which prepared image a job runs: by the file that declared its cube (two cubes may share a name)."""
    return (str(cube.spec_path), base_image)


def command_line(cfg: dict[str, Any], inv: Invocation) -> list[str]:
    """The ``docker run`` line of ``cfg`` in the cube's own convention (MLCube's, or MedPerf's order)."""
    return mountpaths.docker_argv(cfg) if inv.mount_paths else docker_argv(cfg)


class DockerRuntime(Runtime):
    name = "docker"
    capabilities = Capabilities(
        isolates_filesystem=True,
        enforces_memory_limit=True,
        isolates_network=True,
        containment="docker",
        runs_images=True,
        singularity_fidelity=True,
        mounts_at_paths=True,
        image_kinds=frozenset({ImageKind.REGISTRY, ImageKind.ARCHIVE}),
    )

    def __init__(self, client: Any = None) -> None:
        self.client = docker_client(RUNTIME_TIMEOUT_S, client=client)
        self.images = ImageBuilder(self.client)
        self.user = container_user()
        self.host_paths = host_paths(self.client)  # fedsim in a container: mount sources are the host's paths
        self._prepared: dict[tuple[str, str | None], str] = {}  # prepared_key -> image
        self._provenance: dict[tuple[str, str | None], dict[str, str]] = {}  # prepared_key -> job record's image
        self.archives = ArchiveLoader(self.client)

    def prepare(
        self, cube: CubeSpec, base_image: str | None = None, *, progress: BuildProgress | None = None
    ) -> Prepared:
        key = prepared_key(cube, base_image)
        if key in self._prepared:  # once per run: a second job of the cube finds it ready
            return Prepared(self._prepared[key], "present")
        source = cube.image_source
        if source is not None and source.kind is ImageKind.SIF:
            raise ImageFileError(
                f"cube {cube.name!r} is a Singularity file: docker cannot run it (MedPerf: 'Cannot run this "
                "container using docker'); fix: --runtime singularity, or local (its root file system in the sandbox)"
            )
        if source is not None and source.kind is ImageKind.ARCHIVE:
            say = (lambda line: progress(cube.name, line)) if progress is not None else (lambda _line: None)
            loaded = self.archives.load(cube, say)
            self._prepared[key] = loaded.reference
            self._provenance[key] = image_provenance(self.client, loaded.reference, loaded.file_sha256)
            return Prepared(loaded.reference, "loaded")
        image, action = self.images.ensure_action(cube, base_image, progress=progress)
        record = image_provenance(self.client, image)
        check_image_digest(cube, record)
        self._prepared[key] = image
        self._provenance[key] = record
        return Prepared(image, action)

    def provenance(self, cube: CubeSpec, base_image: str | None = None) -> dict[str, str] | None:
        return self._provenance.get(prepared_key(cube, base_image))

    def close(self) -> None:
        """Take back the tags of the archives this runtime loaded (MedPerf's ``rmi`` after an archive's run)."""
        self.archives.remove_loaded()
        self._prepared.clear()
        self._provenance.clear()

    def argv(self, inv: Invocation) -> list[str]:
        image = (
            self._prepared.get(prepared_key(inv.cube, inv.isolation.base_image)) or inv.cube.image_ref or "<no image>"
        )
        return command_line(container_config(inv, image, self.user), inv)

    def launch(self, inv: Invocation, log_path: Path, workdir: Path) -> ProcessHandle:
        import docker
        from docker.types import DeviceRequest, Mount

        image = self._prepared.get(prepared_key(inv.cube, inv.isolation.base_image)) or self.images.ensure(
            inv.cube, inv.isolation.base_image
        )
        cfg = container_config(inv, image, self.user)
        cfg["mounts"] = [(self.host_paths.to_host(src), dst, ro) for src, dst, ro in cfg["mounts"]]
        user = mountpaths.run_user(inv.untrusted) if inv.mount_paths else self.user
        handed = hand_over(inv, user) if "user" in cfg else []
        kwargs = {
            k: v for k, v in cfg.items() if k not in {"mounts", "gpu_device_ids", "cube_options", "dropped_options"}
        }
        if "ulimits" in kwargs:
            from docker.types import Ulimit

            kwargs["ulimits"] = [Ulimit(name=n, soft=soft, hard=hard) for n, soft, hard in kwargs["ulimits"]]
        kwargs["mounts"] = [Mount(target=dst, source=src, type="bind", read_only=ro) for src, dst, ro in cfg["mounts"]]
        if "gpu_device_ids" in cfg:
            kwargs["device_requests"] = [DeviceRequest(device_ids=cfg["gpu_device_ids"], capabilities=[["gpu"]])]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write("$ " + shlex.join(command_line(cfg, inv)) + "\n")
            if cfg.get("dropped_options"):
                fh.write(f"$ fedsim: left out for a submission (hardening): {' '.join(cfg['dropped_options'])}\n")
        try:
            container = self.client.containers.create(**kwargs)
        except docker.errors.DockerException as exc:
            take_back(handed)
            raise RuntimeUnavailable(f"cannot create the container: {exc}") from exc
        try:
            container.start()
        except docker.errors.DockerException as exc:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
            take_back(handed)
            raise RuntimeUnavailable(f"cannot start the container: {exc}") from exc
        return ContainerHandle(container, log_path, handed)


class ContainerHandle(ProcessHandle):
    """A started container: a waiter thread, a log-follower thread, host PIDs from its init process."""

    def __init__(self, container: Any, log_path: Path, handed: list[tuple[Path, bool]]) -> None:
        self.container = container
        self.started_at = time.monotonic()
        self._handed = handed
        self._exit: int | None = None
        self._done = threading.Event()
        self._cleaned = False
        self._attrs: dict[str, Any] = {}
        self._init_pid = self._read_pid()
        self._waiter = threading.Thread(target=self._wait_forever, daemon=True)
        self._waiter.start()
        self._logger = threading.Thread(target=self._follow_logs, args=(log_path,), daemon=True)
        self._logger.start()

    def _read_pid(self) -> int | None:
        with contextlib.suppress(Exception):
            self.container.reload()
            pid = int(self.container.attrs["State"]["Pid"])
            return pid or None
        return None

    def _wait_forever(self) -> None:
        while not self._done.is_set():
            try:
                status = self.container.wait(timeout=3600)
                self._exit = int(status.get("StatusCode", -1))
                break
            except Exception:  # read timeout: keep waiting; a vanished container ends the wait
                try:
                    self.container.reload()
                    if self.container.status in {"exited", "dead"}:
                        self._exit = int(self.container.attrs["State"].get("ExitCode", -1))
                        break
                except Exception:
                    self._exit = -1
                    break
        self._done.set()

    def _follow_logs(self, log_path: Path) -> None:
        written = 0
        with contextlib.suppress(Exception), open(log_path, "ab", buffering=0) as fh:
            for chunk in self.container.logs(stream=True, follow=True, stdout=True, stderr=True):
                if written < MAX_LOG_BYTES:
                    fh.write(chunk[: MAX_LOG_BYTES - written])
                    written += len(chunk)
                    if written >= MAX_LOG_BYTES:
                        fh.write(f"\n[fedsim: log truncated at {MAX_LOG_BYTES // 2**20} MiB]\n".encode())

    def root_pid(self) -> int | None:
        return self._init_pid

    def host_pids(self) -> set[int]:
        if self._init_pid is None or self._done.is_set():
            return set()
        try:
            root = psutil.Process(self._init_pid)
            return {root.pid, *(c.pid for c in root.children(recursive=True))}
        except psutil.Error:
            return set()

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self._exit if self._done.is_set() else None

    def terminate(self, grace_s: float = 2.0) -> None:
        # docker's stop grace is whole seconds; below one second a limit kill is a plain SIGKILL, as on the host
        with contextlib.suppress(Exception):
            if kills_at_once(grace_s):
                self.container.kill()
            else:
                self.container.stop(timeout=round(grace_s))
        if not self._done.wait(5):
            with contextlib.suppress(Exception):
                self.container.kill()
            self._done.wait(5)

    def oom_killed(self) -> bool:
        with contextlib.suppress(Exception):
            self.container.reload()
            return bool(self.container.attrs["State"].get("OOMKilled"))
        return False

    def cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        if not self._done.is_set():
            self.terminate(grace_s=1)
        self._logger.join(timeout=5)
        with contextlib.suppress(Exception):
            self.container.remove(force=True)
        take_back(self._handed)
