"""Run cube tasks with Singularity or Apptainer, as the FeTS 2022 hospitals did (docs/containment.md).

``prepare`` turns the cube's docker image into a SIF once — ``build x.sif docker-daemon://IMAGE:TAG``,
cached by the docker image's digest under ``<cache>/sif`` — unless the cube ships a SIF in its
``singularity: {image: ...}`` section. A container config's image file is MedPerf's way: a ``docker save``
archive becomes a SIF (``docker-archive://``, cached by the archive's sha256), a SIF URL is downloaded once, and
an encrypted archive or SIF is decrypted into a private folder outside the cache, removed when the run ends.
Conversion happens before a job's clock starts.

Flags, as FeTS passed them to model cubes (``Isolation.untrusted``):

- ``-C`` (``--containall``): contained ``/tmp``, ``$HOME`` and ``/dev``, no host cwd, own PID and IPC
  namespaces, and a clean environment (it implies ``--contain`` and ``--cleanenv``);
- ``--writable-tmpfs``: the image stays read-only; writes outside the binds go to a tmpfs whose size is
  the site's ``sessiondir max size`` (64 MiB by default) — not settable per run;
- ``--net --network=none``: a network namespace with loopback only;
- ``--nv``: the NVIDIA driver libraries and *every* GPU device. FeTS always passed it; fedsim narrows what
  CUDA sees with ``CUDA_VISIBLE_DEVICES`` injected through ``SINGULARITYENV_``/``APPTAINERENV_`` (empty
  when the job has no GPU). That is advisory — the GPU guard, not the runtime, enforces the assignment.

Data-prep and metrics cubes get ``-C --cleanenv``. Every cube gets MLCube's ``/mlcube_io{N}`` binds,
``--pwd /`` (singularity would otherwise start in the caller's cwd, not the image's WORKDIR) and its
environment as ``--env K=V``. Memory is not limited by the runtime (the RAM guard samples RSS); model cubes
get ``--pids-limit`` = the benchmark's ``max_pids`` (a cgroup limit: singularity/apptainer needs root, or
cgroups v2 with systemd, to apply it — FeTS's hospitals passed none).

Processes are started by :class:`HostProcess`, never by spython, whose ``run`` ignores ``contain=``,
replaces the environment when given ``environ``, and exposes neither a timeout nor a PID.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from fedsim.cube import CubeSpec, ImageKind, ImageSource, Invocation, container_mounts
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes import engine, mountpaths, select
from fedsim.runtimes.base import BuildProgress, Capabilities, Prepared, ProcessHandle, Runtime
from fedsim.runtimes.imagefiles import DECRYPTED_PREFIX, check_digest, decrypted, fetch
from fedsim.runtimes.images import ImageBuilder
from fedsim.runtimes.process import HostProcess
from fedsim.store.cache import cache_root

UNTRUSTED_FLAGS = ("-C", "--writable-tmpfs", "--net", "--network=none", "--nv")
TRUSTED_FLAGS = ("-C", "--cleanenv")
BUILD_TIMEOUT_S = 3600.0


def env_prefix(binary: str) -> str:
    """``APPTAINERENV_`` for apptainer (also behind a ``singularity`` symlink), else ``SINGULARITYENV_``.

    Apptainer still reads ``SINGULARITYENV_`` but warns about it, and the warning lands in the job log.
    """
    return "APPTAINERENV_" if os.path.basename(os.path.realpath(binary)).startswith("apptainer") else "SINGULARITYENV_"


def _csv_field(item: str) -> str:
    """Quote one ``K=V`` for ``--env``, which singularity parses as CSV (a comma would split the value)."""
    if any(c in item for c in ',"\n'):
        return '"' + item.replace('"', '""') + '"'
    return item


def singularity_argv(binary: str, sif: str | Path, inv: Invocation) -> list[str]:
    """The exact ``run`` command line for ``inv``; pure, so the flags are unit-tested without singularity. A cube
    of the ``mount_paths`` convention gets MedPerf's (:func:`fedsim.runtimes.mountpaths.singularity_argv`)."""
    if inv.mount_paths:
        return mountpaths.singularity_argv(binary, sif, inv)
    mounts, args = container_mounts(inv)
    entry = inv.entrypoint
    argv = [
        binary,
        "run" if entry is None else "exec",
        *(UNTRUSTED_FLAGS if inv.isolation.untrusted else TRUSTED_FLAGS),
    ]
    if inv.isolation.untrusted:
        argv.append(f"--pids-limit={inv.isolation.pids_limit}")  # the benchmark's max_pids (a cgroup limit)
    else:
        argv += cube_run_args(inv.cube)
    for m in mounts:
        host = str(m.host_path)
        if ":" in host or "," in host:
            raise RuntimeUnavailable(f"singularity cannot bind {host}: ':' and ',' are separators in --bind")
        argv += ["--bind", f"{host}:{m.container_path}" + (":ro" if m.read_only else "")]
    argv += ["--pwd", "/"]
    for key, value in {"PYTHONUNBUFFERED": "1", **inv.env}.items():
        argv += ["--env", _csv_field(f"{key}={value}")]
    # MLCube: `run SIF TASK --p=...`, or with a task entrypoint `exec SIF <entrypoint words> --p=...`
    return [*argv, str(sif), *([inv.task] if entry is None else entry), *args]


