"""Container images that come as files: ``docker save`` archives and SIFs, plain or gpg-encrypted, local or
downloaded (MedPerf's ``DockerArchive``, ``SingularityFile`` and their encrypted variants).

Four steps, each its own function so each is tested by itself: :func:`fetch` (a local path, or an ``http(s)://``
file downloaded once into the cache, by content hash), :func:`check_digest` (the benchmark's ``image_digest``
against the file's sha256), :func:`decrypted` (gpg into a private temporary folder outside the run directory,
removed as soon as the block ends) and :class:`ArchiveLoader` (``docker load``, remembering which tags fedsim
added, so that :meth:`ArchiveLoader.remove_loaded` takes exactly those away again — MedPerf removes every tag of
the manifest, a user's own image of that name included; see ``docs/medperf-container-format.md`` §5).

The decryption key is a path handed to gpg; its content never passes through fedsim, so it cannot reach a log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.cachedir import cache_root
from fedsim.cube import CubeSpec, ImageSource
from fedsim.errors import RuntimeUnavailable

DECRYPTED_PREFIX = "fedsim-decrypted-"
"""Name prefix of the private folders decrypted images live in for the seconds it takes to load them."""

DOWNLOAD_TIMEOUT_S = 60.0
CHUNK = 1 << 20


class ImageFileError(RuntimeUnavailable):
    """A cube's image file cannot be fetched, checked, decrypted or loaded; the message names the cube and why."""


