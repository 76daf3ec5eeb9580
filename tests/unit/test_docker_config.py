"""The docker runtime's container configuration is pure: check the hardening without an engine."""

from __future__ import annotations

from pathlib import Path

from fedsim.cube import Isolation, bind, load_cube
from fedsim.runtimes.docker import container_config, container_user, docker_argv
from tests.conftest import CUBES


def _inv(tmp_path: Path, **iso: object):
    return bind(
        load_cube(CUBES / "baseline"),
        "infer",
        {"data_path": tmp_path / "data", "output_path": tmp_path / "out"},
        isolation=Isolation(**iso),  # type: ignore[arg-type]
        labels={"fedsim.job": "s/infer.m"},
    )


def test_model_cube_hardening(tmp_path: Path) -> None:
    cfg = container_config(_inv(tmp_path, untrusted=True, ram_bytes=2**30), "img:1", (65534, 65534))
    assert cfg["network_mode"] == "none"
    assert cfg["cap_drop"] == ["ALL"]
    assert cfg["security_opt"] == ["no-new-privileges"]
    assert cfg["pids_limit"] > 0
    assert cfg["mem_limit"] == cfg["memswap_limit"] == 2**30
    assert cfg["init"] is True
    assert cfg["user"] == "65534:65534"
    assert cfg["labels"]["fedsim"] == "1" and cfg["labels"]["fedsim.job"] == "s/infer.m"
    # MLCube's scheme: inputs read-only, outputs read-write, task first then --param=/mlcube_io{N}
    assert cfg["mounts"] == [
        (str(tmp_path / "data"), "/mlcube_io0", True),
        (str(tmp_path / "out"), "/mlcube_io1", False),
    ]
    assert cfg["command"] == ["infer", "--data_path=/mlcube_io0", "--output_path=/mlcube_io1"]
    # no unbounded writable layer even outside fidelity mode: read-only image, /tmp a tmpfs charged as RAM
    assert cfg["read_only"] is True and "size=1073741824" in cfg["tmpfs"]["/tmp"]
    assert "working_dir" not in cfg  # only fidelity mode moves the working directory
    # the reproducible command line names each limit once
    argv = docker_argv(cfg)
    assert [a for a in argv if a.startswith("--memory")] == [f"--memory={2**30}", f"--memory-swap={2**30}"]


def test_singularity_fidelity_mode(tmp_path: Path) -> None:
    cfg = container_config(_inv(tmp_path, untrusted=True, singularity_fidelity=True), "img:1", (1000, 1000))
    assert cfg["read_only"] is True
    assert "size=67108864" in cfg["tmpfs"]["/tmp"]
    assert cfg["working_dir"] == "/"
    assert cfg["environment"]["HOME"] == "/home/fedsim-nohome"
    argv = docker_argv(cfg)
    assert "--read-only" in argv and "--network=none" in argv and "--cap-drop=ALL" in argv
    assert argv[-4:] == ["img:1", "infer", "--data_path=/mlcube_io0", "--output_path=/mlcube_io1"]


def test_gpus_by_device_id(tmp_path: Path) -> None:
    inv = bind(load_cube(CUBES / "baseline"), "infer", {}, gpu_ids=("GPU-1234",), isolation=Isolation(untrusted=True))
    cfg = container_config(inv, "img", (1, 1))
    assert cfg["gpu_device_ids"] == ["GPU-1234"]
    assert cfg["environment"]["NVIDIA_VISIBLE_DEVICES"] == "GPU-1234"
    assert "--gpus=device=GPU-1234" in docker_argv(cfg)


def test_never_root() -> None:
    uid, gid = container_user()
    assert uid != 0 and gid != 0
