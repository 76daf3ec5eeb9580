"""Issue 20, item 5: the report's typed run view (jobs as JobResult, recorded specs as spec models), tolerant of
older runs; the heatmaps of a wide run drawn in figures of a bounded size; the organiser-scale run of the
memory benchmark (perf/report_memory.py) builds and reports."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import yaml

from fedsim.jobs.job import JobResult, JobStatus
from fedsim.pipeline.builds import BuildRecord
from fedsim.report.html import write_report
from fedsim.report.loader import job_result, load_run, recorded_benchmark, recorded_site, run_summary
from fedsim.spec.models import HardwareProfile, ResourceLimits
from tests.conftest import ROOT


def test_a_job_record_of_an_older_fedsim_is_a_job_result() -> None:
    job = job_result({"site": "s", "name": "infer.m", "kind": "infer", "model": "m", "status": "timeout"})
    assert isinstance(job, JobResult) and job.status is JobStatus.TIMEOUT and job.key == "s/infer.m"
    assert (job.duration_s, job.exit_code, job.containment, job.limits) == (0.0, None, None, None)
    assert job.output_problems == {}
    odd = job_result(
        {"site": "s", "name": "x", "status": "exploded", "duration_s": "1e999", "exit_code": float("nan"),
         "gpu_ids": [0, "GPU-1"], "output_problems": {"c1": ["empty"], "c2": "not a list"}, "peak_rss_bytes": True}
    )  # fmt: skip
    assert odd.status is JobStatus.FAILED  # an unknown status never counts as a success
    assert (odd.duration_s, odd.exit_code, odd.peak_rss_bytes, odd.gpu_ids) == (0.0, None, None, ["0", "GPU-1"])
    assert odd.output_problems == {"c1": ["empty"]}
    record = JobResult(site="s", name="infer.m", kind="infer", model="m", status=JobStatus.SUCCEEDED, duration_s=2.5)
    assert job_result(record.to_dict()) == record  # what fedsim writes comes back unchanged


def test_recorded_specs_are_spec_models_and_keep_what_the_file_said() -> None:
    bench = recorded_benchmark(
        {"name": "b", "limits": {"ram_gb": 40, "retired_limit": 3}, "models": [{"name": "m", "image": "i"}, {"x": 1}],
         "metrics": {"metric_set": "brats2021"}, "ranking": {"method": "rankThenMedian"}}
    )  # fmt: skip
    assert isinstance(bench.limits, ResourceLimits) and bench.limits.ram_gb == 40.0
    assert bench.limits.model_fields_set == {"ram_gb"}  # the defaults it left out are not "recorded"
    assert bench.limit_rows == (("ram_gb", "40"), ("retired_limit", "3"))  # shown as written, old keys too
    assert [m.name for m in bench.models] == ["m"] and bench.ranking_method == "rankThenMedian"
    assert "retired_limit: 3" in bench.text
    broken = recorded_benchmark({"limits": {"ram_gb": -1}, "models": "not a list"})
    assert (broken.limits, broken.models, broken.name, broken.metric_set) == (None, (), None, None)
    site = recorded_site({"runtime": "docker", "hardware": {"gpus": 2}}, "from_file_name")
    assert site.name == "from_file_name" and isinstance(site.hardware, HardwareProfile) and site.hardware.gpus == 2
    assert site.data is None  # no data section: shown as "?", never a default


def test_summary_of_an_older_run() -> None:
    old = run_summary({"run_id": "r", "duration_s": 4.0, "jobs": []})
    assert (old.run_id, old.builds, old.build_s, old.interrupted, old.sites) == ("r", (), None, False, ())
    new = run_summary({"builds": [{"image": "i", "cube": "c", "runtime": "docker", "action": "built", "seconds": 1.5,
                                   "jobs": 3, "error": None}], "build_s": 1.5, "interrupted": True})  # fmt: skip
    assert new.builds == (BuildRecord("i", "c", "docker", "built", 1.5, 3),) and new.interrupted


def _run(tmp_path: Path, sites: int) -> Path:
    """A small finished run: ``sites`` sites, two models, one failed infer and an old-style site file."""
    run = tmp_path / "run"
    metrics = {f"{m}_{r}": 0.8 for m in ("Dice", "Sensitivity", "Specificity", "Precision") for r in ("ET", "TC", "WT")}
    metrics |= {f"Hausdorff95_{r}": 3.0 for r in ("ET", "TC", "WT")}
    (run / "results").mkdir(parents=True)
    (run / "config" / "sites").mkdir(parents=True)
    jobs = []
    for s in range(sites):
        name = f"s{s}"
        results = {f"c{c}": {"a": metrics, "b": {**metrics, "Dice_ET": 0.1 * c}} for c in range(2)}
        (run / "results" / f"{name}.yaml").write_text(yaml.safe_dump(results))
        (run / "config" / "sites" / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "runtime": "local"}))
        jobs += [
            {"site": name, "name": "infer.a", "kind": "infer", "model": "a", "status": "succeeded", "num_cases": 2},
            {"site": name, "name": "infer.b", "kind": "infer", "model": "b", "status": "failed", "reason": "boom"},
        ]
    (run / "config" / "benchmark.yaml").write_text(yaml.safe_dump({"name": "bench", "limits": {"ram_gb": 40}}))
    (run / "summary.json").write_text(json.dumps({"run_id": "r", "models": ["a", "b"], "jobs": jobs}))
    return run


def test_load_run_reads_typed_values_once(tmp_path: Path) -> None:
    data = load_run(_run(tmp_path, 2))
    assert all(isinstance(j, JobResult) for j in data.jobs) and len(data.jobs) == 4
    assert data.sites == ("s0", "s1") and data.models == ("a", "b") and data.benchmark_name == "bench"
    assert data.logs == {}  # no log anywhere: the failures say "no log"
    assert data.sites_config["s0"].runtime == "local" and data.sites_config["s0"].hardware is None


def test_a_wide_run_draws_its_heatmaps_in_bounded_figures(tmp_path: Path) -> None:
    from fedsim.report import plots

    data = load_run(_run(tmp_path, 3))
    one = plots.heatmap_pngs(data, "Dice", "Dice", True)
    parts = plots.heatmap_pngs(data, "Dice", "Dice", True, max_sites=2)
    assert len(one) == 1 and len(parts) == 2  # sites 1-2, then site 3
    assert all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in parts)
    assert plots.heatmap_pngs(data, "lesionwise_dsc_mean", "LW", True) == []  # no such metric: no figure


def test_report_memory_benchmark_builds_a_run_the_report_reads(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("report_memory", ROOT / "perf" / "report_memory.py")
    assert spec is not None and spec.loader is not None
    perf: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf)
    run = perf.build_run(tmp_path, n_sites=5, n_models=2, n_cases=2)
    assert (run / "ledger.sqlite").is_file() and sorted(p.name for p in (run / "ranking").iterdir())
    files = write_report(run, resamples=20)
    with files.results_long.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 * 2 * 2 * 28  # sites × models × cases × FeTS metric keys
    html = files.html.read_text(encoding="utf-8")
    assert "Failures (1)" in html and "CUDA error" in html  # model_01 crashed at site_000
    summary = json.loads(files.summary.read_text())
    assert summary["jobs"]["total"] == 5 * (3 + 2 * 2) and summary["ranking"]["algorithms"]


def test_a_run_with_no_site_at_all_still_reports(tmp_path: Path) -> None:
    files = write_report(_run(tmp_path, 0))
    assert "nothing to rank" in files.html.read_text(encoding="utf-8")