Say = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes, read in chunks (archives are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def fetch(cube: CubeSpec, source: ImageSource, say: Say = _quiet) -> Path:
    """The image file on this machine: the local path as given, or the URL's file from the cache (downloaded the
    first time, stored under its content hash, so two URLs of one file share it)."""
    location = source.location
    if not location.startswith(("http://", "https://")):
        path = Path(location)
        if not path.is_file():
            raise ImageFileError(
                f"cube {cube.name!r}: its image file {path} does not exist; fix: put the file there, or give its "
                f"path relative to {cube.spec_path.name} (or an http(s):// URL) in 'image'"
            )
        return path
    return _download(cube, location, say)


def _download(cube: CubeSpec, url: str, say: Say) -> Path:
    store = cache_root() / "images"
    index = store / "urls" / (hashlib.sha256(url.encode()).hexdigest() + ".txt")
    with contextlib.suppress(OSError):
        known = store / index.read_text().strip()
        if known.is_file():
            return known
    store.mkdir(parents=True, exist_ok=True)
    index.parent.mkdir(parents=True, exist_ok=True)
    partial = store / f".download.{os.getpid()}.{hashlib.sha256(url.encode()).hexdigest()[:12]}"
    digest = hashlib.sha256()
    say(f"downloading {cube.name}'s image from {url}")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as fh:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                fh.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise ImageFileError(f"cube {cube.name!r}: cannot download its image from {url}: {exc}") from exc
    name = digest.hexdigest()
    target = store / name
    os.replace(partial, target)
    index.write_text(name + "\n")
    return target


def check_digest(cube: CubeSpec, path: Path, source: ImageSource) -> str:
    """The file's ``sha256:`` (provenance); an expected digest that differs is an error that shows both."""
    actual = sha256_file(path)
    if source.digest is not None and source.digest != actual:
        raise ImageFileError(
            f"cube {cube.name!r}: its image file {path.name} has {actual}, the benchmark expects {source.digest} "
            "(image_digest); fix: give the file the benchmark names, or correct image_digest"
        )
    return actual


@contextlib.contextmanager
def decrypted(cube: CubeSpec, path: Path, key: Path | None) -> Iterator[Path]:
    """``path`` decrypted with the gpg passphrase file ``key``, in a 0700 folder of the system's temporary
    directory (never the run directory) with a throw-away GNUPGHOME, removed when the block ends, whatever happens.

    gpg gets MedPerf's arguments (``--batch --decrypt --output … --passphrase-file …``) plus
    ``--pinentry-mode loopback``, without which gpg 2.1+ asks an agent for the passphrase instead of reading the file.
    """
    if key is None:
        raise ImageFileError(
            f"cube {cube.name!r} is encrypted and no decryption key was given; fix: add decryption_key: FILE to "
            "its model in the benchmark, or pass --decryption-key MODEL=FILE"
        )
    if not key.is_file():
        raise ImageFileError(f"cube {cube.name!r}: the decryption key file {key} does not exist")
    gpg = shutil.which("gpg")
    if gpg is None:
        raise ImageFileError(
            f"cube {cube.name!r} is gpg-encrypted and gpg is not on PATH; fix: install gnupg (apt install gnupg)"
        )
    folder = Path(tempfile.mkdtemp(prefix=DECRYPTED_PREFIX))
    try:
        folder.chmod(0o700)
        home = folder / "gnupg"
        home.mkdir(mode=0o700)
        out = folder / "image"
        argv = [gpg, "--homedir", str(home), "--batch", "--yes", "--quiet", "--pinentry-mode", "loopback"]
        argv += ["--passphrase-file", str(key), "--output", str(out), "--decrypt", str(path)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if done.returncode != 0 or not out.is_file():
            why = next((ln for ln in done.stderr.splitlines() if "failed" in ln or "error" in ln.lower()), "")
            why = why or (done.stderr.strip().splitlines() or ["gpg failed"])[-1]
            raise ImageFileError(
                f"cube {cube.name!r}: cannot decrypt {path.name}: {why.strip()} (is the decryption key the one "
                "the image was encrypted with?)"
            )
        yield out
    finally:
        _stop_agent(folder / "gnupg")
        shutil.rmtree(folder, ignore_errors=True)


def _stop_agent(home: Path) -> None:
    """gpg starts an agent for the throw-away home; stop it, or it outlives the folder."""
    gpgconf = shutil.which("gpgconf")
    if gpgconf is not None and home.is_dir():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [gpgconf, "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False, timeout=10
            )


def archive_tags(path: Path) -> list[str]:
    """The ``RepoTags`` of a ``docker save`` archive's ``manifest.json`` (what ``docker load`` will tag)."""
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.load(member) if member is not None else []
    except (tarfile.TarError, KeyError, OSError, ValueError) as exc:
        raise ImageFileError(f"{path.name} is not a docker save archive (no readable manifest.json): {exc}") from exc
    tags: list[str] = []
    for entry in manifest if isinstance(manifest, list) else []:
        for tag in (entry.get("RepoTags") or []) if isinstance(entry, dict) else []:
            if isinstance(tag, str) and tag not in tags:
                tags.append(tag)
    return tags


@dataclass(frozen=True)
class LoadedImage:
    """An archive loaded into the engine: the reference to run it by and what provenance records of it."""

    reference: str
    image_id: str
    file_sha256: str


@dataclass
class ArchiveLoader:
    """Loads archives into one docker engine, once per file, and takes back exactly what it added."""

    client: Any
    _loaded: dict[str, LoadedImage] = field(default_factory=dict)  # file sha256 -> image
    _added: list[str] = field(default_factory=list)  # tags (or ids) that were not in the engine before
    _replaced: dict[str, str] = field(default_factory=dict)  # tag -> the id it named before fedsim's load

    def load(self, cube: CubeSpec, say: Say = _quiet) -> LoadedImage:
        source = cube.image_source
        assert source is not None
        path = fetch(cube, source, say)
        sha = check_digest(cube, path, source)
        if sha in self._loaded:
            return self._loaded[sha]
        if source.encrypted:
            with decrypted(cube, path, source.decryption_key) as plain:
                image = self._load_file(cube, plain, sha, say)
        else:
            image = self._load_file(cube, path, sha, say)
        self._loaded[sha] = image
        return image

    def _load_file(self, cube: CubeSpec, path: Path, sha: str, say: Say) -> LoadedImage:
        import docker

        tags = archive_tags(path)
        before = {tag: self._image_id(tag) for tag in tags}
        ids_before = set() if tags else {str(i.id) for i in self.client.images.list()}
        say(f"loading {cube.name}'s image archive")
        try:
            with open(path, "rb") as fh:
                images = self.client.images.load(fh)
        except docker.errors.DockerException as exc:
            raise ImageFileError(f"cube {cube.name!r}: docker cannot load its image archive: {exc}") from exc
        if not images:
            raise ImageFileError(f"cube {cube.name!r}: its image archive holds no image")
        image_id = str(images[0].id)
        for tag, old in before.items():
            if old is None:
                self._added.append(tag)
            elif old != image_id:
                self._replaced[tag] = old
        if not tags and image_id not in ids_before:  # saved by id: run by id, removed after as it was not here
            self._added.append(image_id)
        return LoadedImage(tags[0] if tags else image_id, image_id, sha)

    def _image_id(self, ref: str) -> str | None:
        import docker

        try:
            return str(self.client.images.get(ref).id)
        except docker.errors.DockerException:
            return None

    def remove_loaded(self) -> None:
        """Untag what fedsim's loads added (the engine then removes layers no other image uses), and give a tag
        that a load moved back to the image it named before."""
        import docker

        for ref in reversed(self._added):
            with contextlib.suppress(docker.errors.DockerException):
                self.client.images.remove(ref)
        for tag, old in self._replaced.items():
            with contextlib.suppress(docker.errors.DockerException, ValueError):
                repo, _, name = tag.rpartition(":")
                self.client.images.get(old).tag(repo, name)
        self._added.clear()
        self._replaced.clear()
        self._loaded.clear()


def image_provenance(client: Any, reference: str, file_sha256: str | None = None) -> dict[str, str]:
    """What a job record says of the image it ran: the reference, the engine's image id, the registry digest
    where the image has one, the archive's sha256 where it came from a file."""
    import docker

    record = {"image": reference}
    try:
        attrs = client.images.get(reference).attrs
    except docker.errors.DockerException:
        attrs = {}
    if attrs.get("Id"):
        record["image_id"] = str(attrs["Id"])
    digests = [d for d in attrs.get("RepoDigests") or [] if isinstance(d, str)]
    if digests:
        record["repo_digest"] = digests[0]
    if file_sha256:
        record["file_sha256"] = file_sha256
    return record


def check_image_digest(cube: CubeSpec, record: dict[str, str]) -> None:
    """A registry image's expected ``sha256:`` (``image_digest``) against its id and registry digests."""
    source = cube.image_source
    if source is None or source.digest is None or source.is_file:
        return
    found = {record.get("image_id", "")} | {record.get("repo_digest", "").rpartition("@")[2]}
    if source.digest not in found:
        have = record.get("repo_digest", "").rpartition("@")[2] or record.get("image_id", "unknown")
        raise ImageFileError(
            f"cube {cube.name!r}: image {record['image']} is {have}, the benchmark expects {source.digest} "
            "(image_digest); fix: pull the image the benchmark names, or correct image_digest"
        )
