"""MedPerf container-config conformance: fedsim's docker and singularity argv against MedPerf's, row by row.

The rows are the conformance cases of ``docs/medperf-container-format.md`` §7, each test id carrying its row
number. MedPerf's expected values were produced by MedPerf's own code (mlcommons/medperf ``main`` at
``5f3c4c4fce785875b8da65b4a7401e8ecfd304af``) from these files under ``cli/medperf/``:

- ``containers/parsers/factory.py`` (``load_parser``) and ``containers/parsers/simple_container.py``
  (``check_schema``, ``get_volumes``, ``get_run_args``): the schema and its messages (rows 30-38);
- ``containers/runners/factory.py`` (``load_runner``): a Singularity file on docker (row 46);
- ``containers/runners/utils.py`` (``check_allowed_run_args``, ``add_medperf_*``, ``_normalize_gpu_arg``):
  run_args, environment, gpus and ``/tmp`` (rows 14-31);
- ``containers/runners/docker_runner.py`` and ``docker_utils.py`` (``craft_docker_run_command``,
  ``volumes_to_cli_args``): the docker argv and its order (rows 1-45);
- ``containers/runners/singularity_runner.py`` and ``singularity_utils.py``
  (``craft_singularity_run_command``): the singularity argv (rows 47-57);
- ``utils.py`` (``run_command``: ``shlex.join`` then pexpect's re-split, rows 6 and 7), ``encryption.py`` (gpg,
  row 42), ``entities/cube.py`` (``Cube.run``: parameters and additional files, row 38);
- ``templates/{data_preparator,model,evaluator}_container/`` (the fixture F and the template rows).

How the argv is compared: the MedPerf part (``docker run``, ``--rm``, ``-u``, the volumes in declared order then
``<tmp>:/tmp``, ``--network none``, ``--gpus``, ``--shm-size``, ``--env``, ``--entrypoint``; for singularity
``run``/``exec -eC``, the binds, ``--nv``, ``--net --network none``) must equal MedPerf's in MedPerf's order, and
fedsim's own options (``--init``, labels, the hardening of a submission) come after it, before the image, asserted
exactly too. MedPerf's ``--name medperf-<task>-<16 hex>`` is random, so it is checked by its own tests and taken
out of the argv before the exact comparison. fedsim's deliberate departures (the hardening, GPUs it lends itself,
``PYTHONUNBUFFERED``, refusing what MedPerf crashes on or ignores) are asserted as fedsim's values and listed in
``docs/medperf-container-format.md`` §9.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedsim.cube import CubeSpec, ImageKind, Invocation, load_cube
from fedsim.cube.invocation import Isolation, bind
from fedsim.errors import RuntimeUnavailable, SpecError
from fedsim.runtimes.docker import DockerRuntime, command_line, container_config
from fedsim.runtimes.imagefiles import ImageFileError, archive_tags, check_image_digest, decrypted
from fedsim.runtimes.policy import check_image
from fedsim.runtimes.singularity import SingularityRuntime, launch_env, singularity_argv

IMAGE = "mock/model:1.0"
V = "/mlcommons/volumes"
PIDS = 256  # the benchmark's max_pids in these tests
NAME = re.compile(r"medperf-(?P<task>[a-z_]+)-[0-9a-f]{16}")

# fedsim's additions after MedPerf's part of the docker argv (fedsim/runtimes/mountpaths.py fedsim_docker_options)
FEDSIM_TRUSTED = ["--init", "--label=fedsim=1"]
FEDSIM_UNTRUSTED = [
    *FEDSIM_TRUSTED,
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    f"--pids-limit={PIDS}",
    "--log-driver=json-file",
    "--log-opt=max-size=20m",
    "--log-opt=max-file=1",
    "--read-only",
]
UNBUFFERED = "PYTHONUNBUFFERED=1"  # fedsim's one variable (a streaming log), after the task's own


# ---------------------------------------------------------------------------------------------------------------
# The fixture F (MedPerf's model template) and the site it runs on


def f_task(run_args: Any = None, *, with_run_args: bool | None = None) -> dict[str, Any]:
    """F's ``infer`` task, as the model template declares it; ``run_args`` added when given (or forced)."""
    task: dict[str, Any] = {
        "input_volumes": {
            "data_path": {"mount_path": f"{V}/data", "type": "directory"},
            "parameters_file": {"mount_path": f"{V}/parameters/parameters_file.yaml", "type": "file"},
            "additional_files": {"mount_path": f"{V}/additional_files", "type": "directory"},
        },
        "output_volumes": {"output_path": {"mount_path": f"{V}/predictions", "type": "directory"}},
    }
    if run_args is not None or with_run_args:
        task["run_args"] = run_args
    return task


def write_cube(
    folder: Path,
    tasks: Any,
    *,
    container_type: str = "DockerImage",
    image: str = IMAGE,
    parameters: bool = True,
    additional: bool = True,
    **top: Any,
) -> Path:
    """A container config in ``folder`` with MedPerf's registered files where MedPerf keeps them:
    ``<cube>/parameters.yaml`` and ``<cube>/additional_files``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"container_type": container_type, "image": image, "tasks": tasks, **top}
    (folder / "container_config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    if parameters:
        (folder / "parameters.yaml").write_text("threshold: 0.5\n")
    if additional:
        (folder / "additional_files").mkdir(exist_ok=True)
    return folder


@dataclass(frozen=True)
class Site:
    """MedPerf's host values: ``<ds>`` the dataset, ``<preds>`` the predictions, ``<tmp>`` the fresh /tmp."""

    ds: Path
    preds: Path
    tmp: Path

    @classmethod
    def make(cls, root: Path) -> Site:
        site = cls(root / "ds", root / "preds", root / "tmp")
        for d in ("data", "labels"):
            (site.ds / d).mkdir(parents=True)
        return site

    def infer(self) -> dict[str, str | Path]:
        return {"data_path": self.ds / "data", "output_path": self.preds}


def f_vols(site: Site, cube: Path) -> list[str]:
    """VOLS: F's volumes, inputs read-only then outputs read-write, then ``<tmp>:/tmp:rw``."""
    c = cube.resolve()
    return [
        f"{site.ds}/data:{V}/data:ro",
        f"{c}/parameters.yaml:{V}/parameters/parameters_file.yaml:ro",
        f"{c}/additional_files:{V}/additional_files:ro",
        f"{site.preds}:{V}/predictions:rw",
        f"{site.tmp}:/tmp:rw",
    ]


def user(untrusted: bool) -> str:
    """MedPerf's ``-u <uid>:<gid>``; a submission run by root gets ``nobody`` (fedsim's hardening)."""
    uid, gid = os.getuid(), os.getgid()
    return "65534:65534" if untrusted and uid == 0 else f"{uid}:{gid}"