def cube_run_args(cube: CubeSpec) -> list[str]:
    """MLCube's singularity ``run_args`` (from the singularity section, else the docker one) and its
    ``--key: value`` entries; given to trusted cubes only (a submission gets the FeTS flags)."""
    section = cube.singularity or cube.docker
    if section is None:
        return []
    extra = section.model_extra or {}
    run_args = extra.get("run_args") or ""
    words = shlex.split(run_args) if isinstance(run_args, str) else []
    if cube.singularity is not None:
        words += [f"{k}={v}" for k, v in extra.items() if k.startswith("--") and v is not None]
    return words


def launch_env(binary: str, inv: Invocation, workdir: Path) -> dict[str, str]:
    """The launcher's own environment: nothing of the host's beyond PATH and LANG, so nothing can leak.

    Only model cubes get ``--nv``, so only they need the GPU restriction.
    """
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(workdir),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    if inv.mount_paths:  # MedPerf's convention: the environment through SINGULARITYENV_ variables, not argv
        return {**env, **mountpaths.singularity_env(env_prefix(binary), inv)}
    if inv.isolation.untrusted:
        env[env_prefix(binary) + "CUDA_VISIBLE_DEVICES"] = ",".join(inv.gpu_ids)
    return env


def declared_sifs(cube: CubeSpec) -> list[Path]:
    """Where the cube's own SIF may be, in MLCube's order: ``image_dir`` (default ``workspace/.image``), root; a
    container config's local ``SingularityFile`` is its one path."""
    src = cube.image_source
    if src is not None and src.kind is ImageKind.SIF and not src.encrypted and not src.location.startswith("http"):
        return [Path(src.location)]
    if cube.singularity is None:
        return []
    image = Path(cube.singularity.image).expanduser()
    if image.is_absolute():
        return [image]
    image_dir = getattr(cube.singularity, "image_dir", None)
    dirs: list[Path] = []
    if isinstance(image_dir, str) and "${" not in image_dir:  # skip unresolved MLCube interpolations
        d = Path(image_dir).expanduser()
        dirs.append(d if d.is_absolute() else cube.root / d)
    dirs += [cube.workspace_dir / ".image", cube.root]
    return [d / image for d in dirs]


def daemon_ref(image: str) -> str:
    """``docker-daemon://`` needs an explicit tag; MLCube images without one mean ``:latest``."""
    name = image.rsplit("/", 1)[-1]
    return f"docker-daemon://{image}" if ":" in name or "@" in name else f"docker-daemon://{image}:latest"


def is_remote_or_sealed(src: ImageSource) -> bool:
    """A Singularity file that is not simply a local path to run: downloaded, or gpg-encrypted."""
    return src.encrypted or src.location.startswith(("http://", "https://"))


def _sif_key(cube: CubeSpec, base_image: str | None) -> tuple[str, str | None, str | None]:
    """Which prepared SIF a job runs: the cube, its docker image (if any) and the build's base image."""
    return (cube.name, cube.docker.image if cube.docker else None, base_image)


