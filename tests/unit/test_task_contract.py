"""MedPerf's task contract on cubes laid out like the published FeTS 2022 task 2 cubes
(``tests/fixtures/fets_official``): the plan passes exactly the keys MedPerf's ``fets-challenge`` branch
passes, and nothing of fedsim's own unless the benchmark asks for it."""

from __future__ import annotations

from pathlib import Path

from fedsim.pipeline.plan import plan
from fedsim.pipeline.run import load_cubes
from fedsim.spec import load_benchmark
from fedsim.spec.loader import load_site
from fedsim.store import RunDirectory
from tests.conftest import FIXTURES, write_yaml

OFFICIAL = FIXTURES / "fets_official"
MEDPERF_KEYS = {
    "prepare": {"data_path", "labels_path", "output_path", "output_labels_path"},
    "sanity_check": {"data_path", "labels_path"},
    "statistics": {"data_path", "labels_path"},
    "infer": {"data_path", "output_path"},
    "evaluate": {"predictions", "labels", "output_path"},
}


def _plan(tmp_path: Path, parameters_file: str | None) -> dict[str, dict[str, Path]]:
    bench_file = tmp_path / "benchmark.yaml"
    write_yaml(
        bench_file,
        {
            "name": "b",
            "data_prep": {"cube": str(OFFICIAL / "data_prep" / "mlcube"), "parameters_file": parameters_file},
            "metrics": {"cube": str(OFFICIAL / "metrics" / "mlcube"), "parameters_file": parameters_file},
            "models": [{"name": "m", "cube": str(OFFICIAL / "model" / "mlcube")}],
            "sites": ["site.yaml"],
        },
    )
    (tmp_path / "raw").mkdir()
    write_yaml(tmp_path / "site.yaml", {"name": "s", "data": {"path": str(tmp_path / "raw")}})
    bench = load_benchmark(bench_file)
    site = load_site(tmp_path / "site.yaml")
    run = RunDirectory(tmp_path / "runs" / "r")
    [site_plan] = plan(bench, [(site, tmp_path / "raw")], load_cubes(bench), run)
    return {job.task: dict(job.paths) for job in site_plan.jobs}


def test_official_layout_gets_exactly_medperfs_keys(tmp_path: Path) -> None:
    jobs = _plan(tmp_path, None)
    assert {task: set(paths) for task, paths in jobs.items()} == MEDPERF_KEYS
    d = tmp_path / "runs" / "r" / "sites" / "s"
    assert jobs["prepare"]["labels_path"] == jobs["prepare"]["data_path"] == tmp_path / "raw"
    assert jobs["sanity_check"]["labels_path"] == jobs["evaluate"]["labels"] == d / "labels"
    assert jobs["infer"] == {"data_path": d / "prepared", "output_path": d / "predictions" / "m"}


def test_generated_parameters_reach_only_cubes_that_declare_them(tmp_path: Path) -> None:
    jobs = _plan(tmp_path, "generated")
    d = tmp_path / "runs" / "r" / "sites" / "s"
    assert jobs["prepare"]["parameters_file"] == d / "params" / "data_prep.yaml"
    assert jobs["evaluate"]["parameters_file"] == d / "params" / "metrics.yaml"
    assert "parameters_file" not in jobs["infer"]  # a submission never gets fedsim's extras
    assert "metadata_path" not in jobs["prepare"]  # the official data prep does not declare it
