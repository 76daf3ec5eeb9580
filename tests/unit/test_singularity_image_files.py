"""MedPerf's image files on the singularity runtime (issue 21): a ``docker save`` archive built into a cached SIF
(``build x.sif docker-archive://FILE``), a SIF downloaded once, and the encrypted archive and SIF decrypted with
the real gpg into a private folder that ``close()`` removes. The singularity binary cannot exist here: the
recording fake of ``tests/fixtures/fake_singularity`` stands in for it, behind the same command line."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from fedsim.cube.load import with_image_settings
from fedsim.runtimes.imagefiles import DECRYPTED_PREFIX, ImageFileError, sha256_file
from fedsim.runtimes.singularity import SingularityRuntime
from tests.unit import test_imagefiles, test_singularity_runtime
from tests.unit.test_imagefiles import _archive, _cube, _encrypt, needs_gpg
from tests.unit.test_singularity_runtime import _calls

fake_bin = test_singularity_runtime.fake_bin  # the fixtures, shared: the recording fake on PATH
served = test_imagefiles.served  # a local HTTP server of a folder


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "cube"
    folder.mkdir(exist_ok=True)
    return folder


def _builds(bin_dir: Path) -> list[list[str]]:
    return [c["argv"][1:] for c in _calls(bin_dir) if c["argv"][1:2] == ["build"]]


def _runtime(tmp_path: Path, fake: Callable[..., Path]) -> tuple[SingularityRuntime, Path]:
    """The fake on a PATH of its own, plus gpg's folder (the real gpg decrypts)."""
    gpg = shutil.which("gpg")
    bin_dir = fake("singularity")
    if gpg is not None:
        os.environ["PATH"] += os.pathsep + str(Path(gpg).parent)  # fake_bin's monkeypatch restores PATH after
    return SingularityRuntime(cache_dir=tmp_path / "sifcache"), bin_dir


def test_an_archive_is_built_into_a_sif_once_cached_by_its_sha256(
    tmp_path: Path, fake_bin: Callable[..., Path]
) -> None:
    runtime, bin_dir = _runtime(tmp_path, fake_bin)
    _archive(_folder(tmp_path) / "model.tar", [{"RepoTags": ["m/model:1.0"]}])
    cube = _cube(tmp_path, "model.tar")
    sha = sha256_file(tmp_path / "cube" / "model.tar")
    prepared = runtime.prepare(cube)
    sif = tmp_path / "sifcache" / f"archive-{sha.removeprefix('sha256:')}.sif"
    assert (prepared.image, prepared.action) == (str(sif), "converted") and sif.is_file()
    assert [b[0] for b in _builds(bin_dir)] == ["build"]
    assert _builds(bin_dir)[0][2] == f"docker-archive://{tmp_path / 'cube' / 'model.tar'}"
    assert runtime.provenance(cube) == {"reference": "model.tar", "file_sha256": sha}
    assert runtime.sif_for(cube) == sif  # what launch runs
    again = SingularityRuntime(cache_dir=tmp_path / "sifcache").prepare(cube)  # a later run: from the cache
    assert (again.image, again.action) == (str(sif), "present") and len(_builds(bin_dir)) == 1


def test_an_archive_of_another_digest_is_refused_before_it_is_built(
    tmp_path: Path, fake_bin: Callable[..., Path]
) -> None:
    runtime, bin_dir = _runtime(tmp_path, fake_bin)
    _archive(_folder(tmp_path) / "model.tar", [{"RepoTags": ["m/model:1.0"]}])
    cube = with_image_settings(_cube(tmp_path, "model.tar"), None, "sha256:" + "0" * 64, None, "models[0]")
    with pytest.raises(ImageFileError, match=r"the benchmark expects sha256:0+ \(image_digest\)"):
        runtime.prepare(cube)
    assert _builds(bin_dir) == []


def test_a_failed_conversion_is_one_line(
    tmp_path: Path, fake_bin: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _ = _runtime(tmp_path, fake_bin)
    _archive(_folder(tmp_path) / "model.tar", [{"RepoTags": ["m/model:1.0"]}])
    monkeypatch.setenv("FAKE_BUILD_FAIL", "1")
    with pytest.raises(Exception, match=r"converting model\.tar to a SIF failed: FATAL: .* not found"):
        runtime.prepare(_cube(tmp_path, "model.tar"))
    assert not list((tmp_path / "sifcache").glob("*.sif"))


def test_a_sif_url_is_downloaded_once(
    tmp_path: Path,
    fake_bin: Callable[..., Path],
    served: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path / "cache"))
    runtime, bin_dir = _runtime(tmp_path, fake_bin)
    base, root = served
    (root / "model.sif").write_bytes(b"SIF bytes")
    cube = _cube(tmp_path, f"{base}/model.sif", "SingularityFile")
    prepared = runtime.prepare(cube)
    assert Path(prepared.image).read_bytes() == b"SIF bytes" and prepared.action == "present"
    assert Path(prepared.image).is_relative_to(tmp_path / "cache") and _builds(bin_dir) == []
    (root / "model.sif").unlink()
    assert SingularityRuntime(cache_dir=tmp_path / "sifcache").prepare(cube).image == prepared.image