class SingularityRuntime(Runtime):
    name = "singularity"
    capabilities = Capabilities(
        isolates_filesystem=True,
        enforces_memory_limit=False,
        isolates_network=True,
        containment="singularity",
        runs_images=True,
        mounts_at_paths=True,
        image_kinds=frozenset({ImageKind.REGISTRY, ImageKind.ARCHIVE, ImageKind.SIF}),
    )

    def __init__(self, binary: str | None = None, docker_client: Any = None, cache_dir: Path | None = None) -> None:
        found = binary or select.singularity_binary()
        if found is None:
            raise RuntimeUnavailable(
                "runtime 'singularity': neither 'singularity' nor 'apptainer' is on PATH "
                "(install one, or choose the docker runtime)"
            )
        self.binary = found
        self._client = docker_client
        self._images: ImageBuilder | None = None
        self._cache_dir = cache_dir
        self._sifs: dict[tuple[str, str | None, str | None], Path] = {}
        self._guard = threading.Lock()
        self._provenance: dict[tuple[str, str | None, str | None], dict[str, str]] = {}
        self._private: list[Path] = []  # 0700 folders of SIFs made from encrypted images: removed by close()

    @property
    def cache_dir(self) -> Path:
        if self._cache_dir is None:
            self._cache_dir = cache_root() / "sif"
        return self._cache_dir

    def prepare(
        self, cube: CubeSpec, base_image: str | None = None, *, progress: BuildProgress | None = None
    ) -> Prepared:
        src = cube.image_source
        if src is not None and (
            src.kind is ImageKind.ARCHIVE or (src.kind is ImageKind.SIF and is_remote_or_sealed(src))
        ):
            key = _sif_key(cube, base_image)
            with self._guard:
                known = self._sifs.get(key)
            if known is not None:
                return Prepared(str(known), "present")
            sif, action, sha = self._file_sif(cube, src, progress)
            with self._guard:
                self._sifs[key] = sif
                self._provenance[key] = {"reference": src.location.rsplit("/", 1)[-1], "file_sha256": sha}
            return Prepared(str(sif), action)
        sif, action = self._sif_action(cube, base_image, progress)
        return Prepared(str(sif), action)

    def _file_sif(self, cube: CubeSpec, src: ImageSource, progress: BuildProgress | None) -> tuple[Path, str, str]:
        """The SIF of an image file, as MedPerf makes it: a ``docker save`` archive built into a SIF (``build
        x.sif docker-archive://FILE``, cached by the archive's sha256), a downloaded SIF from the cache; an
        encrypted one decrypted first (gpg, :func:`decrypted`) into a private folder, never the cache, and
        removed by :meth:`close` when the run ends. Returns the SIF, what was done and the file's sha256."""
        def say(line: str) -> None:
            if progress is not None:
                progress(cube.name, line)

        path = fetch(cube, src, say)
        sha = check_digest(cube, path, src)
        if not src.encrypted:
            if src.kind is ImageKind.SIF:
                return path, "present", sha
            cache = self.cache_dir
            cache.mkdir(parents=True, exist_ok=True)
            sif = cache / f"archive-{sha.removeprefix('sha256:')}.sif"
            with open(cache / f"{sif.stem}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if sif.is_file():
                    return sif, "present", sha
                say(f"converting {path.name} to {sif.name}")
                self._build(sif, f"docker-archive://{path}", path.name)
            return sif, "converted", sha
        folder = Path(tempfile.mkdtemp(prefix=DECRYPTED_PREFIX + "sif-"))
        folder.chmod(0o700)
        with self._guard:
            self._private.append(folder)
        sif = folder / "image.sif"
        say(f"decrypting {path.name}")
        with decrypted(cube, path, src.decryption_key) as plain:
            if src.kind is ImageKind.SIF:
                shutil.move(plain, sif)
                return sif, "decrypted", sha
            self._build(sif, f"docker-archive://{plain}", path.name)  # the plain archive goes with the block
        return sif, "decrypted", sha

    def provenance(self, cube: CubeSpec, base_image: str | None = None) -> dict[str, str] | None:
        with self._guard:
            return self._provenance.get(_sif_key(cube, base_image))

    def close(self) -> None:
        """Remove the SIFs made from encrypted images (MedPerf deletes its decrypted SIF after each run)."""
        with self._guard:
            folders, self._private = self._private, []
            for key in [k for k, sif in self._sifs.items() if any(f in sif.parents for f in folders)]:
                del self._sifs[key]
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    def sif_for(self, cube: CubeSpec, base_image: str | None = None) -> Path:
        """The SIF to run: the cube's own, else its docker image converted once per digest."""
        return self._sif_action(cube, base_image)[0]

    def _sif_action(
        self, cube: CubeSpec, base_image: str | None, progress: BuildProgress | None = None
    ) -> tuple[Path, str]:
        key = _sif_key(cube, base_image)
        with self._guard:
            if key in self._sifs:
                return self._sifs[key], "present"
        sif = next((p for p in declared_sifs(cube) if p.is_file()), None)
        action = "present"
        if sif is None:
            sif, action = self._convert(cube, base_image, progress)
        with self._guard:
            self._sifs[key] = sif
        return sif, action

    def _builder(self, cube: CubeSpec) -> ImageBuilder:
        with self._guard:
            if self._images is None:
                if self._client is None:
                    declared = ", ".join(str(p) for p in declared_sifs(cube)) or "none declared"
                    if not select.docker_available():
                        raise RuntimeUnavailable(
                            f"cube {cube.name!r}: no SIF image ({declared}) and no Docker engine to convert "
                            "its docker image from (build a SIF elsewhere and set 'singularity: {image: ...}')"
                        )
                    self._client = engine.docker_client(engine.RUNTIME_TIMEOUT_S)
                self._images = ImageBuilder(self._client)
            return self._images

    def _convert(
        self, cube: CubeSpec, base_image: str | None, progress: BuildProgress | None = None
    ) -> tuple[Path, str]:
        """The SIF converted from the cube's docker image, and what was done: the image's ``built``/``pulled``,
        else ``converted``, else ``present``."""
        if cube.docker is None:
            raise RuntimeUnavailable(f"cube {cube.name!r} has neither a SIF image nor a docker image to convert")
        builder = self._builder(cube)
        tag, action = builder.ensure_action(cube, base_image, progress=progress)
        digest = self._digest(tag)
        cache = self.cache_dir
        cache.mkdir(parents=True, exist_ok=True)
        sif = cache / f"{digest}.sif"
        # flock serialises threads (each opens its own description) and other fedsim processes alike.
        with open(cache / f"{digest}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not sif.is_file():
                if progress is not None:
                    progress(tag, f"converting {tag} to {sif.name}")
                self._build(sif, daemon_ref(tag), tag)
                action = "converted" if action == "present" else action
        return sif, action

    def _digest(self, tag: str) -> str:
        import docker

        try:
            image_id = str(self._client.images.get(tag).id)
        except docker.errors.DockerException as exc:
            raise RuntimeUnavailable(f"cannot read the digest of {tag}: {exc}") from exc
        return image_id.split(":", 1)[-1]

    def _build(self, sif: Path, source: str, tag: str) -> None:
        """``build`` ``sif`` from ``source`` (``docker-daemon://…``, ``docker-archive://…``); ``tag`` names it in
        errors."""
        tmp = sif.with_name(f".{sif.stem}.{os.getpid()}.{threading.get_ident()}.tmp.sif")
        env = dict(os.environ)  # the build is trusted; it needs DOCKER_HOST and friends
        tool = env_prefix(self.binary).removesuffix("ENV_")
        env.setdefault(f"{tool}_TMPDIR", str(self.cache_dir))  # the unpacked rootfs is large: not /tmp
        argv = [self.binary, "build", str(tmp), source]
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                env=env,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            tmp.unlink(missing_ok=True)
            raise RuntimeUnavailable(f"converting {tag} to a SIF took more than {BUILD_TIMEOUT_S:.0f} s") from exc
        except OSError as exc:
            raise RuntimeUnavailable(f"cannot start {self.binary}: {exc.strerror}") from exc
        if proc.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            last = lines[-1] if lines else f"exit code {proc.returncode}"
            raise RuntimeUnavailable(f"converting {tag} to a SIF failed: {last}")
        os.replace(tmp, sif)

    def argv(self, inv: Invocation) -> list[str]:
        return singularity_argv(self.binary, self._sif_hint(inv), inv)

    def _sif_hint(self, inv: Invocation) -> str:
        """The prepared SIF, else the best guess without I/O (``run docker-daemon://`` also works by hand)."""
        cube = inv.cube
        key = _sif_key(cube, inv.isolation.base_image)
        with self._guard:
            if key in self._sifs:
                return str(self._sifs[key])
        declared = declared_sifs(cube)
        if declared:
            return str(declared[0])
        return daemon_ref(cube.docker.image) if cube.docker else "<no image>"

    def launch(self, inv: Invocation, log_path: Path, workdir: Path) -> ProcessHandle:
        sif = self.sif_for(inv.cube, inv.isolation.base_image)
        argv = singularity_argv(self.binary, sif, inv)
        workdir.mkdir(parents=True, exist_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write("$ " + shlex.join(argv) + "\n")
        try:
            return HostProcess(argv, log_path=log_path, cwd=workdir, env=launch_env(self.binary, inv, workdir))
        except OSError as exc:
            raise RuntimeUnavailable(f"cannot start {self.binary}: {exc.strerror}") from exc


__all__ = ["SingularityRuntime", "declared_sifs", "launch_env", "singularity_argv"]