def expected_docker(
    vols: list[str],
    *,
    untrusted: bool,
    gpus: str | None = None,
    shm: str | None = None,
    env: tuple[str, ...] = (UNBUFFERED,),
    entrypoint: str | None = None,
    image: str = IMAGE,
    cmd: tuple[str, ...] = (),
    fedsim: list[str] | None = None,
    lent: tuple[str, ...] = (),
) -> list[str]:
    """MedPerf's ``craft_docker_run_command`` order (less ``--name``), fedsim's options, the image, the command.
    ``lent``: the GPUs fedsim lends the job, named again in ``NVIDIA_VISIBLE_DEVICES`` after the task's own
    variables (§9)."""
    if lent:
        env = (*env, f"NVIDIA_VISIBLE_DEVICES={','.join(lent)}")
    argv = ["docker", "run", "--rm", "-u", user(untrusted)]
    for v in vols:
        argv += ["--volume", v]
    argv += ["--network", "none"]
    if gpus is not None:
        argv += ["--gpus", gpus]
    if shm is not None:
        argv += ["--shm-size", shm]
    for item in env:
        argv += ["--env", item]
    if entrypoint is not None:
        argv += ["--entrypoint", entrypoint]
    argv += fedsim if fedsim is not None else (FEDSIM_UNTRUSTED if untrusted else FEDSIM_TRUSTED)
    return [*argv, image, *cmd]


def expected_singularity(
    vols: list[str],
    *,
    untrusted: bool,
    sif: str,
    nv: bool = False,
    entrypoint: str | None = None,
    cmd: tuple[str, ...] = (),
    binary: str = "singularity",
) -> list[str]:
    """MedPerf's ``craft_singularity_run_command`` order, then fedsim's ``--pids-limit`` for a submission."""
    argv = [binary, "run" if entrypoint is None else "exec", "-eC"]
    for v in vols:
        argv += ["--bind", v]
    if nv:
        argv.append("--nv")
    argv += ["--net", "--network", "none"]
    if untrusted:
        argv.append(f"--pids-limit={PIDS}")
    return [*argv, sif, *([entrypoint] if entrypoint is not None else []), *cmd]


def isolation(untrusted: bool, **kw: Any) -> Isolation:
    return Isolation(untrusted=untrusted, pids_limit=PIDS, **kw)


def bound(
    cube: CubeSpec,
    site: Site,
    *,
    task: str = "infer",
    untrusted: bool = False,
    overrides: dict[str, str | Path] | None = None,
    gpu_ids: tuple[str, ...] = (),
    **iso: Any,
) -> Invocation:
    return bind(
        cube,
        task,
        site.infer() if overrides is None else overrides,
        isolation=isolation(untrusted, **iso),
        gpu_ids=gpu_ids,
        scratch_dir=site.tmp,
    )


def without_name(argv: list[str]) -> list[str]:
    """The argv less MedPerf's random ``--name medperf-<task>-<hex16>`` (pinned by the ``name`` tests)."""
    if argv[2:3] == ["--name"]:
        return argv[:2] + argv[4:]
    return argv


def docker_line(inv: Invocation, image: str = IMAGE) -> list[str]:
    cfg = container_config(inv, image, (os.getuid(), os.getgid()))
    return without_name(command_line(cfg, inv))


def sing_env(inv: Invocation, workdir: Path, binary: str = "singularity") -> dict[str, str]:
    """The launcher's ``*ENV_*`` variables and the GPU variable (PATH, HOME and LANG are checked once, below)."""
    env = launch_env(binary, inv, workdir)
    return {k: v for k, v in env.items() if k not in ("PATH", "HOME", "LANG")}


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site.make(tmp_path)


TRUST = pytest.mark.parametrize("untrusted", [False, True], ids=["trusted", "untrusted"])


# ---------------------------------------------------------------------------------------------------------------
# Docker: F + run_args -> the exact argv (rows 1-29, 34)

DOCKER_ROWS = [
    pytest.param(None, {}, (), id="row01-no-run-args"),
    pytest.param(
        {"command": "python3 /project/infer.py --x 1"},
        {"cmd": ("python3", "/project/infer.py", "--x", "1")},
        (),
        id="row02-command-string",
    ),
    pytest.param(
        {"command": "python -c \"print('a b')\""},
        {"cmd": ("python", "-c", "print('a b')")},
        (),
        id="row03-command-string-quoted",
    ),
    pytest.param(
        {"command": ["infer", "--data_path=/mlcube_io0/", "a b"]},
        {"cmd": ("infer", "--data_path=/mlcube_io0/", "a b")},
        (),
        id="row04-command-list",
    ),
    pytest.param({"command": ["a", "", "b"]}, {"cmd": ("a", "", "b")}, (), id="row05-command-middle-empty-item"),
    # MedPerf builds `a b ""`; pexpect's re-split of the shlex.join string drops the trailing "": executed `a b`
    pytest.param({"command": ["a", "b", ""]}, {"cmd": ("a", "b")}, (), id="row06-command-trailing-empty-item"),
    pytest.param({"command": ""}, {}, (), id="row08-command-empty-string"),
    pytest.param(
        {"entrypoint": "python3", "command": ["/p/infer.py"]},
        {"entrypoint": "python3", "cmd": ("/p/infer.py",)},
        (),
        id="row11-entrypoint",
    ),
    pytest.param({"entrypoint": "python3 -u"}, {"entrypoint": "python3 -u"}, (), id="row12-entrypoint-one-item"),
    pytest.param({"entrypoint": ""}, {"entrypoint": ""}, (), id="row13-entrypoint-empty"),
    pytest.param({"environment": {"A": "1", "B": 2}}, {"env": ("A=1", "B=2", UNBUFFERED)}, (), id="row14-environment"),
    # rows 15/16 without --container-loglevel: fedsim has no such option, so MedPerf adds no MEDPERF_LOGLEVEL either
    pytest.param({"environment": {"A": "1"}}, {"env": ("A=1", UNBUFFERED)}, (), id="row15-environment-no-loglevel"),
    pytest.param(
        {"environment": {"MEDPERF_LOGLEVEL": "info", "Z": "z"}},
        {"env": ("MEDPERF_LOGLEVEL=info", "Z=z", UNBUFFERED)},
        (),
        id="row16-environment-own-loglevel",
    ),
    pytest.param(
        {"environment": {"F": True, "N": None}},
        {"env": ("F=True", "N=None", UNBUFFERED)},
        (),
        id="row17-environment-bool-null",
    ),
    pytest.param(
        {"environment": {"PYTHONUNBUFFERED": "0"}},
        {"env": ("PYTHONUNBUFFERED=0",)},
        (),
        id="row14-environment-task-sets-pythonunbuffered",
    ),
    # gpus: fedsim lends the GPUs itself and names them (like MedPerf's --gpus CLI override, row 26); §9
    pytest.param({"gpus": "all"}, {"gpus": "device=0"}, ("0",), id="row19-gpus-all-one-lent"),
    pytest.param({"gpus": "all"}, {}, (), id="row19-gpus-all-none-lent"),
    pytest.param({"gpus": 1}, {"gpus": "device=3"}, ("3",), id="row20-gpus-count"),
    pytest.param({"gpus": "device=0"}, {"gpus": "device=0"}, ("0",), id="row22-gpus-device"),
    # MedPerf writes `--gpus device=0,2`, which the docker CLI reads as CSV (device 0 plus count 2) and refuses
    # (§2.4); a command line fedsim prints must be the form docker takes: the item double-quoted inside
    pytest.param({"gpus": "device=0,2"}, {"gpus": '"device=0,2"'}, ("0", "2"), id="row23-gpus-two-devices"),
    pytest.param({"gpus": 2}, {"gpus": '"device=0,1"'}, ("0", "1"), id="row20-gpus-count-two"),
    pytest.param({"gpus": "all"}, {"gpus": "device=1"}, ("1",), id="row26-gpus-lent-device-overrides"),
    pytest.param({"shm_size": "2g"}, {"shm": "2g"}, (), id="row27-shm-size"),
    pytest.param({"shm_size": 1073741824}, {"shm": "1073741824"}, (), id="row28-shm-size-int-bytes"),
    pytest.param(
        {"command": "a b", "entrypoint": "/bin/sh", "environment": {"A": "1"}, "gpus": "all", "shm_size": "1g"},
        {"gpus": "device=0", "shm": "1g", "env": ("A=1", UNBUFFERED), "entrypoint": "/bin/sh", "cmd": ("a", "b")},
        ("0",),
        id="row29-all-run-args",
    ),
]

