"""A Python environment per cube on the local runtime (issue 22): requirements, the fast path, the cache key,
the build commands and the one-line hints."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from fedsim.bundled import BENCHMARK
from fedsim.cube import load_cube
from fedsim.runtimes import pyenv
from fedsim.runtimes.local import LocalRuntime
from tests.conftest import FIXTURES

TEMPLATE = FIXTURES / "fets_template"


def test_requirements_come_from_the_context_and_the_dockerfiles_pip_lines(tmp_path: Path) -> None:
    cube_dir = tmp_path / "cube"
    shutil.copytree(TEMPLATE, cube_dir)
    project = cube_dir / "project"
    (project / "more.txt").write_text("# extra\nnibabel>=3  # inline comment\n\n")
    (project / "requirements.txt").write_text("-r more.txt\nPyYAML\n--index-url https://mirror/simple\n")
    dockerfile = project / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "RUN pip install 'scipy>=1' && pip install -r /mlcube_project/x\n")
    req = pyenv.cube_requirements(load_cube(cube_dir / "mlcube"))
    assert req is not None
    assert req.lines == ("nibabel>=3", "PyYAML", "--index-url https://mirror/simple", "scipy>=1")
    assert req.sources == ("project/requirements.txt", "the RUN pip install lines of project/Dockerfile")
    assert req.base_image == "nvcr.io/nvidia/pytorch:20.08-py3"


def test_what_fedsims_python_has_is_satisfied_and_the_rest_is_not() -> None:
    satisfied = ["PyYAML", "numpy>=1", "typer", "--extra-index-url https://x", "fedsim-nope; python_version < '3'"]
    assert pyenv.unsatisfied(satisfied) == []
    assert pyenv.unsatisfied(["numpy<1", "fedsim-no-such-distribution", "-e /src/pkg", "git+https://x/y.git"]) == [
        "numpy<1",
        "fedsim-no-such-distribution",
        "-e /src/pkg",
        "git+https://x/y.git",
    ]


def test_the_bundled_cubes_need_no_environment() -> None:
    cubes = sorted((BENCHMARK / "cubes").iterdir())
    assert len(cubes) >= 4
    runtime = LocalRuntime()
    for cube_dir in cubes:
        cube = load_cube(cube_dir)
        req = pyenv.cube_requirements(cube)
        assert req is None or not pyenv.unsatisfied(req.lines), cube_dir
        assert runtime.prepare(cube) is None, cube_dir  # the fast path: nothing built, fedsim's Python runs it
        assert runtime.environment(cube).python == sys.executable


def test_a_satisfied_requirement_file_takes_the_fast_path(tmp_path: Path) -> None:
    req = pyenv.Requirements(("PyYAML", "numpy"), ("requirements.txt",))
    env = pyenv.ensure_env(load_cube(TEMPLATE / "mlcube"), req)
    assert env == pyenv.PyEnv(sys.executable) and env.root is None
    assert not (pyenv.env_dir(req)).exists()


def test_the_key_follows_the_requirements_and_the_interpreter() -> None:
    a = pyenv.Requirements(("typer", "numpy"), ("a",))
    assert a.key() == pyenv.Requirements(("numpy", "typer"), ("b",)).key()  # order and origin do not matter
    assert a.key() != pyenv.Requirements(("typer", "numpy<2"), ("a",)).key()
    assert a.key() != a.key("/usr/bin/python3")
    assert pyenv.env_dir(a).parent.name == "pyenv"


@pytest.mark.parametrize("offline", [False, True])
def test_build_commands_use_uv_where_present_else_venv_and_pip(tmp_path: Path, offline: bool) -> None:
    root, req = tmp_path / "env", tmp_path / "req.txt"
    uv = pyenv.build_commands(root, req, python="/py", uv="/bin/uv", offline=offline)
    assert uv[0] == ["/bin/uv", "venv", "--python", "/py", "--system-site-packages", "--seed", str(root)]
    assert uv[1][:4] == ["/bin/uv", "pip", "install", "--python"] and ("--offline" in uv[1]) is offline
    pip = pyenv.build_commands(root, req, python="/py", uv=None, offline=offline)
    assert pip[0] == ["/py", "-m", "venv", "--system-site-packages", str(root)]
    assert pip[1][:4] == [str(root / "bin" / "python"), "-m", "pip", "install"]
    assert ("--no-index" in pip[1]) is offline and pip[1][-2:] == ["-r", str(req)]
    outer = pyenv.build_commands(root, req, python="/py", uv=None, offline=offline, outer_pip=True)
    assert outer[0] == ["/py", "-m", "venv", "--system-site-packages", "--without-pip", str(root)]
    assert outer[1][:6] == ["/py", "-m", "pip", "--python", str(root / "bin" / "python"), "install"]


def test_an_unresolvable_requirement_is_one_line_naming_it_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pyenv.OFFLINE_ENV, "1")  # caches only: no index is asked
    req = pyenv.Requirements(("fedsim-no-such-distribution==1.0",), ("project/requirements.txt",))
    with pytest.raises(pyenv.EnvironmentFailed) as exc:
        pyenv.ensure_env(load_cube(TEMPLATE / "mlcube"), req)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "cannot install the requirements of project/requirements.txt" in msg
    assert "fedsim-no-such-distribution==1.0" in msg and "(offline: caches only)" in msg
    assert "fix: run once without --offline" in msg and msg.endswith("or use the docker runtime")
    assert not pyenv.env_dir(req).exists()  # a failed build leaves nothing to reuse


def test_a_missing_module_names_the_base_image_and_the_fix() -> None:
    req = pyenv.Requirements(("typer",), ("project/requirements.txt",))
    log = "Traceback (most recent call last):\n  ...\nModuleNotFoundError: No module named 'torch.nn'\n"
    hint = pyenv.missing_module_hint(log, "nvcr.io/nvidia/pytorch:20.08-py3", req, "/py")
    assert hint == (
        "module 'torch' is missing on the local runtime (it runs with fedsim's Python plus project/requirements.txt): "
        "its base image nvcr.io/nvidia/pytorch:20.08-py3 would have provided it; fix: install it into the Python "
        "running fedsim (/py -m pip install torch), add torch to project/requirements.txt, or use the docker runtime"
    )
    assert pyenv.missing_module_hint("ImportError: libfoo.so", None, None, "/py") is None
    assert "add opencv-python to requirements.txt" in str(
        pyenv.missing_module_hint("ModuleNotFoundError: No module named 'cv2'", None, None, "/py")
    )
