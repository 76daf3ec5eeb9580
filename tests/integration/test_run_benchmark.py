"""End-to-end runs of small benchmarks on the local runtime, with a crashing and a hanging model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from fedsim.pipeline.run import RunOptions, run_benchmark
from fedsim.report.html import write_report
from tests.conftest import CUBES, FIXTURES, ROOT, small_benchmark

pytestmark = pytest.mark.e2e


def test_failing_and_hanging_models_are_recorded_and_penalised(tmp_path: Path) -> None:
    bench = small_benchmark(
        tmp_path,
        models={
            "baseline": CUBES / "baseline",
            "crasher": FIXTURES / "cubes" / "failing_model",
            "sleeper": FIXTURES / "cubes" / "hanging_model",
        },
        timeout_per_case_s=8,  # generous: CI machines can be loaded
        sites=2,
        cases=2,
    )
    started = time.monotonic()
    report = run_benchmark(
        RunOptions(
            benchmark=bench, runs_dir=tmp_path / "runs", run_id="r1", report_writer=lambda d: write_report(d).html
        )
    )
    elapsed = time.monotonic() - started
    run = report.run.root
    summary = json.loads((run / "summary.json").read_text())
    jobs = {(j["site"], j["name"]): j for j in summary["jobs"]}
    for site in ("s0", "s1"):
        assert jobs[(site, "infer.baseline")]["status"] == "succeeded"
        crash = jobs[(site, "infer.crasher")]
        assert crash["status"] == "failed" and crash["exit_code"] == 1
        assert "exited with code 1" in crash["reason"] and "CUDA error" in crash["reason"]
        hang = jobs[(site, "infer.sleeper")]
        assert hang["status"] == "timeout"
        assert 16.0 <= hang["duration_s"] < 16.0 + 4.0  # 2 cases * 8 s, killed within the grace period
        assert "wall-clock limit of 16 s" in hang["reason"]
        for model in ("baseline", "crasher", "sleeper"):
            assert jobs[(site, f"evaluate.{model}")]["status"] == "succeeded"
        # only metrics leave a site, in the ranking format: case -> model -> flat keys
        results = yaml.safe_load((run / "results" / f"{site}.yaml").read_text())
        assert len(results) == 2 and all(c.startswith("FeTS22_Patient") for c in results)
        for metrics in results.values():
            assert set(metrics) == {"baseline", "crasher", "sleeper"}
            assert metrics["baseline"]["missing_pred"] is False
            assert metrics["baseline"]["Dice_WT"] > 0.5
            for bad in ("crasher", "sleeper"):
                assert metrics[bad]["missing_pred"] is True
                assert metrics[bad]["Dice_WT"] == 0 and metrics[bad]["Hausdorff95_WT"] == 374
        # the hanging model's logs were streamed while it ran and survived the kill
        log = (run / "sites" / site / "logs" / "infer.sleeper.log").read_text()
        assert "still working on case" in log and "child " in log
    # nothing of any job is left, the sleeper's child in its own session included (the PID it printed is its
    # sandbox's own: look for every process carrying the run's job token instead)
    from fedsim.runtimes.orphans import orphan_processes

    assert [p for p in orphan_processes("r1") if p.status() != psutil.STATUS_ZOMBIE] == []
    assert elapsed < 120
    # the run directory layout
    site_dir = run / "sites" / "s0"
    for sub in ("prepared", "labels", "predictions/baseline", "results/baseline.yaml", "logs/prepare.log"):
        assert (site_dir / sub).exists(), sub
    assert (run / "config" / "benchmark.yaml").is_file() and (run / "config" / "sites" / "s0.yaml").is_file()
    assert not list((site_dir / "prepared").rglob("*seg*"))  # labels never sit beside model inputs
    # the ranking puts the baseline first
    assert report.ranking is not None and report.ranking.final_rank["baseline"] == 1
    assert (run / "ranking" / "final_ranks_rankThenMean.csv").is_file()
    assert report.report_html == run / "report.html" and report.report_html.is_file()
    assert (run / "results_long.csv").is_file()


def test_cli_run_plain_output(tmp_path: Path) -> None:
    bench = small_benchmark(tmp_path, sites=2, cases=1)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedsim.cli",
            "run",
            "benchmark",
            str(bench),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "s0" in out and "infer.baseline" in out and "succeeded" in out
    assert "ranking (rankThenMean)" in out
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "results" / "s0.yaml").is_file()