GPUS_NONE = [0, "0", "", None, False]


@TRUST
@pytest.mark.parametrize(("run_args", "want", "gpu_ids"), DOCKER_ROWS)
def test_docker_argv(
    tmp_path: Path, site: Site, untrusted: bool, run_args: Any, want: dict[str, Any], gpu_ids: tuple[str, ...]
) -> None:
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task(run_args)})
    inv = bound(load_cube(cube_dir), site, untrusted=untrusted, gpu_ids=gpu_ids)
    assert docker_line(inv) == expected_docker(f_vols(site, cube_dir), untrusted=untrusted, lent=gpu_ids, **want)


@pytest.mark.parametrize("gpus", GPUS_NONE, ids=[f"row21-gpus-{v!r}" for v in GPUS_NONE])
def test_row21_gpus_none(tmp_path: Path, site: Site, gpus: Any) -> None:
    """No GPU asked for: no ``--gpus``, and the scheduler lends none (accelerator_count 0)."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task({"gpus": gpus})})
    cube = load_cube(cube_dir)
    assert cube.tasks["infer"].gpus is None
    assert cube.platform.accelerator_count == 0
    assert docker_line(bound(cube, site)) == expected_docker(f_vols(site, cube_dir), untrusted=False)


@pytest.mark.parametrize(
    ("gpus", "normalised", "count"),
    [
        pytest.param("all", "all", 1, id="row19-gpus-all"),
        pytest.param(2, "2", 2, id="row20-gpus-int"),
        pytest.param("2", "2", 2, id="row20-gpus-numeric-string"),
        pytest.param("device=0", "device=0", 1, id="row22-gpus-device"),
        pytest.param("device=0,2", "device=0,2", 2, id="row23-gpus-devices"),
    ],
)
def test_gpus_normalised_and_counted(tmp_path: Path, gpus: Any, normalised: str, count: int) -> None:
    """MedPerf's ``_normalize_gpu_arg`` values; the count is how many GPUs fedsim's scheduler lends the job."""
    cube = load_cube(write_cube(tmp_path / "cube", {"infer": f_task({"gpus": gpus})}))
    assert cube.tasks["infer"].gpus == normalised
    assert cube.platform.accelerator_count == count


def test_row01_container_name(tmp_path: Path, site: Site) -> None:
    """``--name medperf-<task>-<16 hex>`` right after ``docker run``, fresh for every run."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task()})
    inv = bound(load_cube(cube_dir), site)
    first = command_line(container_config(inv, IMAGE, (0, 0)), inv)
    second = command_line(container_config(inv, IMAGE, (0, 0)), inv)
    assert first[:3] == ["docker", "run", "--name"]
    match = NAME.fullmatch(first[3])
    assert match is not None and match["task"] == "infer"
    assert first[3] != second[3]


def test_row34_ignored_top_level_keys(tmp_path: Path, site: Site) -> None:
    """MedPerf reads only container_type, image and tasks: a ``name`` and ``description`` change nothing."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task()}, name="mine", description="a model")
    assert docker_line(bound(load_cube(cube_dir), site)) == expected_docker(f_vols(site, cube_dir), untrusted=False)


def test_row44_second_run_keeps_run_args(tmp_path: Path, site: Site) -> None:
    """MedPerf's first run pops the config's run_args, so its 2nd run is ``D mock/model:1.0``; fedsim's spec is
    frozen and both runs get the same argv (a departure, §9)."""
    run_args = {"command": "python3 infer.py", "environment": {"A": "1"}, "gpus": "all"}
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task(run_args)})
    cube = load_cube(cube_dir)
    want = expected_docker(
        f_vols(site, cube_dir),
        untrusted=False,
        gpus="device=0",
        env=("A=1", UNBUFFERED),
        cmd=("python3", "infer.py"),
        lent=("0",),
    )
    assert docker_line(bound(cube, site, gpu_ids=("0",))) == want
    assert docker_line(bound(cube, site, gpu_ids=("0",))) == want


def test_docker_limits_and_fidelity(tmp_path: Path, site: Site) -> None:
    """fedsim's other additions (§9): the site's RAM (swap included) and CPUs, the job's labels and variables;
    under singularity fidelity a read-only image, ``/`` as working directory and no writable HOME."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task({"command": "x"})})
    cube = load_cube(cube_dir)
    inv = bind(
        cube,
        "infer",
        site.infer(),
        isolation=isolation(True, ram_bytes=2**30, cpus=1, singularity_fidelity=True),
        scratch_dir=site.tmp,
        labels={"fedsim.job": "j1"},
        env={"FEDSIM_JOB_TOKEN": "t"},
    )
    fedsim = [
        "--init",
        "--label=fedsim=1",
        "--label=fedsim.job=j1",
        f"--memory={2**30}",
        f"--memory-swap={2**30}",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--pids-limit={PIDS}",
        "--cpus=1",
        "--log-driver=json-file",
        "--log-opt=max-size=20m",
        "--log-opt=max-file=1",
        "--read-only",
        "--workdir=/",
    ]
    env = (UNBUFFERED, "FEDSIM_JOB_TOKEN=t", "HOME=/home/fedsim-nohome")
    want = expected_docker(f_vols(site, cube_dir), untrusted=True, env=env, cmd=("x",), fedsim=fedsim)
    assert docker_line(inv) == want


