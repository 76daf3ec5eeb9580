"""Docker image preparation with MLCube's build strategies (plus ``never`` for air-gapped sites).

Preparation is idempotent, serialised per image, and never charged to a job's timeout. Cubes whose
Dockerfile declares ``ARG FEDSIM_BASE`` are built on the fedsim cube base image (Debian's numpy, scipy,
nibabel, yaml and the ``fedsim`` package itself), which is built once from this installation's source.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from fedsim import __version__
from fedsim.cube import CubeSpec
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes.base import BuildProgress
from fedsim.runtimes.dockerargs import parse_build_args

CUBE_BASE_TAG = f"fedsim/cube-base:{__version__}"
DEFAULT_BASE_IMAGE = "debian:bookworm-slim"
DIGEST_LABEL = "fedsim.context-sha"

# The first RUN line is shared verbatim with the reference model's Dockerfile so both reuse one layer.
CUBE_BASE_DOCKERFILE = """\
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-numpy python3-scipy python3-nibabel python3-yaml && rm -rf /var/lib/apt/lists/*
COPY fedsim /usr/lib/python3/dist-packages/fedsim
RUN python3 -c "import fedsim.metrics, fedsim.dataprep, fedsim.synth"
"""


def context_digest(context: Path, args: dict[str, str]) -> str:
    """sha256 over the build context's files (paths, modes, bytes) and the build arguments."""
    h = hashlib.sha256(json.dumps(args, sort_keys=True).encode())
    for path in sorted(p for p in context.rglob("*") if "__pycache__" not in p.parts):
        if path.is_symlink() or not path.is_file():
            continue
        h.update(path.relative_to(context).as_posix().encode() + b"\0")
        h.update(oct(path.stat().st_mode & 0o7777).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _base_image_ignore(package: Path) -> Any:
    """What the cube base image leaves out of the ``fedsim`` package: caches, and the bundled benchmark and sites
    (package data, ``fedsim/bundled/*/``: cubes never read them, and editing them must not rebuild the base)."""
    caches = shutil.ignore_patterns("__pycache__", "*.pyc")
    bundled = package / "bundled"

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(caches(directory, names))
        if Path(directory) == bundled:
            skipped |= {n for n in names if (bundled / n).is_dir()}
        return skipped

    return ignore


class ImageMissing(RuntimeUnavailable):
    """An image neither present locally nor pullable; ``cause`` and ``fix`` are one line each (check-submission
    shows them in its two columns, a run's job reason shows ``cause; fix: fix``)."""

    def __init__(self, cause: str, fix: str) -> None:
        self.cause, self.fix = cause, fix
        super().__init__(f"{cause}; fix: {fix}")


def _shown(path: Path) -> str:
    """A path for a command line to copy: relative to the working directory when it lies below it."""
    rel = os.path.relpath(path)
    return shlex.quote(str(path) if rel.startswith("..") else rel)


def build_command(tag: str, dockerfile: Path, context: Path, base_image: str | None = None) -> str:
    """The ``docker build`` that makes a cube's image by hand (what ``build_strategy: auto`` would run)."""
    arg = f" --build-arg BASE_IMAGE={shlex.quote(base_image)}" if base_image else ""
    return f"docker build -t {shlex.quote(tag)}{arg} -f {_shown(dockerfile)} {_shown(context)}"


class ImageBuilder:
    def __init__(self, client: Any) -> None:
        self.client = client
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._ready: set[tuple[str, str | None]] = set()

    def _lock(self, tag: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(tag, threading.Lock())

    def exists(self, tag: str) -> bool:
        import docker

        try:
            self.client.images.get(tag)
            return True
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            raise RuntimeUnavailable(f"docker engine error while looking up {tag}: {exc.explanation}") from exc

    def ensure(self, cube: CubeSpec, base_image: str | None, *, progress: BuildProgress | None = None) -> str:
        """Return the cube's image tag, building or pulling it according to ``build_strategy``."""
        return self.ensure_action(cube, base_image, progress=progress)[0]

    def ensure_action(
        self, cube: CubeSpec, base_image: str | None, *, progress: BuildProgress | None = None
    ) -> tuple[str, str]:
        """:meth:`ensure`, also saying what it did: ``built``, ``pulled`` or ``present`` (nothing to do).
        ``progress`` gets every line of a build's output as it streams."""
        d = cube.docker
        if d is None:
            raise RuntimeUnavailable(f"cube {cube.name!r} has no docker section; it cannot run on the docker runtime")
        key = (d.image, base_image)
        action = "present"
        with self._lock(d.image):
            if key in self._ready:
                return d.image, action
            dockerfile = cube.build_context_dir / d.build_file
            strategy = d.build_strategy
            present = self.exists(d.image)
            if strategy == "auto" and present and dockerfile.is_file() and self._label(d.image) is not None:
                # MLCube's auto uses any present image; an image fedsim built itself is also rebuilt when its
                # context changed, so an edited cube never runs as its stale image. Others are used as they are.
                _args, digest = self._build_args(cube, base_image, progress)
                present = self._label(d.image) == digest
            if strategy == "never":
                if not present:
                    raise RuntimeUnavailable(
                        f"image {d.image} is not available locally and build_strategy is 'never' "
                        "(load it with 'docker load' or change the strategy)"
                    )
            elif present and strategy != "always":
                pass  # MLCube runs a present image as it is, whatever the strategy (it configures only when absent)
            elif strategy != "pull" and dockerfile.is_file():
                self.build(cube, base_image, progress=progress)
                action = "built"
            else:
                build = dockerfile.is_file() and strategy == "pull"
                if progress is not None:
                    progress(d.image, f"pulling {d.image}")
                pulled = self._pull(
                    d.image, present, (dockerfile, cube.build_context_dir, base_image) if build else None
                )
                action = "pulled" if pulled else "present"
            self._ready.add(key)
        return d.image, action

    def _pull(self, tag: str, present: bool, build: tuple[Path, Path, str | None] | None = None) -> bool:
        """Pull ``tag``; ``build`` (Dockerfile, context, base image) when the cube could be built instead. False
        when the pull failed but a local copy is there (kept)."""
        import docker

        try:
            self.client.images.pull(tag)
            return True
        except docker.errors.DockerException as exc:
            if present:
                return False  # air-gapped: keep the local copy
            why = " ".join(str(getattr(exc, "explanation", None) or exc).split())  # the engine's words, no URL
            if build is None:
                raise ImageMissing(
                    f"cannot pull image {tag} and it is not available locally ({why})",
                    f"docker pull {tag} where its registry answers, or docker load it from a saved archive",
                ) from exc
            raise ImageMissing(
                f"cannot pull image {tag} and it is not available locally: build_strategy is 'pull' (MLCube's "
                f"default when mlcube.yaml sets none), which never builds ({why})",
                f"build it: {build_command(tag, *build)}, or set build_strategy: auto in mlcube.yaml",
            ) from exc

    def _build_args(
        self, cube: CubeSpec, base_image: str | None, progress: BuildProgress | None = None
    ) -> tuple[dict[str, str], str]:
        """Build arguments and the digest of everything the image is built from (context, args, base)."""
        assert cube.docker is not None
        d = cube.docker
        context = cube.build_context_dir
        dockerfile = context / d.build_file
        args = dict(parse_build_args(d.build_args, file=str(cube.spec_path)).buildargs)
        if base_image:
            args["BASE_IMAGE"] = base_image
        extra = ""
        if re.search(r"^\s*ARG\s+FEDSIM_BASE\b", dockerfile.read_text(), re.MULTILINE):
            args["FEDSIM_BASE"] = self.ensure_cube_base(base_image, progress=progress)
            extra = str(self.client.images.get(args["FEDSIM_BASE"]).id)
        return args, context_digest(context, {**args, "__base_id__": extra, "__file__": d.build_file})

    def build(self, cube: CubeSpec, base_image: str | None, *, progress: BuildProgress | None = None) -> None:
        assert cube.docker is not None
        d = cube.docker
        context = cube.build_context_dir
        if not (context / d.build_file).is_file():
            raise RuntimeUnavailable(f"cube {cube.name!r}: no {d.build_file} in {context} to build {d.image} from")
        args, digest = self._build_args(cube, base_image, progress)
        opts = parse_build_args(d.build_args, file=str(cube.spec_path))
        extra = {"nocache": opts.nocache, "pull": opts.pull, "target": opts.target, "network_mode": opts.network_mode}
        self._build(str(context), d.build_file, d.image, args, digest, {k: v for k, v in extra.items() if v}, progress)

    def _label(self, tag: str) -> str | None:
        try:
            return (self.client.images.get(tag).labels or {}).get(DIGEST_LABEL)
        except Exception:  # missing or unreadable: treat as stale
            return None

    def ensure_cube_base(self, base_image: str | None, *, progress: BuildProgress | None = None) -> str:
        tag = CUBE_BASE_TAG if not base_image else f"{CUBE_BASE_TAG}-{re.sub(r'[^A-Za-z0-9_.-]', '_', base_image)}"
        with self._lock(tag):
            if (tag, base_image) in self._ready:
                return tag
            package = Path(__file__).resolve().parents[1]
            with tempfile.TemporaryDirectory(prefix="fedsim-base-") as tmp:
                shutil.copytree(package, Path(tmp) / "fedsim", ignore=_base_image_ignore(package))
                (Path(tmp) / "Dockerfile").write_text(CUBE_BASE_DOCKERFILE)
                args = {"BASE_IMAGE": base_image or DEFAULT_BASE_IMAGE}
                digest = context_digest(Path(tmp), args)
                if self._label(tag) != digest:  # missing, or built from another fedsim source
                    self._build(tmp, "Dockerfile", tag, args, digest, progress=progress)
            self._ready.add((tag, base_image))
        return tag

    def _build(
        self,
        context: str,
        dockerfile: str,
        tag: str,
        args: dict[str, str],
        digest: str,
        extra: dict[str, Any] | None = None,
        progress: BuildProgress | None = None,
    ) -> None:
        import docker

        lines: list[str] = []
        try:
            for chunk in self.client.api.build(
                path=context,
                dockerfile=dockerfile,
                tag=tag,
                buildargs=args,
                labels={DIGEST_LABEL: digest},
                rm=True,
                decode=True,
                **(extra or {}),
            ):
                if "stream" in chunk:
                    new = [ln for ln in str(chunk["stream"]).splitlines() if ln.strip()]
                    lines.extend(new)
                    if progress is not None:
                        for ln in new:
                            progress(tag, ln)  # may raise to cancel: the build stream is dropped
                if "error" in chunk:
                    raise RuntimeUnavailable(
                        f"building {tag} failed: {str(chunk['error']).strip()} (last output: {' | '.join(lines[-3:])})"
                    )
        except docker.errors.DockerException as exc:
            raise RuntimeUnavailable(f"building {tag} failed: {exc}") from exc