def _private_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(DECRYPTED_PREFIX + "*"))


@needs_gpg
def test_an_encrypted_archive_is_decrypted_built_and_removed_when_the_run_ends(
    tmp_path: Path, fake_bin: Callable[..., Path]
) -> None:
    runtime, bin_dir = _runtime(tmp_path, fake_bin)
    plain = _archive(_folder(tmp_path) / "model.tar", [{"RepoTags": ["m/model:1.0"]}])
    enc, key = _encrypt(plain, "correct horse", tmp_path)
    plain.unlink()
    cube = with_image_settings(_cube(tmp_path, "model.tar.gpg", "EncryptedDockerArchive"), key, None, None, "m")
    before = _private_folders()
    prepared = runtime.prepare(cube)
    sif = Path(prepared.image)
    assert prepared.action == "decrypted" and sif.is_file()
    folder = sif.parent
    assert folder.name.startswith(DECRYPTED_PREFIX) and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not sif.is_relative_to(tmp_path / "sifcache")  # a decrypted image never enters the cache
    (build,) = _builds(bin_dir)
    archive = Path(build[2].removeprefix("docker-archive://"))
    assert archive.name == "image" and not archive.exists()  # the plain archive went as soon as it was built
    assert runtime.provenance(cube) == {"reference": "model.tar.gpg", "file_sha256": sha256_file(enc)}
    assert "correct horse" not in (bin_dir / "calls.jsonl").read_text()  # the passphrase reaches no tool
    runtime.close()
    assert not folder.exists() and _private_folders() == before


@needs_gpg
def test_an_encrypted_sif_is_decrypted_into_a_private_folder(tmp_path: Path, fake_bin: Callable[..., Path]) -> None:
    runtime, bin_dir = _runtime(tmp_path, fake_bin)
    plain = tmp_path / "cube" / "model.sif"
    plain.parent.mkdir(parents=True)
    plain.write_bytes(b"SIF plain bytes")
    _enc, key = _encrypt(plain, "s3cret", tmp_path)
    plain.unlink()
    cube = with_image_settings(_cube(tmp_path, "model.sif.gpg", "EncryptedSingularityFile"), key, None, None, "m")
    prepared = runtime.prepare(cube)
    sif = Path(prepared.image)
    assert sif.read_bytes() == b"SIF plain bytes" and prepared.action == "decrypted" and _builds(bin_dir) == []
    assert runtime.prepare(cube).image == str(sif)  # once per run
    runtime.close()
    assert not sif.parent.exists()


@needs_gpg
def test_a_wrong_key_is_one_line_and_leaves_nothing(tmp_path: Path, fake_bin: Callable[..., Path]) -> None:
    runtime, _ = _runtime(tmp_path, fake_bin)
    plain = _archive(_folder(tmp_path) / "model.tar", [{"RepoTags": ["m/model:1.0"]}])
    _encrypt(plain, "correct horse", tmp_path)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("battery staple\n")
    cube = with_image_settings(_cube(tmp_path, "model.tar.gpg", "EncryptedDockerArchive"), wrong, None, None, "m")
    before = _private_folders()
    with pytest.raises(ImageFileError, match=r"cannot decrypt model\.tar\.gpg") as info:
        runtime.prepare(cube)
    assert "battery" not in str(info.value)
    runtime.close()
    assert _private_folders() == before


def test_the_job_runs_the_sif_of_its_archive(tmp_path: Path, fake_bin: Callable[..., Path]) -> None:
    """``launch`` runs what ``prepare`` made, with MedPerf's singularity argv."""
    from fedsim.cube.invocation import Isolation, bind

    runtime, bin_dir = _runtime(tmp_path, fake_bin)
    _archive(_folder(tmp_path) / "model.tar", [{"RepoTags": ["m/model:1.0"]}])
    cube = _cube(tmp_path, "model.tar")
    sif = runtime.prepare(cube).image
    (tmp_path / "data").mkdir()
    inv = bind(
        cube,
        "infer",
        {"data_path": tmp_path / "data", "output_path": tmp_path / "out"},
        isolation=Isolation(),
        scratch_dir=tmp_path / "scratch",
    )
    inv.create_directories()
    assert sif in runtime.argv(inv)
    handle = runtime.launch(inv, tmp_path / "log.txt", tmp_path / "work")
    assert handle.wait() == 0
    runs = [c["argv"] for c in _calls(bin_dir) if c["argv"][1:2] == ["run"]]
    assert len(runs) == 1 and sif in runs[0]
    assert json.loads((tmp_path / "log.txt").read_text().splitlines()[-1])["sif"] == sif