# ---------------------------------------------------------------------------------------------------------------
# Registered files: parameters.yaml / workspace/parameters.yaml, additional files as a folder or a tarball


def test_workspace_parameters_and_additional_files(tmp_path: Path, site: Site) -> None:
    """The templates' layout: ``workspace/parameters.yaml`` and ``workspace/additional_files/`` are what MedPerf
    registers and then mounts (from ``<cube>/parameters.yaml`` and ``<cube>/additional_files``)."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task()}, parameters=False, additional=False)
    (cube_dir / "workspace" / "additional_files").mkdir(parents=True)
    (cube_dir / "workspace" / "parameters.yaml").write_text("")  # the templates ship it empty
    (cube_dir / "parameters.yaml").write_text("not: this one\n")  # workspace/ wins
    c = cube_dir.resolve()
    vols = f_vols(site, cube_dir)
    vols[1] = f"{c}/workspace/parameters.yaml:{V}/parameters/parameters_file.yaml:ro"
    vols[2] = f"{c}/workspace/additional_files:{V}/additional_files:ro"
    assert docker_line(bound(load_cube(cube_dir), site)) == expected_docker(vols, untrusted=False)


@TRUST
def test_additional_files_tarball(tmp_path: Path, site: Site, untrusted: bool) -> None:
    """``additional_files.tar.gz`` beside the config is unpacked once, by content hash, and mounted read-only (a
    submission may read it although it lies in fedsim's cache, not in the cube's folder)."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task()}, additional=False)
    (tmp_path / "payload").mkdir()
    (tmp_path / "payload" / "weights.bin").write_bytes(b"\x00\x01")
    with tarfile.open(cube_dir / "additional_files.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "payload" / "weights.bin", arcname="weights.bin")
    cube = load_cube(cube_dir)
    unpacked = Path(str(cube.tasks["infer"].parameters.inputs["additional_files"].default))
    assert (unpacked / "weights.bin").read_bytes() == b"\x00\x01"
    assert load_cube(cube_dir).tasks["infer"].parameters.inputs["additional_files"].default == str(unpacked)
    vols = f_vols(site, cube_dir)
    vols[2] = f"{unpacked}:{V}/additional_files:ro"
    assert docker_line(bound(cube, site, untrusted=untrusted)) == expected_docker(vols, untrusted=untrusted)


def test_no_additional_files_mounts_an_empty_folder(tmp_path: Path, site: Site) -> None:
    """MedPerf always creates ``<cube>/additional_files``; fedsim mounts one shared empty folder instead."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task()}, additional=False)
    inv = bound(load_cube(cube_dir), site)
    mount = docker_line(inv)[10]
    host = Path(mount.split(":")[0])
    assert mount == f"{host}:{V}/additional_files:ro"
    assert host.is_dir() and not any(host.iterdir()) and host.name == "empty"


# ---------------------------------------------------------------------------------------------------------------
# Templates: data preparator, evaluator (row 39 and §6.1)


def prep_tasks() -> dict[str, Any]:
    """``templates/data_preparator_container/container_config.yaml``."""
    params = {"parameters_file": {"mount_path": f"{V}/parameters/parameters_file.yaml", "type": "file"}}
    checked = {
        "data_path": {"mount_path": f"{V}/data", "type": "directory"},
        "labels_path": {"mount_path": f"{V}/labels", "type": "directory"},
        **params,
    }
    return {
        "prepare": {
            "run_args": {"command": "python3 /project/prepare_data.py"},
            "input_volumes": {
                "data_path": {"mount_path": f"{V}/raw_data", "type": "directory"},
                "labels_path": {"mount_path": f"{V}/raw_labels", "type": "directory"},
                **params,
            },
            "output_volumes": {
                "output_path": {"mount_path": f"{V}/data", "type": "directory"},
                "output_labels_path": {"mount_path": f"{V}/labels", "type": "directory"},
            },
        },
        "sanity_check": {"run_args": {"command": "python3 /project/check.py"}, "input_volumes": checked},
        "statistics": {
            "run_args": {"command": "python3 /project/statistics.py"},
            "input_volumes": checked,
            "output_volumes": {
                "output_path": {"mount_path": f"{V}/statistics/statistics.yaml", "type": "file"},
            },
        },
    }


def test_template_data_preparator(tmp_path: Path, site: Site) -> None:
    """prepare, sanity_check and statistics as MedPerf runs them for the data preparator template (§4.2)."""
    cube_dir = write_cube(tmp_path / "cube", prep_tasks(), image="docker/image:latest", additional=False)
    cube = load_cube(cube_dir)
    raw = tmp_path / "raw"
    for d in ("data", "labels"):
        (raw / d).mkdir(parents=True)
    params = f"{cube_dir.resolve()}/parameters.yaml:{V}/parameters/parameters_file.yaml:ro"
    data, labels, stats = site.ds / "data", site.ds / "labels", site.ds / "statistics.yaml"
    prepare = bound(
        cube,
        site,
        task="prepare",
        overrides={"data_path": raw / "data", "labels_path": raw / "labels", "output_path": data, **{}}
        | {"output_labels_path": labels},
    )
    checked = [f"{data}:{V}/data:ro", f"{labels}:{V}/labels:ro", params]
    cases = [
        (
            prepare,
            [
                f"{raw}/data:{V}/raw_data:ro",
                f"{raw}/labels:{V}/raw_labels:ro",
                params,
                f"{data}:{V}/data:rw",
                f"{labels}:{V}/labels:rw",
            ],
            ("python3", "/project/prepare_data.py"),
        ),
        (
            bound(cube, site, task="sanity_check", overrides={"data_path": data, "labels_path": labels}),
            checked,
            ("python3", "/project/check.py"),
        ),
        (
            bound(
                cube,
                site,
                task="statistics",
                overrides={"data_path": data, "labels_path": labels, "output_path": stats},
            ),
            [*checked, f"{stats}:{V}/statistics/statistics.yaml:rw"],
            ("python3", "/project/statistics.py"),
        ),
    ]
    for inv, vols, cmd in cases:
        want = expected_docker([*vols, f"{site.tmp}:/tmp:rw"], untrusted=False, image="docker/image:latest", cmd=cmd)
        assert docker_line(inv, "docker/image:latest") == want, inv.task


def test_row39_statistics_file_output(tmp_path: Path, site: Site) -> None:
    """Row 39: a file output is mounted by itself and exists, empty, before the run."""
    tasks = {
        "statistics": {
            "run_args": {"command": "python3 /project/statistics.py"},
            "input_volumes": {
                "data_path": {"mount_path": f"{V}/data", "type": "directory"},
                "labels_path": {"mount_path": f"{V}/labels", "type": "directory"},
            },
            "output_volumes": {"output_path": {"mount_path": f"{V}/statistics/statistics.yaml", "type": "file"}},
        }
    }
    cube_dir = write_cube(tmp_path / "cube", tasks)
    stats = site.ds / "statistics.yaml"
    overrides: dict[str, str | Path] = {
        "data_path": site.ds / "data",
        "labels_path": site.ds / "labels",
        "output_path": stats,
    }
    inv = bound(load_cube(cube_dir), site, task="statistics", overrides=overrides)
    vols = [
        f"{site.ds}/data:{V}/data:ro",
        f"{site.ds}/labels:{V}/labels:ro",
        f"{stats}:{V}/statistics/statistics.yaml:rw",
        f"{site.tmp}:/tmp:rw",
    ]
    assert docker_line(inv) == expected_docker(vols, untrusted=False, cmd=("python3", "/project/statistics.py"))
    assert not stats.exists()
    inv.create_directories()
    assert stats.is_file() and stats.read_bytes() == b""
    assert site.tmp.is_dir()


def test_template_evaluator(tmp_path: Path, site: Site) -> None:
    """``templates/evaluator_container``: evaluate with no run_args, results as a file output (§4.3)."""
    task = {
        "input_volumes": {
            "predictions": {"mount_path": f"{V}/predictions", "type": "directory"},
            "labels": {"mount_path": f"{V}/labels", "type": "directory"},
            "parameters_file": {"mount_path": f"{V}/parameters/parameters_file.yaml", "type": "file"},
        },
        "output_volumes": {"output_path": {"mount_path": f"{V}/results/results.yaml", "type": "file"}},
    }
    cube_dir = write_cube(tmp_path / "cube", {"evaluate": task}, image="docker/image:latest")
    results = tmp_path / "results" / "results"  # MedPerf: an extension-less temporary path
    overrides: dict[str, str | Path] = {
        "predictions": site.preds,
        "labels": site.ds / "labels",
        "output_path": results,
    }
    site.preds.mkdir()
    inv = bound(load_cube(cube_dir), site, task="evaluate", overrides=overrides)
    vols = [
        f"{site.preds}:{V}/predictions:ro",
        f"{site.ds}/labels:{V}/labels:ro",
        f"{cube_dir.resolve()}/parameters.yaml:{V}/parameters/parameters_file.yaml:ro",
        f"{results}:{V}/results/results.yaml:rw",
        f"{site.tmp}:/tmp:rw",
    ]
    assert docker_line(inv, "docker/image:latest") == expected_docker(
        vols, untrusted=False, image="docker/image:latest"
    )
    inv.create_directories()
    assert results.is_file() and results.read_bytes() == b""


# ---------------------------------------------------------------------------------------------------------------
# Errors: no container is started. Each names the file, the task's key and how to fix it.


def _cfg(tasks: Any = None, **top: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"container_type": "DockerImage", "image": IMAGE, "tasks": tasks or {"infer": f_task()}}
    data.update(top)
    return {k: v for k, v in data.items() if v is not _DROP}


_DROP = object()


def _f_with(run_args: Any) -> dict[str, Any]:
    return _cfg({"infer": f_task(run_args, with_run_args=True)})


def _volume(io: str, key: str, vol: Any) -> dict[str, Any]:
    task = f_task()
    task[io][key] = vol
    return _cfg({"infer": task})


def _task_key(key: str, value: Any) -> dict[str, Any]:
    task = f_task()
    task[key] = value
    return _cfg({"infer": task})


RUN_ARGS = "tasks.infer.run_args"
ALLOWED = "allowed: command, entrypoint, environment, gpus, shm_size"
TYPES = "DockerImage, DockerArchive, EncryptedDockerArchive, SingularityFile, EncryptedSingularityFile"

ERROR_ROWS = [
    pytest.param(
        _f_with({"command": ["--epochs", 3]}),
        f"{RUN_ARGS}.command[1]",
        ["command items must be strings, got 3", "fix: quote it"],
        id="row07-command-int-item",
    ),
    pytest.param(
        _f_with({"command": 5}),
        f"{RUN_ARGS}.command",
        ["command must be a string or a list of strings, got int"],
        id="row09-command-int",
    ),
    pytest.param(
        _f_with({"command": {"a": 1, "b": 2}}),
        f"{RUN_ARGS}.command",
        ["command must be a string or a list of strings, got dict", "pass the mapping’s keys"],
        id="row10-command-mapping",
    ),
    pytest.param(
        _f_with({"entrypoint": ["python3", "-u"]}),
        f"{RUN_ARGS}.entrypoint",
        ["entrypoint must be one string", "\"['python3', '-u']\"", "fix: give the program as entrypoint"],
        id="sec1.3-entrypoint-list",
    ),
    pytest.param(
        _f_with({"environment": None}),
        f"{RUN_ARGS}.environment",
        ["environment must be a mapping of NAME: value, got nothing"],
        id="row18-environment-null",
    ),
    *[
        pytest.param(
            _f_with({"gpus": g}),
            f"{RUN_ARGS}.gpus",
            [f"Invalid gpus argument {g!r}", "fix: one of all, a count such as 1, device=0 or device=0,1"],
            id=f"row24-gpus-{g!r}",
        )
        for g in ["1,2", "ALL", [0, 1], "device=", 1.0, "-1"]
    ],
    pytest.param(
        _f_with({"gpus": True}),
        f"{RUN_ARGS}.gpus",
        ["Invalid gpus argument True", "fix: one of all"],
        id="row25-gpus-true",
    ),
    pytest.param(
        _f_with({"shm_size": "lots"}),
        f"{RUN_ARGS}.shm_size",
        ["shm_size must be a size such as 2g or 512m, got 'lots'"],
        id="row28-shm-size-not-a-size",
    ),
    pytest.param(
        _f_with({"user": "root", "command": "x"}),
        f"{RUN_ARGS}.user",
        ["Run args user are not allowed", ALLOWED],
        id="row30-run-args-user",
    ),
    pytest.param(
        _f_with({"network": "host", "volumes": []}),
        f"{RUN_ARGS}.network",
        ["Run args network, volumes are not allowed", ALLOWED],
        id="row30-run-args-network-volumes",
    ),
    pytest.param(
        _f_with(None),
        RUN_ARGS,
        ["run_args must be a mapping", "got nothing", "fix: give the options or remove run_args"],
        id="row31-run-args-null",
    ),
    pytest.param(
        _volume("input_volumes", "data_path", {"mount_path": f"{V}/data"}),
        "tasks.infer.input_volumes.data_path",
        ["Container config task volumes should have a 'type' and 'mount_path' fields", "fix: give both"],
        id="row32-volume-without-type",
    ),
    pytest.param(
        _volume("input_volumes", "data_path", {"mount_path": f"{V}/data", "type": "dir"}),
        "tasks.infer.input_volumes.data_path.type",
        ["Mount type should be either a file or a directory", "'dir'"],
        id="row32-volume-type-dir",
    ),
    pytest.param(
        _task_key("input_volumes", None),
        "tasks.infer.input_volumes",
        ["input_volumes", "fix:"],
        id="row33-input-volumes-null",
    ),
    pytest.param(
        _cfg({"infer": None}),
        "tasks.infer",
        ["the task has no settings", "fix: give it input_volumes/output_volumes"],
        id="row33-task-null",
    ),
    pytest.param(
        _task_key("entrypoint", "python3"),
        "tasks.infer.entrypoint",
        ["unknown task key entrypoint: MedPerf ignores it", "fix: remove it"],
        id="row34-task-level-entrypoint",
    ),
    pytest.param(
        _volume("output_volumes", "output_path", {"mount_path": f"{V}/predictions", "type": "directory", "opts": "ro"}),
        "tasks.infer.output_volumes.output_path.opts",
        ["unknown volume key opts: MedPerf ignores it", "fix: remove it"],
        id="row34-volume-opts",
    ),
    pytest.param(
        _cfg(container_type="mlcube"),
        "container_type",
        [
            "container_type 'mlcube' is not a container config",
            f"fix: give the cube's mlcube.yaml instead, or one of {TYPES}",
        ],
        id="row35-container-type-mlcube",
    ),
    pytest.param(
        _cfg(container_type="Docker"),
        "container_type",
        [f"Invalid container type: Docker. Expected: {TYPES}"],
        id="row35-container-type-unknown",
    ),
    pytest.param(
        _cfg(container_type=_DROP),
        "container_type",
        ["Container configuration should contain a 'container_type' field", f"fix: one of {TYPES}"],
        id="row35-container-type-missing",
    ),
    pytest.param(
        _cfg(image=_DROP),
        "image",
        ["Container config should have an 'image' field", "fix: add it"],
        id="row35-image-missing",
    ),
    pytest.param(
        _cfg(tasks=_DROP) | {"tasks": None} if False else {"container_type": "DockerImage", "image": IMAGE},
        "tasks",
        ["Container config should have a 'tasks' field", "fix: add it"],
        id="row35-tasks-missing",
    ),
    pytest.param(
        _volume("input_volumes", "model_files", {"mount_path": f"{V}/model", "type": "directory"}),
        "tasks.infer.input_volumes.model_files",
        ["model_files is never supplied to infer", "KeyError: 'model_files'", "fix: remove it"],
        id="row37-key-not-supplied",
    ),
    pytest.param(
        _volume("input_volumes", "data_path", {"mount_path": "/tmp", "type": "directory"}),
        "tasks.infer.input_volumes.data_path.mount_path",
        ["/tmp clashes with the container's /tmp", "fix: mount it elsewhere"],
        id="row40-input-at-tmp",
    ),
    pytest.param(
        _volume("input_volumes", "data_path", {"mount_path": "data", "type": "directory"}),
        "tasks.infer.input_volumes.data_path.mount_path",
        ["mount_path must be an absolute container path, got 'data'"],
        id="sec1.1-mount-path-relative",
    ),
    pytest.param(
        _volume("input_volumes", "data_path", {"mount_path": f"{V}/predictions", "type": "directory"}),
        "tasks.infer",
        [f"mount path {V}/predictions is used twice"],
        id="sec1.4-mount-path-twice",
    ),
    pytest.param(
        _cfg(container_type="DockerArchive", image="synapse:syn123"),
        "image",
        ["fedsim cannot log in to Synapse", "fix: download the file"],
        id="sec1.2-image-synapse",
    ),
]


@pytest.mark.parametrize(("config", "field", "fragments"), ERROR_ROWS)
def test_load_refuses(tmp_path: Path, config: dict[str, Any], field: str, fragments: list[str]) -> None:
    cube_dir = tmp_path / "cube"
    cube_dir.mkdir()
    (cube_dir / "parameters.yaml").write_text("")
    (cube_dir / "additional_files").mkdir()
    (cube_dir / "container_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(SpecError) as err:
        load_cube(cube_dir)
    file = str(cube_dir / "container_config.yaml")
    assert (err.value.file, err.value.field) == (file, field)
    assert str(err.value).startswith(f"{file}: {field}: ")
    for fragment in fragments:
        assert fragment in str(err.value)


def test_sec1_1_empty_config(tmp_path: Path) -> None:
    """MedPerf: "Container config file … is empty" at submission."""
    (tmp_path / "container_config.yaml").write_text("")
    with pytest.raises(SpecError) as err:
        load_cube(tmp_path)
    assert str(err.value) == f"{tmp_path}/container_config.yaml: the file is empty; expected a mapping of settings"


def test_row36_task_not_in_config(tmp_path: Path, site: Site) -> None:
    """MedPerf: "Task evaluate is not found in container config."."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task()})
    with pytest.raises(SpecError) as err:
        bound(load_cube(cube_dir), site, task="evaluate", overrides={})
    file = str(cube_dir.resolve() / "container_config.yaml")
    assert (err.value.file, err.value.field) == (file, "tasks")
    assert str(err.value) == f"{file}: tasks: cube 'cube' has no task 'evaluate'; it has: infer"


@TRUST
def test_row38_no_registered_parameters(tmp_path: Path, site: Site, untrusted: bool) -> None:
    """MedPerf: "Internal error: input volume should exist: <cube>/parameters.yaml"; fedsim says so at bind time."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task()}, parameters=False)
    with pytest.raises(SpecError) as err:
        bound(load_cube(cube_dir), site, untrusted=untrusted)
    file = str(cube_dir.resolve() / "container_config.yaml")
    field = "tasks.infer.input_volumes.parameters_file"
    assert (err.value.file, err.value.field) == (file, field)
    assert str(err.value) == (
        f"{file}: {field}: parameters_file is declared but nothing supplies it to infer here; fix: add "
        "workspace/parameters.yaml beside the config, or give the benchmark's parameters_file"
    )


def test_sec4_2_metadata_only_when_prepare_outputs_it(tmp_path: Path) -> None:
    """MedPerf offers ``metadata_path`` to sanity_check only when prepare declares it as an output (else a
    KeyError at run time); with prepare's output it loads."""
    tasks = prep_tasks()
    tasks["sanity_check"]["input_volumes"]["metadata_path"] = {"mount_path": f"{V}/metadata", "type": "directory"}
    cube_dir = write_cube(tmp_path / "cube", tasks)
    with pytest.raises(SpecError) as err:
        load_cube(cube_dir)
    assert err.value.field == "tasks.sanity_check.input_volumes.metadata_path"
    assert "only when prepare declares it in its output_volumes" in str(err.value)
    tasks["prepare"]["output_volumes"]["metadata_path"] = {"mount_path": f"{V}/metadata", "type": "directory"}
    write_cube(cube_dir, tasks)
    assert list(load_cube(cube_dir).tasks["sanity_check"].parameters.inputs) == [
        "data_path",
        "labels_path",
        "parameters_file",
        "metadata_path",
    ]


# ---------------------------------------------------------------------------------------------------------------
# Container types: where the image comes from (rows 41-46)


@pytest.mark.parametrize(
    ("container_type", "image", "kind", "encrypted", "location"),
    [
        pytest.param("DockerImage", IMAGE, ImageKind.REGISTRY, False, IMAGE, id="row01-DockerImage"),
        pytest.param(
            "DockerArchive", "https://h/model.tar", ImageKind.ARCHIVE, False, "https://h/model.tar", id="row41-archive"
        ),
        pytest.param(
            "EncryptedDockerArchive",
            "direct:https://h/model.tar.gpg",
            ImageKind.ARCHIVE,
            True,
            "https://h/model.tar.gpg",
            id="row42-encrypted-archive",
        ),
        pytest.param("SingularityFile", "model.sif", ImageKind.SIF, False, "<cube>/model.sif", id="row47-sif-local"),
        pytest.param(
            "EncryptedSingularityFile",
            "https://h/model.simg.gpg",
            ImageKind.SIF,
            True,
            "https://h/model.simg.gpg",
            id="row56-encrypted-sif",
        ),
    ],
)
def test_container_types(
    tmp_path: Path, container_type: str, image: str, kind: ImageKind, encrypted: bool, location: str
) -> None:
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task()}, container_type=container_type, image=image)
    cube = load_cube(cube_dir)
    source = cube.image_source
    assert source is not None
    want = location.replace("<cube>", str(cube_dir.resolve()))
    assert (source.kind, source.encrypted, source.location) == (kind, encrypted, want)
    assert cube.image_ref == (IMAGE if kind is ImageKind.REGISTRY else None)


