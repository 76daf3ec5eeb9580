"""Image files (issue 21): fetching, digests, gpg decryption and ``docker save`` manifests, with the real gpg and
real tar files; the docker load itself is exercised by tests/integration/test_container_config_benchmark.py."""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedsim.cube import load_cube
from fedsim.cube.load import with_image_settings
from fedsim.runtimes.imagefiles import (
    DECRYPTED_PREFIX,
    ImageFileError,
    archive_tags,
    check_digest,
    decrypted,
    fetch,
    sha256_file,
)

# CI (FEDSIM_REQUIRE_DOCKER=1) installs gnupg, so there a missing gpg fails these instead of skipping them
needs_gpg = pytest.mark.skipif(
    shutil.which("gpg") is None and os.environ.get("FEDSIM_REQUIRE_DOCKER") != "1",
    reason="gpg is not installed (apt install gnupg; CI installs it and runs these)",
)


def _cube(tmp_path: Path, image: str, kind: str = "DockerArchive"):  # type: ignore[no-untyped-def]
    folder = tmp_path / "cube"
    folder.mkdir(exist_ok=True)
    (folder / "container_config.yaml").write_text(
        f"container_type: {kind}\nimage: {image}\ntasks:\n  infer:\n    input_volumes:\n      data_path:\n"
        "        mount_path: /mlcommons/volumes/data\n        type: directory\n    output_volumes:\n"
        "      output_path:\n        mount_path: /mlcommons/volumes/predictions\n        type: directory\n"
    )
    return load_cube(folder)


def _archive(path: Path, manifest: object) -> Path:
    with tarfile.open(path, "w") as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def _encrypt(plain: Path, passphrase: str, tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "key.txt"
    key.write_text(passphrase + "\n")
    home = tmp_path / "gpghome"
    home.mkdir(mode=0o700)
    out = plain.with_name(plain.name + ".gpg")
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase-file",
         str(key), "--symmetric", "--output", str(out), str(plain)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False, capture_output=True)
    return out, key


def test_archive_tags_read_the_manifest(tmp_path: Path) -> None:
    tar = _archive(tmp_path / "a.tar", [{"RepoTags": ["m/model:1.0", "m/model:latest"]}, {"RepoTags": None}])
    assert archive_tags(tar) == ["m/model:1.0", "m/model:latest"]
    assert archive_tags(_archive(tmp_path / "b.tar", [{"RepoTags": []}])) == []  # MedPerf: IndexError


def test_a_file_that_is_no_archive_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.tar"
    bad.write_text("not a tar")
    with pytest.raises(ImageFileError, match=r"model\.tar is not a docker save archive"):
        archive_tags(bad)


def test_fetch_a_relative_path_and_a_missing_one(tmp_path: Path) -> None:
    cube = _cube(tmp_path, "model.tar")
    assert cube.image_source is not None
    assert cube.image_source.location == str((tmp_path / "cube" / "model.tar").resolve())
    with pytest.raises(ImageFileError, match=r"its image file .*model\.tar does not exist"):
        fetch(cube, cube.image_source)
    _archive(tmp_path / "cube" / "model.tar", [])
    assert fetch(cube, cube.image_source) == tmp_path / "cube" / "model.tar"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *_a: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_is_downloaded_once_and_cached_by_content(
    tmp_path: Path, served: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path / "cache"))
    base, root = served
    _archive(root / "model.tar", [{"RepoTags": ["m/model:1.0"]}])
    cube = _cube(tmp_path, f"{base}/model.tar")
    assert cube.image_source is not None
    said: list[str] = []
    first = fetch(cube, cube.image_source, said.append)
    assert said == [f"downloading cube's image from {base}/model.tar"]
    assert "sha256:" + first.name == sha256_file(root / "model.tar")
    assert first.is_relative_to(tmp_path / "cache")
    (root / "model.tar").unlink()  # the second time, nothing is asked of the server
    assert fetch(cube, cube.image_source, said.append) == first
    assert len(said) == 1
    gone = _cube(tmp_path, f"{base}/absent.tar")
    assert gone.image_source is not None
    with pytest.raises(ImageFileError, match=r"cannot download its image from .*absent\.tar: HTTP Error 404"):
        fetch(gone, gone.image_source)


def test_an_expected_digest_is_checked(tmp_path: Path) -> None:
    cube = _cube(tmp_path, "model.tar")
    tar = _archive(tmp_path / "cube" / "model.tar", [])
    actual = sha256_file(tar)
    good = with_image_settings(cube, None, actual, file=tmp_path / "b.yaml", field="models[0]")
    assert good.image_source is not None
    assert check_digest(good, tar, good.image_source) == actual
    wrong = with_image_settings(cube, None, "sha256:" + "0" * 64, file=tmp_path / "b.yaml", field="models[0]")
    assert wrong.image_source is not None
    with pytest.raises(ImageFileError, match=rf"has {actual}, the benchmark expects sha256:0{{64}} \(image_digest\)"):
        check_digest(wrong, tar, wrong.image_source)


@needs_gpg
def test_decryption_with_the_right_key_in_a_private_folder_removed_after(tmp_path: Path) -> None:
    plain = tmp_path / "model.tar"
    plain.write_bytes(b"archive bytes")
    enc, key = _encrypt(plain, "correct horse", tmp_path)
    cube = _cube(tmp_path, "model.tar.gpg", "EncryptedDockerArchive")
    with decrypted(cube, enc, key) as out:
        assert out.read_bytes() == b"archive bytes"
        assert out.parent.name.startswith(DECRYPTED_PREFIX)
        assert out.parent.stat().st_mode & 0o077 == 0
        assert Path(tempfile.gettempdir()) in out.parents
    assert not out.parent.exists()


@needs_gpg
def test_a_wrong_key_a_missing_key_and_no_key_are_clear_errors(tmp_path: Path) -> None:
    plain = tmp_path / "model.tar"
    plain.write_bytes(b"archive bytes")
    enc, key = _encrypt(plain, "correct horse", tmp_path)
    cube = _cube(tmp_path, "model.tar.gpg", "EncryptedDockerArchive")
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("battery staple\n")
    before = set(Path(tempfile.gettempdir()).glob(DECRYPTED_PREFIX + "*"))
    with (
        pytest.raises(ImageFileError, match=r"cannot decrypt model\.tar\.gpg: gpg: .*failed") as info,
        decrypted(cube, enc, wrong),
    ):
        pass
    assert "battery" not in str(info.value) and "horse" not in str(info.value)  # no passphrase in the message
    with (
        pytest.raises(ImageFileError, match=r"the decryption key file .*absent\.txt does not exist"),
        decrypted(cube, enc, tmp_path / "absent.txt"),
    ):
        pass
    with (
        pytest.raises(ImageFileError, match=r"is encrypted and no decryption key was given; fix: add decryption_key"),
        decrypted(cube, enc, None),
    ):
        pass
    assert set(Path(tempfile.gettempdir()).glob(DECRYPTED_PREFIX + "*")) == before  # nothing left behind
    assert key.read_text() == "correct horse\n"
