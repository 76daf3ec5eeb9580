"""No parameter form lets a model's container or sandbox see a site's labels.

The plan binds a model's ``infer`` with the site's ``prepared/`` and its own ``predictions/<model>/``; the
site directory beside them holds ``labels/``. Whatever type the cube declares for ``data_path`` and
``output_path`` — directory, file, untyped with or without a slash, a bare string — the mounts fedsim
computes never include ``labels/`` or a directory above it, and every other input stays in the cube.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.cube import Isolation, bind, container_mounts, load_cube
from fedsim.cube.contract import task_paths
from fedsim.errors import SpecError
from tests.conftest import write_yaml

FORMS: dict[str, object] = {
    "typed directory": {"type": "directory", "default": "data"},
    "typed file": {"type": "file", "default": "data"},
    "untyped with slash": "data/",
    "untyped without slash": "data",
    "untyped, opts rw": {"default": "data", "opts": "rw"},
    "no default": None,
}
OUTPUT_FORMS: dict[str, object] = {
    "typed directory": {"type": "directory", "default": "out"},
    "typed file": {"type": "file", "default": "out"},
    "untyped with slash": "out/",
}


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "run" / "sites" / "s"
    for d in ("prepared/case1", "labels", "predictions/m"):
        (site / d).mkdir(parents=True)
    (site / "labels" / "case1_final_seg.nii.gz").write_bytes(b"secret")
    return site


def _exposes(host: Path, labels: Path) -> bool:
    host, labels = host.resolve(), labels.resolve()
    return host == labels or host in labels.parents or labels in host.parents


@pytest.mark.parametrize("out_form", list(OUTPUT_FORMS))
@pytest.mark.parametrize("in_form", list(FORMS))
def test_no_mount_holds_the_labels(tmp_path: Path, in_form: str, out_form: str) -> None:
    site = _site(tmp_path)
    cube_dir = tmp_path / "cube"
    (cube_dir / "workspace" / "weights").mkdir(parents=True)
    inputs = {
        "data_path": FORMS[in_form],
        "weights": "weights/",
        "parameters_file": {"type": "file", "default": "null"},
    }
    write_yaml(
        cube_dir / "mlcube.yaml",
        {
            "name": "m",
            "docker": {"image": "m:1"},
            "tasks": {"infer": {"parameters": {"inputs": inputs, "outputs": {"output_path": OUTPUT_FORMS[out_form]}}}},
        },
    )
    cube = load_cube(cube_dir)
    paths = task_paths(cube, "infer", {"data_path": site / "prepared", "output_path": site / "predictions" / "m"})
    inv = bind(cube, "infer", paths, isolation=Isolation(untrusted=True), pinned=set(paths))
    mounts, _args = container_mounts(inv)
    assert not [m for m in mounts if _exposes(m.host_path, site / "labels")], mounts
    # the local runtime's sandbox binds each parameter's own path
    assert not [p for p in inv.parameters if _exposes(p.host_path, site / "labels")]
    data = [m for m in mounts if m.host_path == site / "prepared"]
    assert len(data) == 1 and data[0].read_only


@pytest.mark.parametrize("default", ["/", "../../run/sites/s/labels/", "~/", "${runtime.root}/../run/"])
def test_a_declared_default_cannot_name_site_paths(
    tmp_path: Path, default: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "run"))
    site = _site(tmp_path)
    cube_dir = tmp_path / "cube"
    write_yaml(
        cube_dir / "mlcube.yaml",
        {
            "name": "m",
            "docker": {"image": "m:1"},
            "tasks": {
                "infer": {
                    "parameters": {"inputs": {"data_path": "data/", "x": default}, "outputs": {"output_path": "out/"}}
                }
            },
        },
    )
    cube = load_cube(cube_dir)
    paths = {"data_path": site / "prepared", "output_path": site / "predictions" / "m"}
    with pytest.raises(SpecError, match="outside the cube's own directory"):
        bind(cube, "infer", paths, isolation=Isolation(untrusted=True), pinned=set(paths))
