"""The singularity runtime against a fake binary: FeTS flags, SIF conversion cached by digest, launch, kill."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fedsim.cube import Isolation, bind, load_cube
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes import select
from fedsim.runtimes.singularity import SingularityRuntime, launch_env, singularity_argv
from tests.conftest import CUBES, FIXTURES, write_yaml

FAKE = FIXTURES / "fake_singularity" / "singularity"
REAL_BINARY = select.singularity_binary()


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install the fake under the given names on a PATH that holds nothing else (but python3 for its shebang)."""

    def install(*names: str) -> Path:
        bin_dir = tmp_path / "bin"
        py_dir = tmp_path / "py"
        bin_dir.mkdir(exist_ok=True)
        py_dir.mkdir(exist_ok=True)
        if not (py_dir / "python3").exists():
            (py_dir / "python3").symlink_to(sys.executable)
        for name in names:
            shutil.copy(FAKE, bin_dir / name)
            (bin_dir / name).chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{py_dir}")
        return bin_dir

    return install


def _calls(bin_dir: Path) -> list[dict]:
    path = bin_dir / "calls.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


class FakeImages:
    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids

    def get(self, tag: str) -> SimpleNamespace:
        return SimpleNamespace(id=self.ids[tag])


def _present_as_is(cube):  # type: ignore[no-untyped-def]
    """The fake engine has the image but no build labels: tell the builder to use it as it is."""
    assert cube.docker is not None
    return cube.model_copy(update={"docker": cube.docker.model_copy(update={"build_strategy": "never"})})


class FakeClient:
    """Just enough of docker.DockerClient: every image exists locally and has an id."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.images = FakeImages(ids)


def _sif_cube(tmp_path: Path, **iso: object) -> tuple[Path, object]:
    root = tmp_path / "cube"
    write_yaml(
        root / "mlcube.yaml",
        {
            "name": "tiny",
            "docker": {"image": "tiny/model:1", "build_strategy": "never"},
            "singularity": {"image": "tiny.sif"},
            "tasks": {"infer": {"parameters": {"inputs": {"data_path": "data/"}, "outputs": {"output_path": "out/"}}}},
        },
    )
    (root / "tiny.sif").write_text("fake sif")
    (tmp_path / "data").mkdir(exist_ok=True)
    env = iso.pop("env", {})
    inv = bind(
        load_cube(root),
        "infer",
        {"data_path": tmp_path / "data", "output_path": tmp_path / "out"},
        env=env,  # type: ignore[arg-type]
        isolation=Isolation(**iso),  # type: ignore[arg-type]
    )
    inv.create_directories()
    return root, inv


def test_model_cube_argv_has_the_fets_flags(tmp_path: Path) -> None:
    inv = bind(
        load_cube(CUBES / "baseline"),
        "infer",
        {"data_path": tmp_path / "data", "output_path": tmp_path / "out"},
        isolation=Isolation(untrusted=True),
    )
    assert singularity_argv("/usr/bin/singularity", "/c/m.sif", inv) == [
        "/usr/bin/singularity",
        "run",
        "-C",
        "--writable-tmpfs",
        "--net",
        "--network=none",
        "--nv",
        "--pids-limit=1024",
        "--bind",
        f"{tmp_path / 'data'}:/mlcube_io0:ro",
        "--bind",
        f"{tmp_path / 'out'}:/mlcube_io1",
        "--pwd",
        "/",
        "--env",
        "PYTHONUNBUFFERED=1",
        "/c/m.sif",
        "infer",
        "--data_path=/mlcube_io0",
        "--output_path=/mlcube_io1",
    ]


def test_shared_mount_and_file_parameter(tmp_path: Path) -> None:
    # parameters.yaml lives in the data directory: one shared read-only mount, the file addressed inside it
    inv = bind(
        load_cube(CUBES / "data_prep"),
        "statistics",
        {
            "data_path": tmp_path / "prep",
            "labels_path": tmp_path / "labels",
            "parameters_file": tmp_path / "prep" / "parameters.yaml",
            "output_path": tmp_path / "res" / "statistics.yaml",
        },
        isolation=Isolation(untrusted=True),
    )
    argv = singularity_argv("singularity", "x.sif", inv)
    binds = [argv[i + 1] for i, a in enumerate(argv) if a == "--bind"]
    assert binds == [
        f"{tmp_path / 'prep'}:/mlcube_io0:ro",
        f"{tmp_path / 'labels'}:/mlcube_io1:ro",
        f"{tmp_path / 'res'}:/mlcube_io2",
    ]
    assert argv[argv.index("x.sif") :] == [
        "x.sif",
        "statistics",
        "--data_path=/mlcube_io0",
        "--labels_path=/mlcube_io1",
        "--parameters_file=/mlcube_io0/parameters.yaml",
        "--output_path=/mlcube_io2/statistics.yaml",
    ]


def test_metrics_cube_gets_cleanenv_and_no_gpu_or_network_flags(tmp_path: Path) -> None:
    inv = bind(load_cube(CUBES / "metrics"), "evaluate", {"predictions": tmp_path / "p", "labels": tmp_path / "l"})
    argv = singularity_argv("apptainer", "m.sif", inv)
    assert argv[:4] == ["apptainer", "run", "-C", "--cleanenv"]
    assert not {"--nv", "--net", "--writable-tmpfs"} & set(argv)
    assert argv[argv.index("--pwd") + 1] == "/"


def test_env_is_passed_with_csv_quoting_and_bad_paths_are_refused(tmp_path: Path) -> None:
    _, inv = _sif_cube(tmp_path, env={"A": "1", "LIST": 'x,"y"'})
    argv = singularity_argv("singularity", "x.sif", inv)
    envs = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    assert envs == ["PYTHONUNBUFFERED=1", "A=1", '"LIST=x,""y"""']
    weird = bind(load_cube(CUBES / "baseline"), "infer", {"data_path": tmp_path / "a:b"})
    with pytest.raises(RuntimeUnavailable, match="cannot bind"):
        singularity_argv("singularity", "x.sif", weird)


