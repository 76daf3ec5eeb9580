"""A benchmark's ``data:`` values reach the data-prep cube (fedsim's generated parameters file), or the
benchmark is refused in one line with the fix — never silently dropped, so the sanity check never judges
cases against values nobody chose. fedsim's own data-prep cube is given the generated file unasked."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedsim.cube import load_cube
from fedsim.errors import SpecError
from fedsim.pipeline.plan import plan
from fedsim.pipeline.run import RunOptions, prepare_run
from fedsim.spec import load_benchmark
from fedsim.spec.models import GENERATED
from fedsim.store import RunDirectory
from tests.conftest import CUBES, write_yaml


def _bench(tmp_path: Path, prep: Path, data: dict[str, Any] | None, params: object = None) -> Path:
    site = {"name": "s", "data": {"synthesize": {"cases": 1, "shape": [64, 64, 40]}}}
    write_yaml(tmp_path / "sites" / "s.yaml", site)
    spec: dict[str, Any] = {
        "name": "b",
        "data_prep": {"cube": str(prep), "parameters_file": params},
        "metrics": {"cube": str(CUBES / "metrics"), "parameters_file": "generated"},
        "models": [{"name": "m", "cube": str(CUBES / "baseline")}],
        "sites": ["sites"],
    }
    if data is not None:
        spec["data"] = data
    return write_yaml(tmp_path / "benchmark.yaml", spec)


def _third_party_prep(tmp_path: Path, keep_params: bool = True) -> Path:
    cube = shutil.copytree(CUBES / "data_prep", tmp_path / "their_prep")
    if not keep_params:
        spec = yaml.safe_load((cube / "mlcube.yaml").read_text())
        for task in spec["tasks"].values():
            task["parameters"]["inputs"].pop("parameters_file", None)
        (cube / "mlcube.yaml").write_text(yaml.safe_dump(spec))
    return cube


SHAPE = {"expected_shape": [64, 64, 40]}


def test_a_third_party_cube_without_the_generated_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        prepare_run(RunOptions(benchmark=_bench(tmp_path, _third_party_prep(tmp_path), SHAPE)))
    text = str(err.value)
    assert "\n" not in text and "benchmark.yaml: data: data.expected_shape reach the data-prep cube only" in text
    assert "fix: add 'parameters_file: generated' to data_prep" in text


def test_the_bundled_cube_gets_the_values_without_an_extra_key(tmp_path: Path) -> None:
    bench, sites, cubes = prepare_run(RunOptions(benchmark=_bench(tmp_path, CUBES / "data_prep", SHAPE)))
    assert bench.data_prep.parameters_file == GENERATED and bench.data.expected_shape == (64, 64, 40)
    run = RunDirectory(tmp_path / "runs" / "r")
    [site_plan] = plan(bench, [(sites[0], tmp_path / "raw")], cubes, run)
    prepare = next(j for j in site_plan.jobs if j.task == "prepare")
    assert dict(prepare.paths)["parameters_file"] == run.site("s").params / "data_prep.yaml"


def test_a_cube_that_reads_no_parameters_file_is_refused(tmp_path: Path) -> None:
    bench = load_benchmark(_bench(tmp_path, _third_party_prep(tmp_path, keep_params=False), SHAPE, "generated"))
    from fedsim.pipeline.reach import data_reaches_prep

    with pytest.raises(SpecError, match="none of its tasks declares a parameters_file"):
        data_reaches_prep(bench, load_cube(tmp_path / "their_prep"))


def test_an_organisers_file_must_say_the_same(tmp_path: Path) -> None:
    from fedsim.pipeline.reach import data_reaches_prep

    prep = _third_party_prep(tmp_path)
    theirs = tmp_path / "params.yaml"
    theirs.write_text("expected_shape: [64, 64, 40]\n")
    bench = load_benchmark(_bench(tmp_path, prep, SHAPE, str(theirs)))
    assert data_reaches_prep(bench, load_cube(prep)) is bench
    theirs.write_text("expected_shape: [240, 240, 155]\n")
    with pytest.raises(SpecError, match=r"data.expected_shape cannot reach the data-prep cube: it reads .*params.yaml"):
        data_reaches_prep(load_benchmark(_bench(tmp_path, prep, SHAPE, str(theirs))), load_cube(prep))


@pytest.mark.parametrize("data", [None, {"expected_shape": [240, 240, 155], "seed": 0}])
def test_defaults_ask_nothing_of_the_cube(tmp_path: Path, data: dict[str, Any] | None) -> None:
    bench, _sites, _cubes = prepare_run(RunOptions(benchmark=_bench(tmp_path, _third_party_prep(tmp_path), data)))
    assert bench.data_prep.parameters_file is None  # the cube reads its own workspace file, as under MedPerf