def _docker_save(path: Path, repo_tags: Any) -> Path:
    """A tar holding only the ``manifest.json`` of a ``docker save`` archive."""
    manifest = json.dumps([{"Config": "c.json", "RepoTags": repo_tags, "Layers": []}]).encode()
    info = tarfile.TarInfo("manifest.json")
    info.size = len(manifest)
    with tarfile.open(path, "w") as tar:
        import io

        tar.addfile(info, io.BytesIO(manifest))
    return path


@TRUST
def test_row41_archive_first_repo_tag(tmp_path: Path, site: Site, untrusted: bool) -> None:
    """``docker load`` then ``D mock/model:1.0 x``: the archive's first RepoTag is what runs."""
    archive = _docker_save(tmp_path / "model.tar", ["mock/model:1.0", "mock/model:latest"])
    assert archive_tags(archive) == ["mock/model:1.0", "mock/model:latest"]
    cube_dir = write_cube(
        tmp_path / "cube", {"infer": f_task({"command": "x"})}, container_type="DockerArchive", image=str(archive)
    )
    inv = bound(load_cube(cube_dir), site, untrusted=untrusted)
    tag = archive_tags(archive)[0]
    assert docker_line(inv, tag) == expected_docker(f_vols(site, cube_dir), untrusted=untrusted, cmd=("x",))


