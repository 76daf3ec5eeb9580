"""``model_limits``: one recipe for a submission's limits, the same in the planner, the stress test and
check-submission — whose job used to drop the benchmark's ``max_pids``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from fedsim.bundled import BENCHMARK, SITES
from fedsim.cube import load_cube
from fedsim.jobs.factory import ModelLimits, model_limits
from fedsim.pipeline.plan import Cubes, plan_site
from fedsim.spec import HardwareProfile, ResourceLimits, load_benchmark
from fedsim.spec.loader import load_site
from fedsim.spec.models import DEFAULT_MAX_PIDS
from fedsim.store import RunDirectory
from fedsim.stress.data import CaseSet
from fedsim.stress.run import EvalSettings, StressModel
from fedsim.stress.run import make_job as stress_job
from fedsim.submission.dynamic import RunLayout
from fedsim.submission.dynamic import make_job as check_job
from fedsim.submission.options import CheckOptions
from tests.conftest import small_benchmark

CUBES = BENCHMARK / "cubes"
CUBE = CUBES / "baseline"
LIMITS = ResourceLimits(timeout_per_case_s=30, ram_gb=20, gpu_memory_gb=8, output_mb_per_case=5, max_pids=300)


def test_a_site_narrows_ram_and_gpu_memory_and_lends_its_gpus_and_cpus() -> None:
    small = HardwareProfile(gpus=2, gpu_memory_gb=6, ram_gb=64, cpus=12)
    assert model_limits(LIMITS, small) == ModelLimits(30, 20, 6, 5, max_pids=300, site_gpus=2, cpus=12)


def test_without_a_site_the_federations_hardware_one_gpu_no_cpu_quota() -> None:
    assert model_limits(LIMITS) == ModelLimits(30, 20, 8, 5, max_pids=300, site_gpus=1, cpus=None)


def test_check_submission_keeps_max_pids(tmp_path: Path) -> None:
    cube = load_cube(CUBE)
    layout = RunLayout(tmp_path)
    default = check_job(cube, "k", "local", layout, CheckOptions(), 40.0)
    assert default.limits.max_pids == DEFAULT_MAX_PIDS  # was None: the benchmark's value never reached the job
    lowered = check_job(cube, "k", "local", layout, CheckOptions(max_pids=300), 12.5)
    assert (lowered.limits.max_pids, lowered.limits.ram_bytes) == (300, int(12.5 * 1024**3))


def test_the_three_builders_give_the_same_limits(tmp_path: Path) -> None:
    bench = load_benchmark(BENCHMARK / "benchmark.yaml").model_copy(update={"limits": LIMITS})
    hardware = HardwareProfile(gpus=1, gpu_memory_gb=24, ram_gb=128, cpus=8)  # more than the benchmark's limits
    site = load_site(SITES / "site_a_university.yaml").model_copy(update={"hardware": hardware})
    cube = load_cube(CUBE)
    cubes = Cubes(load_cube(CUBES / "data_prep"), load_cube(CUBES / "metrics"), {m.name: cube for m in bench.models})
    jobs = plan_site(bench, site, tmp_path / "raw", cubes, RunDirectory(tmp_path / "run"), "local").jobs
    planned = next(j for j in jobs if j.name == f"infer.{bench.models[0].name}").limits
    stress = stress_job(
        StressModel("m", cube),
        CaseSet("none", 0, "", tmp_path / "cases", ("c1",)),
        tmp_path / "stress",
        "local",
        EvalSettings(LIMITS, "brats2021", None),
        "r",
    ).limits
    options = CheckOptions(timeout_per_case_s=30, ram_gb=20, gpu_memory_gb=8, output_mb_per_case=5, max_pids=300)
    check = check_job(cube, "k", "local", RunLayout(tmp_path / "check"), options, 20.0).limits
    assert stress == check
    assert planned.max_pids == 300
    assert replace(planned, cpus=None) == stress  # the site's CPU count, a quota, is the only difference
    assert planned.cpus == 8


def test_check_submission_takes_max_pids_from_its_benchmark(tmp_path: Path) -> None:
    from fedsim.cli.checks import _max_pids

    bench = small_benchmark(tmp_path, sites=1, cases=1)
    doc = yaml.safe_load((bench / "benchmark.yaml").read_text())
    doc["limits"]["max_pids"] = 256
    (bench / "benchmark.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    assert (_max_pids(bench), _max_pids(None)) == (256, DEFAULT_MAX_PIDS)
