"""MLCube's task invocation scheme: parsing, path resolution, mounts and arguments (docs/mlcube-compatibility.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.cube import Isolation, bind, container_mounts, load_cube
from fedsim.errors import SpecError
from tests.conftest import CUBES, write_yaml


def _cube(tmp_path: Path, tasks: dict, **extra: object) -> Path:
    write_yaml(
        tmp_path / "mlcube.yaml",
        {"name": "c", "docker": {"image": "x/y:1", "build_context": "project"}, "tasks": tasks, **extra},
    )
    return tmp_path


def test_parameter_forms_and_type_inference(tmp_path: Path) -> None:
    """MLCube 0.0.9: declared type wins; trailing slash → directory; an untyped input is typed by the host."""
    ws = tmp_path / "workspace"
    (ws / "exists_dir").mkdir(parents=True)
    (ws / "exists.yaml").write_text("a: 1\n")
    cube = load_cube(
        _cube(
            tmp_path,
            {
                "t": {
                    "parameters": {
                        "inputs": {
                            "data": "data/",
                            "params": "exists.yaml",
                            "d2": "exists_dir",
                            "ck": {"type": "file", "default": "m/w.pt"},
                            "nodefault": {"type": "directory"},
                            "bare": None,
                        },
                        "outputs": {"out": {"type": "directory", "default": "out", "opts": "rw"}},
                    }
                }
            },
        )
    )
    (ws / "bare").mkdir()
    inv = bind(cube, "t")
    kinds = {p.name: (p.type, p.host_path) for p in inv.parameters}
    assert kinds == {
        "data": ("directory", ws / "data"),
        "params": ("file", ws / "exists.yaml"),
        "d2": ("directory", ws / "exists_dir"),
        "ck": ("file", ws / "m" / "w.pt"),
        "nodefault": ("directory", ws / "nodefault"),  # no default: the parameter's name
        "bare": ("directory", ws / "bare"),
        "out": ("directory", ws / "out"),
    }


def test_untyped_missing_input_and_untyped_output_are_errors(tmp_path: Path) -> None:
    cube = load_cube(_cube(tmp_path, {"t": {"parameters": {"inputs": {"a": "missing"}}}}))
    with pytest.raises(SpecError, match="cannot tell a file from a directory"):
        bind(cube, "t")
    # a trailing slash on the value given on the command line types it, as in MLCube
    assert bind(cube, "t", {"a": str(tmp_path / "x") + "/"}).parameters[0].type == "directory"
    cube = load_cube(_cube(tmp_path, {"t": {"parameters": {"outputs": {"o": "result"}}}}))
    with pytest.raises(SpecError, match="output parameter needs a type"):
        bind(cube, "t")


def test_interpolation_env_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDSIM_TEST_DIR", str(tmp_path / "envdir"))
    cube = load_cube(
        _cube(
            tmp_path,
            {
                "t": {
                    "parameters": {
                        "inputs": {"a": "${runtime.workspace}/a/", "b": "$FEDSIM_TEST_DIR/b/", "c": "~/c/"},
                        "outputs": {"o": {"type": "file", "default": "${workspace}/${name}.yaml"}},
                    }
                }
            },
        )
    )
    got = {p.name: p.host_path for p in bind(cube, "t").parameters}
    assert got == {
        "a": tmp_path / "workspace" / "a",
        "b": tmp_path / "envdir" / "b",
        "c": Path.home() / "c",
        "o": tmp_path / "workspace" / "c.yaml",
    }
    _cube(tmp_path, {"t": {"parameters": {"inputs": {"a": "${nowhere.x}/"}}}})
    with pytest.raises(SpecError, match="cannot resolve an interpolation"):
        load_cube(tmp_path)


def test_docker_section_forms(tmp_path: Path) -> None:
    cube = load_cube(
        _cube(
            tmp_path,
            {"t": {}},
            platform={"accelerator_count": None},
        )
    )
    assert cube.platform.accelerator_count == 0
    write_yaml(
        tmp_path / "mlcube.yaml",
        {
            "name": "c",
            "docker": {"image": "x", "build_args": "--no-cache", "env_args": {"A": 1}, "--memory": "1g"},
            "tasks": {"t": None},
        },
    )
    d = load_cube(tmp_path).docker
    assert d is not None and d.build_args == "--no-cache" and d.env_args == {"A": "1"}
    assert d.run_options() == ["--memory=1g"]  # MLCube's own "--" keys only: "--shm-size" is refused


def test_defaults_resolve_against_workspace_in_order(tmp_path: Path) -> None:
    cube = load_cube(
        _cube(
            tmp_path,
            {
                "t": {
                    "parameters": {
                        "inputs": {"b": "b/", "a": {"type": "file", "default": "a.yaml"}},
                        "outputs": {"z": "z/", "y": {"type": "file", "default": "res/y.yaml"}},
                    }
                }
            },
        )
    )
    inv = bind(cube, "t")
    ws = tmp_path / "workspace"
    assert [(p.name, p.io, p.host_path) for p in inv.parameters] == [
        ("b", "input", ws / "b"),
        ("a", "input", ws / "a.yaml"),
        ("z", "output", ws / "z"),
        ("y", "output", ws / "res" / "y.yaml"),
    ]
    assert inv.host_args() == [
        f"--b={ws / 'b'}",
        f"--a={ws / 'a.yaml'}",
        f"--z={ws / 'z'}",
        f"--y={ws / 'res/y.yaml'}",
    ]


def test_custom_workspace_and_absolute_defaults(tmp_path: Path) -> None:
    _cube(tmp_path, {"t": {"parameters": {"inputs": {"a": "/abs/in/"}, "outputs": {"o": "o/"}}}})
    cube = load_cube(tmp_path, workspace=tmp_path / "ws2")
    inv = bind(cube, "t")
    assert inv.parameters[0].host_path == Path("/abs/in")
    assert inv.parameters[1].host_path == tmp_path / "ws2" / "o"
    assert cube.workspace_dir == tmp_path / "ws2"


def test_container_mounts_follow_mlcube(tmp_path: Path) -> None:
    cube = load_cube(
        _cube(
            tmp_path,
            {
                "evaluate": {
                    "parameters": {
                        "inputs": {
                            "predictions": "preds/",
                            "labels": "labels/",
                            "parameters_file": {"type": "file", "default": "parameters.yaml"},
                        },
                        "outputs": {"output_path": {"type": "file", "default": "results.yaml"}},
                    }
                }
            },
        )
    )
    inv = bind(cube, "evaluate")
    mounts, args = container_mounts(inv)
    ws = tmp_path / "workspace"
    # directory → its own mount; both files live in the workspace → they share one mount (parent dir).
    assert [(m.host_path, m.container_path) for m in mounts] == [
        (ws / "preds", "/mlcube_io0"),
        (ws / "labels", "/mlcube_io1"),
        (ws, "/mlcube_io2"),
    ]
    assert args == [
        "--predictions=/mlcube_io0",
        "--labels=/mlcube_io1",
        "--parameters_file=/mlcube_io2/parameters.yaml",
        "--output_path=/mlcube_io2/results.yaml",
    ]
    # MLCube mounts read-write unless a parameter declares opts: ro
    assert [m.read_only for m in mounts] == [False, False, False]
    # fedsim's hardening for submissions: every mount no output uses is read-only
    hardened = bind(cube, "evaluate", isolation=Isolation(untrusted=True))
    assert [m.read_only for m in container_mounts(hardened)[0]] == [True, True, False]


def test_opts_merge_like_mlcube(tmp_path: Path) -> None:
    tasks = {
        "t": {
            "parameters": {
                "inputs": {"a": {"type": "directory", "default": "d", "opts": "ro"}, "b": "d/", "c": "e/"},
                "outputs": {
                    "o": {"type": "directory", "default": "e", "opts": "ro"},
                    "p": {"type": "file", "default": "e/x", "opts": "rw"},
                },
            }
        }
    }
    mounts, args = container_mounts(bind(load_cube(_cube(tmp_path, tasks)), "t"))
    # d: a says ro, b says nothing → ro; e: o says ro, p says rw → conflict → rw
    assert [(m.container_path, m.read_only) for m in mounts] == [("/mlcube_io0", True), ("/mlcube_io1", False)]
    assert args == ["--a=/mlcube_io0", "--b=/mlcube_io0", "--c=/mlcube_io1", "--o=/mlcube_io1", "--p=/mlcube_io1/x"]


def test_pinned_file_parameter_never_mounts_its_parent(tmp_path: Path) -> None:
    """A model declaring data_path as a file would get the site directory (with labels/) under MLCube."""
    site = tmp_path / "site"
    (site / "prepared").mkdir(parents=True)
    (site / "labels").mkdir()
    tasks = {
        "infer": {
            "parameters": {
                "inputs": {"data_path": {"type": "file", "default": "d"}},
                "outputs": {"output_path": {"type": "file", "default": "o"}},
            }
        }
    }
    cube = load_cube(_cube(tmp_path / "cube", tasks))
    paths = {"data_path": site / "prepared", "output_path": site / "predictions" / "m"}
    inv = bind(cube, "infer", paths, isolation=Isolation(untrusted=True), pinned=set(paths))
    mounts, args = container_mounts(inv)
    assert args == ["--data_path=/mlcube_io0/prepared", "--output_path=/mlcube_io1/m"]  # MLCube's arguments
    assert [(m.host_path, m.container_path, m.read_only) for m in mounts] == [
        (site / "prepared", "/mlcube_io0/prepared", True),
        (site / "predictions" / "m", "/mlcube_io1/m", False),
    ]


def test_submission_inputs_stay_in_its_own_directory(tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    for default in (str(tmp_path / "secret") + "/", "../../secret/"):
        tasks = {
            "infer": {"parameters": {"inputs": {"data_path": "d/", "w": default}, "outputs": {"output_path": "o/"}}}
        }
        cube = load_cube(_cube(tmp_path / "cube", tasks))
        with pytest.raises(SpecError, match="outside the cube's own directory"):
            bind(cube, "infer", isolation=Isolation(untrusted=True), pinned={"data_path", "output_path"})
        bind(cube, "infer")  # trusted cubes get MLCube's paths


def test_unset_outputs_go_to_the_job_directory(tmp_path: Path) -> None:
    tasks = {"t": {"parameters": {"outputs": {"o": "res/", "log": {"type": "file", "default": "/abs/evaluate.log"}}}}}
    inv = bind(load_cube(_cube(tmp_path, tasks)), "t", outputs_dir=tmp_path / "job")
    assert [p.host_path for p in inv.parameters] == [tmp_path / "job" / "res", tmp_path / "job" / "evaluate.log"]


def test_identical_host_paths_share_one_mount(tmp_path: Path) -> None:
    cube = load_cube(_cube(tmp_path, {"t": {"parameters": {"inputs": {"a": "d/", "b": "d/"}, "outputs": {"o": "d/"}}}}))
    mounts, args = container_mounts(bind(cube, "t"))
    assert len(mounts) == 1 and not mounts[0].read_only
    assert args == ["--a=/mlcube_io0", "--b=/mlcube_io0", "--o=/mlcube_io0"]


def test_overrides_replace_defaults_and_unknown_names_are_ignored(tmp_path: Path) -> None:
    cube = load_cube(CUBES / "baseline")
    inv = bind(cube, "infer", {"data_path": tmp_path / "in", "output_path": tmp_path / "out", "nope": tmp_path})
    assert inv.host_args() == [f"--data_path={tmp_path / 'in'}", f"--output_path={tmp_path / 'out'}"]
    # relative values given on the command line resolve in the workspace, as with `mlcube run key=value`
    assert bind(cube, "infer", {"data_path": "rel/"}).parameters[0].host_path == cube.workspace_dir / "rel"


def test_every_declared_parameter_is_passed(tmp_path: Path) -> None:
    """The FeTS model template requires --parameters_file and --checkpoint_path: MLCube passes their defaults."""
    cube = load_cube(
        _cube(
            tmp_path,
            {
                "infer": {
                    "parameters": {
                        "inputs": {
                            "data_path": "data/",
                            "parameters_file": {"type": "file", "default": "null"},
                            "checkpoint_path": {"type": "file", "default": "null"},
                        },
                        "outputs": {"output_path": "output/"},
                    }
                }
            },
        )
    )
    inv = bind(cube, "infer", {"data_path": tmp_path / "d", "output_path": tmp_path / "o"})
    assert container_mounts(inv)[1] == [
        "--data_path=/mlcube_io0",
        "--parameters_file=/mlcube_io1/null",
        "--checkpoint_path=/mlcube_io1/null",
        "--output_path=/mlcube_io2",
    ]


def test_directories_are_created_like_mlcube(tmp_path: Path) -> None:
    tasks = {
        "t": {
            "parameters": {
                "inputs": {"i": "in/", "g": {"type": "file", "default": "cfg/a.yaml"}},
                "outputs": {"o": "o/", "f": {"type": "file", "default": "r/x.yaml"}},
            }
        }
    }
    bind(load_cube(_cube(tmp_path, tasks)), "t").create_directories()
    for d in ("in", "cfg", "o", "r"):
        assert (tmp_path / "workspace" / d).is_dir()


def test_unknown_task_and_bad_parameter(tmp_path: Path) -> None:
    cube = load_cube(_cube(tmp_path, {"t": {}}))
    with pytest.raises(SpecError, match="has no task 'infer'"):
        cube.task("infer")
    _cube(tmp_path, {"t": {"parameters": {"inputs": {"a": {"default": "x", "type": "folder"}}}}})
    with pytest.raises(SpecError, match=r"tasks.t.parameters.inputs.a.type"):
        load_cube(tmp_path)
    # MLCube ignores other keys of a parameter (a description, say); so does fedsim
    _cube(tmp_path, {"t": {"parameters": {"inputs": {"a": {"default": "x/", "description": "d"}}}}})
    assert load_cube(tmp_path).tasks["t"].parameters.inputs["a"].default == "x/"


def test_other_platform_sections_are_ignored(tmp_path: Path) -> None:
    cube = load_cube(_cube(tmp_path, {"t": {}}, ssh={"host": "x"}, authors=[{"name": "n"}]))
    assert cube.name == "c"


def test_reference_cubes_parse() -> None:
    for name in ("baseline", "data_prep", "metrics"):
        cube = load_cube(CUBES / name)
        assert cube.docker is not None and cube.build_context_dir.name == "project"
