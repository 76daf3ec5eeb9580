"""MLCube's task invocation scheme (DESIGN §4): parsing, path resolution, mounts and arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.cube import bind, container_mounts, load_cube
from fedsim.errors import SpecError
from tests.conftest import CUBES, write_yaml


def _cube(tmp_path: Path, tasks: dict, **extra: object) -> Path:
    write_yaml(
        tmp_path / "mlcube.yaml",
        {"name": "c", "docker": {"image": "x/y:1", "build_context": "project"}, "tasks": tasks, **extra},
    )
    return tmp_path


def test_parameter_forms_and_type_inference(tmp_path: Path) -> None:
    cube = load_cube(
        _cube(
            tmp_path,
            {
                "t": {
                    "parameters": {
                        "inputs": {
                            "data": "data/",
                            "params": "parameters.yaml",
                            "ck": {"type": "file", "default": "m/w.pt"},
                        },
                        "outputs": {"out": {"type": "directory", "default": "out", "opts": "rw"}},
                    }
                }
            },
        )
    )
    p = cube.tasks["t"].parameters
    assert p.inputs["data"].type == "directory"  # trailing slash
    assert p.inputs["params"].type == "file"  # no slash
    assert p.inputs["ck"].type == "file"
    assert p.outputs["out"].type == "directory"


def test_defaults_resolve_against_workspace_in_order(tmp_path: Path) -> None:
    cube = load_cube(
        _cube(
            tmp_path,
            {
                "t": {
                    "parameters": {
                        "inputs": {"b": "b/", "a": "a.yaml"},
                        "outputs": {"z": "z/", "y": "res/y.yaml"},
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
    cube = load_cube(_cube(tmp_path, {"t": {"parameters": {"inputs": {"a": "/abs/in/"}}}}, workspace="ws2"))
    inv = bind(cube, "t")
    assert inv.parameters[0].host_path == Path("/abs/in")
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
                            "parameters_file": "parameters.yaml",
                        },
                        "outputs": {"output_path": "results.yaml"},
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
    # the shared mount holds an output, so it must be writable; the input-only ones are read-only
    assert [m.read_only for m in mounts] == [True, True, False]


def test_identical_host_paths_share_one_mount(tmp_path: Path) -> None:
    cube = load_cube(_cube(tmp_path, {"t": {"parameters": {"inputs": {"a": "d/", "b": "d/"}, "outputs": {"o": "d/"}}}}))
    mounts, args = container_mounts(bind(cube, "t"))
    assert len(mounts) == 1 and not mounts[0].read_only
    assert args == ["--a=/mlcube_io0", "--b=/mlcube_io0", "--o=/mlcube_io0"]


def test_overrides_replace_defaults_and_unknown_names_fail(tmp_path: Path) -> None:
    cube = load_cube(CUBES / "baseline")
    inv = bind(cube, "infer", {"data_path": tmp_path / "in", "output_path": tmp_path / "out"})
    assert inv.host_args() == [f"--data_path={tmp_path / 'in'}", f"--output_path={tmp_path / 'out'}"]
    with pytest.raises(SpecError, match="no parameter checkpoint"):
        bind(cube, "infer", {"checkpoint": tmp_path})


def test_only_restricts_to_the_federation_parameters(tmp_path: Path) -> None:
    cube = load_cube(
        _cube(
            tmp_path,
            {
                "infer": {
                    "parameters": {
                        "inputs": {"data_path": "d/", "parameters_file": "p.yaml", "checkpoint_path": "ck/"},
                        "outputs": {"output_path": "o/"},
                    }
                }
            },
        )
    )
    inv = bind(cube, "infer", only={"data_path", "output_path"})
    assert [p.name for p in inv.parameters] == ["data_path", "output_path"]


def test_outputs_are_created(tmp_path: Path) -> None:
    cube = load_cube(_cube(tmp_path, {"t": {"parameters": {"outputs": {"o": "o/", "f": "r/x.yaml"}}}}))
    bind(cube, "t").create_outputs()
    assert (tmp_path / "workspace" / "o").is_dir() and (tmp_path / "workspace" / "r").is_dir()


def test_unknown_task_and_bad_parameter(tmp_path: Path) -> None:
    cube = load_cube(_cube(tmp_path, {"t": {}}))
    with pytest.raises(SpecError, match="has no task 'infer'"):
        cube.task("infer")
    _cube(tmp_path, {"t": {"parameters": {"inputs": {"a": {"default": "x", "kind": "file"}}}}})
    with pytest.raises(SpecError, match=r"tasks.t.parameters.inputs.a.kind: unknown key"):
        load_cube(tmp_path)


def test_other_platform_sections_are_ignored(tmp_path: Path) -> None:
    cube = load_cube(_cube(tmp_path, {"t": {}}, ssh={"host": "x"}, authors=[{"name": "n"}]))
    assert cube.name == "c"


def test_reference_cubes_parse() -> None:
    for name in ("baseline", "data_prep", "metrics"):
        cube = load_cube(CUBES / name)
        assert cube.docker is not None and cube.build_context_dir.name == "project"