@pytest.mark.parametrize("repo_tags", [[], None], ids=["row43-repo-tags-empty", "row43-repo-tags-null"])
def test_row43_archive_without_tags(tmp_path: Path, repo_tags: Any) -> None:
    """MedPerf: IndexError / TypeError after the load; fedsim runs such an archive by its image id (§9)."""
    assert archive_tags(_docker_save(tmp_path / "model.tar", repo_tags)) == []


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")
def test_row42_decrypted_then_removed(tmp_path: Path) -> None:
    """``gpg --batch --decrypt --passphrase-file <key>`` into a private folder, removed as soon as it is loaded."""
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    plain = tmp_path / "model.tar"
    plain.write_bytes(b"archive bytes")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    encrypt = ["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback"]
    encrypt += ["--passphrase-file", str(key), "--symmetric", "--output", str(tmp_path / "model.tar.gpg"), str(plain)]
    subprocess.run(encrypt, check=True, capture_output=True)
    with contextlib.suppress(OSError):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False, capture_output=True)
    cube_dir = write_cube(
        tmp_path / "cube", {"infer": f_task()}, container_type="EncryptedDockerArchive", image="../model.tar.gpg"
    )
    cube = load_cube(cube_dir)
    with decrypted(cube, tmp_path / "model.tar.gpg", key) as out:
        assert out.read_bytes() == b"archive bytes"
        assert (out.parent.stat().st_mode & 0o777) == 0o700
    assert not out.exists() and not out.parent.exists()


