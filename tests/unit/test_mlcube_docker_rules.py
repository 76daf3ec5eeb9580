"""MLCube 0.0.9's rules that fedsim must apply the same way: the docker section's allowed keys (its runner
stops on any other), and a one-word task entrypoint, to which its docker runner passes no arguments."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from fedsim.cube import bind, load_cube
from fedsim.cube.mlcube import MLCUBE_DOCKER_KEYS
from fedsim.errors import SpecError
from fedsim.runtimes.docker import container_config
from fedsim.runtimes.local import LocalRuntime
from fedsim.submission.static import load_mlcube


def _cube(tmp_path: Path, docker: str, entrypoint: str | None = None) -> Path:
    lines = [
        "name: rules",
        f"docker: {{image: x/rules:1{docker}}}",
        "tasks:",
        "  infer:",
        *([f"    entrypoint: '{entrypoint}'"] if entrypoint else []),
        "    parameters:",
        "      inputs: {data_path: {type: directory, default: data/}}",
        "      outputs: {output_path: {type: directory, default: predictions/}}",
    ]
    (tmp_path / "mlcube.yaml").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_the_allowed_keys_are_mlcubes_own() -> None:
    import warnings

    with warnings.catch_warnings():  # omegaconf 2.1, MLCube's pin, imports the deprecated typing.io
        warnings.simplefilter("ignore", DeprecationWarning)
        from mlcube_docker.docker_run import Config

    assert set(MLCUBE_DOCKER_KEYS) == set(Config.DEFAULT.keys())


@pytest.mark.parametrize("extra", [", run_args: '--shm-size 1g'", ", foo: 1", ", '--shm-size': 1g"])
def test_unknown_docker_keys_are_refused_in_one_line(tmp_path: Path, extra: str) -> None:
    with pytest.raises(SpecError) as err:
        load_cube(_cube(tmp_path, extra))
    text = str(err.value)
    key = extra.split(":")[0].strip(", '")
    assert "\n" not in text and f"Unknown keys: ['{key}']" in text and "Namespace = runner" in text
    assert "allowed: runner, image, docker, env_args" in text and "--cpuset-cpus" in text
    cube, check = load_mlcube(tmp_path)  # check-submission's first check FAILs it
    assert cube is None and check.status.value == "failed" and f"Unknown keys: ['{key}']" in check.cause


def test_mlcubes_own_options_still_load(tmp_path: Path) -> None:
    cube = load_cube(_cube(tmp_path, ", docker: docker, '--security-opt': seccomp=unconfined, runner: docker"))
    assert cube.docker is not None and cube.docker.run_options() == ["--security-opt=seccomp=unconfined"]


@pytest.mark.parametrize(("entrypoint", "args"), [("/bin/echo", False), ("/bin/echo hello", True)])
def test_a_one_word_task_entrypoint_gets_no_arguments_anywhere(tmp_path: Path, entrypoint: str, args: bool) -> None:
    inv = bind(load_cube(_cube(tmp_path, "", entrypoint)), "infer")
    words = shlex.split(entrypoint)
    local = LocalRuntime(python="/usr/bin/python3").argv(inv)
    assert local[: len(words)] == words
    assert (local[len(words) :] != []) is args  # parameters after it only for a multi-word entrypoint
    docker = container_config(inv, "x/rules:1", (65534, 65534))  # MLCube's docker runner: the same rule
    assert docker["entrypoint"] == words[:1] and (docker["command"] != []) is args


@pytest.mark.parametrize("tool", ["docker", "'sudo docker'", "/usr/bin/docker"])
def test_a_docker_program_that_means_the_engine_loads(tmp_path: Path, tool: str) -> None:
    assert load_cube(_cube(tmp_path, f", docker: {tool}")).docker is not None


@pytest.mark.parametrize("tool", ["podman", "nerdctl", "''"])
def test_another_container_program_cannot_take_effect(tmp_path: Path, tool: str) -> None:
    """MLCube would run podman; fedsim talks to the Docker engine's API, so the key would be silence."""
    with pytest.raises(SpecError) as err:
        load_cube(_cube(tmp_path, f", docker: {tool}"))
    text = str(err.value)
    assert "\n" not in text and "docker.docker" in text and "cannot take effect" in text and "fix:" in text
