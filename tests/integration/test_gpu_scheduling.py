"""Sites sharing fake GPUs through the local executor: each GPU job gets its own GPU by UUID."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsim.errors import SpecError
from fedsim.executors import LocalExecutor
from fedsim.pipeline.run import RunOptions, run_benchmark
from fedsim.testing import FakeNvml
from tests.conftest import CUBES, FIXTURES, small_benchmark, write_yaml

pytestmark = pytest.mark.e2e


def _gpu_sites(bench: Path, gpu_memory_gb: float = 11) -> None:
    for f in (bench / "sites").glob("*.yaml"):
        import yaml

        data = yaml.safe_load(f.read_text())
        data["hardware"].update({"gpus": 1, "gpu_memory_gb": gpu_memory_gb})
        write_yaml(f, data)


def test_two_sites_two_fake_gpus_never_share(tmp_path: Path) -> None:
    bench = small_benchmark(
        tmp_path, models={"a": FIXTURES / "cubes" / "gpu_echo", "b": FIXTURES / "cubes" / "gpu_echo"}, cases=1
    )
    _gpu_sites(bench)
    executor = LocalExecutor(max_jobs=2, nvml=FakeNvml(gpus=2, memory_gb=16), cpus=4)
    report = run_benchmark(RunOptions(benchmark=bench, runs_dir=tmp_path / "runs", run_id="g"), executor=executor)
    jobs = json.loads((report.run.root / "summary.json").read_text())["jobs"]
    infers = [j for j in jobs if j["kind"] == "infer"]
    assert len(infers) == 4
    for j in infers:
        assert j["status"] == "succeeded"
        assert len(j["gpu_ids"]) == 1 and j["gpu_ids"][0].startswith("GPU-fake-")
        log = Path(j["log"]).read_text()
        assert f"CUDA_VISIBLE_DEVICES={j['gpu_ids'][0]}" in log
    assert executor.resources.max_concurrent_gpu_jobs == 2  # both GPUs in use at once, never shared
    # data prep and metrics jobs never hold a GPU
    assert all(j["gpu_ids"] == [] for j in jobs if j["kind"] != "infer")


def test_site_profile_bigger_than_the_gpus_is_refused_before_anything_runs(tmp_path: Path) -> None:
    bench = small_benchmark(tmp_path, models={"baseline": CUBES / "baseline"}, cases=1)
    _gpu_sites(bench, gpu_memory_gb=40)
    executor = LocalExecutor(nvml=FakeNvml(gpus=1, memory_gb=24))
    with pytest.raises(SpecError, match=r"s0.yaml: hardware.gpu_memory_gb: .*largest GPU here has 24.0 GiB"):
        run_benchmark(RunOptions(benchmark=bench, runs_dir=tmp_path / "runs"), executor=executor)
    assert not (tmp_path / "runs").exists()