def test_gpus_are_restricted_through_the_launcher_environment(tmp_path: Path, fake_bin) -> None:
    bin_dir = fake_bin("singularity", "apptainer")
    inv = bind(
        load_cube(CUBES / "baseline"), "infer", {}, gpu_ids=("GPU-a", "GPU-b"), isolation=Isolation(untrusted=True)
    )
    env = launch_env(str(bin_dir / "singularity"), inv, tmp_path)
    assert env["SINGULARITYENV_CUDA_VISIBLE_DEVICES"] == "GPU-a,GPU-b"
    assert set(env) == {"PATH", "HOME", "LANG", "SINGULARITYENV_CUDA_VISIBLE_DEVICES"}
    assert env["HOME"] == str(tmp_path)
    assert launch_env(str(bin_dir / "apptainer"), inv, tmp_path)["APPTAINERENV_CUDA_VISIBLE_DEVICES"] == "GPU-a,GPU-b"
    (bin_dir / "singularity").unlink()
    (bin_dir / "singularity").symlink_to(bin_dir / "apptainer")  # apptainer's compatibility link
    assert "APPTAINERENV_CUDA_VISIBLE_DEVICES" in launch_env(str(bin_dir / "singularity"), inv, tmp_path)
    no_gpu = bind(load_cube(CUBES / "baseline"), "infer", {}, isolation=Isolation(untrusted=True))
    assert launch_env("singularity", no_gpu, tmp_path)["SINGULARITYENV_CUDA_VISIBLE_DEVICES"] == ""  # --nv sees none


def test_binary_choice(fake_bin) -> None:
    bin_dir = fake_bin("apptainer")
    assert SingularityRuntime().binary == str(bin_dir / "apptainer")  # accepted when singularity is missing
    fake_bin("singularity")
    assert SingularityRuntime().binary == str(bin_dir / "singularity")  # as select.singularity_binary()


def test_no_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeUnavailable, match="neither 'singularity' nor 'apptainer' is on PATH"):
        SingularityRuntime()


def test_sif_converted_once_per_digest(tmp_path: Path, fake_bin) -> None:
    bin_dir = fake_bin("singularity")
    cube = _present_as_is(load_cube(CUBES / "baseline"))
    tag = "fedsim/fets-baseline:0.1"
    client = FakeClient({tag: "sha256:" + "ab" * 32})
    cache = tmp_path / "cache"
    rt = SingularityRuntime(docker_client=client, cache_dir=cache)
    rt.prepare(cube)
    rt.prepare(cube)
    SingularityRuntime(docker_client=client, cache_dir=cache).prepare(cube)  # a fresh process: the disk cache
    builds = [c["argv"] for c in _calls(bin_dir) if c["argv"][1] == "build"]
    assert len(builds) == 1
    assert builds[0][0] == str(bin_dir / "singularity")
    assert builds[0][3] == f"docker-daemon://{tag}"
    assert Path(builds[0][2]).parent == cache
    sif = cache / f"{'ab' * 32}.sif"
    assert sif.read_text() == f"fake sif of docker-daemon://{tag}\n"
    assert [p.name for p in cache.glob("*.sif")] == [sif.name]  # no temporary left behind
    inv = bind(cube, "infer", {}, isolation=Isolation(untrusted=True))
    assert str(sif) in rt.argv(inv)

    client.images.ids[tag] = "sha256:" + "cd" * 32  # the image was rebuilt: a new SIF
    SingularityRuntime(docker_client=client, cache_dir=cache).prepare(cube)
    assert len([c for c in _calls(bin_dir) if c["argv"][1] == "build"]) == 2