def test_row45_digest_mismatch(tmp_path: Path) -> None:
    """MedPerf: "Hash mismatch. Expected sha256:other, found sha256:feed."."""
    from fedsim.cube.load import with_image_settings

    cube = load_cube(write_cube(tmp_path / "cube", {"infer": f_task()}))
    pinned = with_image_settings(cube, None, "sha256:other", None, "models[0]")
    record = {"image": IMAGE, "image_id": "sha256:1d", "repo_digest": "mock/model@sha256:feed"}
    with pytest.raises(ImageFileError) as err:
        check_image_digest(pinned, record)
    assert str(err.value) == (
        f"cube 'cube': image {IMAGE} is sha256:feed, the benchmark expects sha256:other (image_digest); fix: pull "
        "the image the benchmark names, or correct image_digest"
    )
    check_image_digest(with_image_settings(cube, None, "sha256:feed", None, "models[0]"), record)


def test_row46_singularity_file_on_docker(tmp_path: Path) -> None:
    """MedPerf: "Cannot run this container using docker"."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task()}, container_type="SingularityFile", image="m.sif")
    with pytest.raises(RuntimeUnavailable) as err:
        check_image(load_cube(cube_dir), DockerRuntime.capabilities, "docker")
    assert str(err.value) == (
        "cube 'cube' is a Singularity file, which the docker runtime cannot run (it runs: "
        + ", ".join(k.value for k in DockerRuntime.capabilities.image_kinds)
        + "); fix: use the singularity runtime"
    )
    check_image(load_cube(cube_dir), SingularityRuntime.capabilities, "singularity")


# ---------------------------------------------------------------------------------------------------------------
# Singularity (rows 47-57)

SIF = "/images/model.sif"

SINGULARITY_ROWS = [
    pytest.param(
        {"command": "python3 infer.py", "environment": {"A": "1"}},
        {"cmd": ("python3", "infer.py")},
        {"SINGULARITYENV_A": "1", "SINGULARITYENV_PYTHONUNBUFFERED": "1"},
        (),
        id="row47-command-environment",
    ),
    pytest.param(
        {"command": ["infer"]}, {"cmd": ("infer",)}, {"SINGULARITYENV_PYTHONUNBUFFERED": "1"}, (), id="row48-list"
    ),
    pytest.param(
        {"entrypoint": "python3", "command": "infer.py -v"},
        {"entrypoint": "python3", "cmd": ("infer.py", "-v")},
        {"SINGULARITYENV_PYTHONUNBUFFERED": "1"},
        (),
        id="row49-entrypoint-exec",
    ),
    # fedsim lends GPUs itself: --nv plus the devices as NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES (§9)
    pytest.param(
        {"gpus": "all"},
        {"nv": True},
        {
            "SINGULARITYENV_PYTHONUNBUFFERED": "1",
            "NVIDIA_VISIBLE_DEVICES": "0",
            "SINGULARITYENV_CUDA_VISIBLE_DEVICES": "0",
        },
        ("0",),
        id="row50-gpus-all",
    ),
    pytest.param(
        {"gpus": "device=0,1"},
        {"nv": True},
        {
            "SINGULARITYENV_PYTHONUNBUFFERED": "1",
            "NVIDIA_VISIBLE_DEVICES": "0,1",
            "SINGULARITYENV_CUDA_VISIBLE_DEVICES": "0,1",
        },
        ("0", "1"),
        id="row50-gpus-devices",
    ),
    pytest.param(
        {"gpus": 2},
        {"nv": True},
        {
            "SINGULARITYENV_PYTHONUNBUFFERED": "1",
            "NVIDIA_VISIBLE_DEVICES": "2,3",
            "SINGULARITYENV_CUDA_VISIBLE_DEVICES": "2,3",
        },
        ("2", "3"),
        id="row50-gpus-count",
    ),
    pytest.param({"gpus": "all"}, {}, {"SINGULARITYENV_PYTHONUNBUFFERED": "1"}, (), id="row50-gpus-all-none-lent"),
    pytest.param({"shm_size": "2g"}, {}, {"SINGULARITYENV_PYTHONUNBUFFERED": "1"}, (), id="row51-shm-size-dropped"),
    pytest.param(
        {"environment": {"N": 3}},
        {},
        {"SINGULARITYENV_N": "3", "SINGULARITYENV_PYTHONUNBUFFERED": "1"},
        (),
        id="row57-environment-int",
    ),
]


@TRUST
@pytest.mark.parametrize(("run_args", "want", "env", "gpu_ids"), SINGULARITY_ROWS)
def test_singularity_argv(
    tmp_path: Path,
    site: Site,
    untrusted: bool,
    run_args: dict[str, Any],
    want: dict[str, Any],
    env: dict[str, str],
    gpu_ids: tuple[str, ...],
) -> None:
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task(run_args)})
    inv = bound(load_cube(cube_dir), site, untrusted=untrusted, gpu_ids=gpu_ids)
    assert singularity_argv("singularity", SIF, inv) == expected_singularity(
        f_vols(site, cube_dir), untrusted=untrusted, sif=SIF, **want
    )
    assert sing_env(inv, tmp_path / "work") == env


def test_row47_singularity_file(tmp_path: Path, site: Site) -> None:
    """A ``SingularityFile`` runs as it is: its own path is the SIF (MedPerf: ``<hashed>/<sha>``, downloaded)."""
    cube_dir = write_cube(
        tmp_path / "cube",
        {"infer": f_task({"command": "python3 infer.py", "environment": {"A": "1"}})},
        container_type="SingularityFile",
        image="model.sif",
    )
    (cube_dir / "model.sif").write_bytes(b"SIF")
    cube = load_cube(cube_dir)
    sif = cube_dir.resolve() / "model.sif"
    assert SingularityRuntime(binary="/bin/true").sif_for(cube) == sif
    inv = bound(cube, site, untrusted=True)
    want = expected_singularity(f_vols(site, cube_dir), untrusted=True, sif=str(sif), cmd=("python3", "infer.py"))
    assert singularity_argv("singularity", sif, inv) == want


def test_apptainer_env_prefix(tmp_path: Path, site: Site) -> None:
    """With apptainer the variables are ``APPTAINERENV_*`` (MedPerf writes ``SINGULARITYENV_*`` for both), and
    the launcher's environment holds nothing of the host's but PATH and LANG."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task({"environment": {"A": "1"}})})
    inv = bound(load_cube(cube_dir), site)
    assert singularity_argv("/usr/bin/apptainer", SIF, inv)[:3] == ["/usr/bin/apptainer", "run", "-eC"]
    assert launch_env("/usr/bin/apptainer", inv, tmp_path / "work") == {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(tmp_path / "work"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "APPTAINERENV_A": "1",
        "APPTAINERENV_PYTHONUNBUFFERED": "1",
    }


def test_row52_no_environment_leak(tmp_path: Path, site: Site) -> None:
    """MedPerf writes ``SINGULARITYENV_*`` and ``NVIDIA_VISIBLE_DEVICES`` into its own environment, where they
    reach every later run; fedsim's are the one launch's own."""
    first = write_cube(tmp_path / "a", {"infer": f_task({"environment": {"A": "1"}, "gpus": "all"})})
    second = write_cube(tmp_path / "b", {"infer": f_task()})
    before = dict(os.environ)
    assert sing_env(bound(load_cube(first), site, gpu_ids=("0",)), tmp_path / "w")["SINGULARITYENV_A"] == "1"
    assert sing_env(bound(load_cube(second), site), tmp_path / "w") == {"SINGULARITYENV_PYTHONUNBUFFERED": "1"}
    assert dict(os.environ) == before


def test_row53_second_singularity_run(tmp_path: Path, site: Site) -> None:
    """MedPerf's second run fails with "Run args env are not allowed."; fedsim's repeats the first."""
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task({"command": "x"})})
    cube = load_cube(cube_dir)
    want = expected_singularity(f_vols(site, cube_dir), untrusted=False, sif=SIF, cmd=("x",))
    assert singularity_argv("singularity", SIF, bound(cube, site)) == want
    assert singularity_argv("singularity", SIF, bound(cube, site)) == want


def test_singularity_refuses_separator_in_host_path(tmp_path: Path) -> None:
    """``:`` separates ``--bind`` fields, so a host path holding one cannot be bound (MedPerf passes it on)."""
    site = Site.make(tmp_path / "a:b")
    cube_dir = write_cube(tmp_path / "cube", {"infer": f_task()})
    inv = bound(load_cube(cube_dir), site)
    with pytest.raises(RuntimeUnavailable) as err:
        singularity_argv("singularity", SIF, inv)
    assert str(err.value) == f"singularity cannot bind {site.ds}/data: ':' and ',' are separators in --bind"


@contextlib.contextmanager
def _unused() -> Iterator[None]:  # pragma: no cover - keeps contextlib imported for the gpg test
    yield