def test_conversion_failure_reports_the_tools_last_line(
    tmp_path: Path, fake_bin, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin("singularity")
    monkeypatch.setenv("FAKE_BUILD_FAIL", "1")
    client = FakeClient({"fedsim/fets-baseline:0.1": "sha256:01"})
    rt = SingularityRuntime(docker_client=client, cache_dir=tmp_path / "cache")
    with pytest.raises(
        RuntimeUnavailable, match=r"failed: FATAL: .*docker-daemon://fedsim/fets-baseline:0.1 not found"
    ):
        rt.prepare(_present_as_is(load_cube(CUBES / "baseline")))
    assert not list((tmp_path / "cache").glob("*.sif"))


def test_declared_sif_needs_no_docker(tmp_path: Path, fake_bin, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_bin("singularity")
    monkeypatch.setattr(select, "docker_available", lambda: False)
    root, inv = _sif_cube(tmp_path)
    rt = SingularityRuntime(cache_dir=tmp_path / "cache")
    rt.prepare(inv.cube)
    assert rt.argv(inv)[-4] == str(root / "tiny.sif")
    assert _calls(bin_dir) == []
    (root / "tiny.sif").unlink()
    with pytest.raises(RuntimeUnavailable, match=r"no SIF image .* and no Docker engine"):
        SingularityRuntime(cache_dir=tmp_path / "cache").prepare(inv.cube)


def test_launch_runs_with_a_minimal_environment(tmp_path: Path, fake_bin, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin("singularity")
    monkeypatch.setenv("FEDSIM_TEST_SECRET", "leak")
    root, inv = _sif_cube(tmp_path, untrusted=True, env={"MODEL_FLAG": "on"})
    log = tmp_path / "logs" / "job.log"
    handle = SingularityRuntime().launch(inv, log, tmp_path / "work")
    assert handle.wait(20) == 0
    head, out = log.read_text().splitlines()[:2]
    assert head.startswith("$ ") and "--network=none" in head  # the command, for reproducing by hand
    call = json.loads(out)
    assert call["sif"] == str(root / "tiny.sif") and call["task"] == "infer"
    assert call["env"] == {"PYTHONUNBUFFERED": "1", "MODEL_FLAG": "on"}
    assert call["binds"] == [f"{tmp_path / 'data'}:/mlcube_io0:ro", f"{tmp_path / 'out'}:/mlcube_io1"]
    assert "FEDSIM_TEST_SECRET" not in call["launcher_env"]
    assert call["cuda"] == {"SINGULARITYENV_CUDA_VISIBLE_DEVICES": ""}


def test_terminate_kills_a_sleeping_tree_within_the_grace_period(tmp_path: Path, fake_bin) -> None:
    fake_bin("singularity")
    _, inv = _sif_cube(tmp_path, untrusted=True, env={"FAKE_SLEEP": "60", "FAKE_IGNORE_TERM": "1"})
    log = tmp_path / "job.log"
    handle = SingularityRuntime().launch(inv, log, tmp_path / "work")
    deadline = time.monotonic() + 20
    while "sleeping" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert handle.wait(0) is None
    pids = handle.host_pids()
    assert len(pids) >= 2  # the fake and its child
    started = time.monotonic()
    handle.terminate(grace_s=0.5)
    assert time.monotonic() - started < 3
    assert handle.wait(0) is not None
    gone_by = time.monotonic() + 2  # SIGKILL is asynchronous: an orphaned child may take a moment to exit
    while handle.host_pids() and time.monotonic() < gone_by:
        time.sleep(0.02)
    assert handle.host_pids() == set()
    handle.cleanup()


@pytest.mark.singularity
@pytest.mark.skipif(REAL_BINARY is None, reason="needs singularity or apptainer on PATH")
def test_real_binary_runs_a_tiny_cube(tmp_path: Path) -> None:
    assert REAL_BINARY is not None
    version = subprocess.run([REAL_BINARY, "--version"], capture_output=True, text=True, check=True, timeout=60)
    assert "version" in version.stdout
    if not select.docker_available():
        pytest.skip("converting an image needs a Docker engine")
    root = tmp_path / "cube"
    (root / "project").mkdir(parents=True)
    (root / "project" / "Dockerfile").write_text(
        "FROM debian:bookworm-slim\n"
        'ENTRYPOINT ["sh", "-c", "echo \\"$0 $*\\" > /mlcube_io1/out.txt; echo \\"home=$HOME pwd=$(pwd)\\""]\n'
    )
    write_yaml(
        root / "mlcube.yaml",
        {
            "name": "tiny-real",
            "docker": {"image": "fedsim-test/tiny-real:0.1", "build_context": "project", "build_strategy": "auto"},
            "tasks": {"infer": {"parameters": {"inputs": {"data_path": "data/"}, "outputs": {"output_path": "out/"}}}},
        },
    )
    inv = bind(
        load_cube(root),
        "infer",
        {"data_path": tmp_path / "data", "output_path": tmp_path / "out"},
        isolation=Isolation(untrusted=False),
    )
    (tmp_path / "data").mkdir()
    inv.create_directories()
    rt = SingularityRuntime(cache_dir=tmp_path / "sif")
    try:
        rt.prepare(inv.cube)
    except RuntimeUnavailable as exc:
        pytest.skip(f"cannot build the test image here: {exc}")
    handle = rt.launch(inv, tmp_path / "job.log", tmp_path / "work")
    assert handle.wait(120) == 0, (tmp_path / "job.log").read_text()
    assert (tmp_path / "out" / "out.txt").read_text().split() == [
        "infer",
        "--data_path=/mlcube_io0",
        "--output_path=/mlcube_io1",
    ]
    assert "pwd=/" in (tmp_path / "job.log").read_text()
