"""The bundled BraTS 2025 benchmark end to end on small volumes: 2025-convention synthetic sites, the
reference models writing {0, 1, 2, 3}, the brats2025 metric set, and a ranking over lesion-wise Dice and NSD.

The bundled benchmark.yaml and site files are copied with only the volume size and case count made small,
so the test runs what `fedsim run benchmark fedsim/bundled/benchmarks/brats2025` runs.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedsim.bundled import BENCHMARKS
from fedsim.metrics.brats2025 import brats2025_columns

BUNDLED = BENCHMARKS / "brats2025"
SHAPE = [64, 64, 40]


def _small_copy(tmp: Path, runtime: str) -> Path:
    bench = yaml.safe_load((BUNDLED / "benchmark.yaml").read_text())
    bench["data_prep"]["cube"] = str((BUNDLED / bench["data_prep"]["cube"]).resolve())
    bench["metrics"]["cube"] = str((BUNDLED / bench["metrics"]["cube"]).resolve())
    for m in bench["models"]:
        m["cube"] = str((BUNDLED / m["cube"]).resolve())
    bench["data"]["expected_shape"] = SHAPE
    bench["limits"]["task_timeout_s"] = 120
    bench["sites"] = ["sites"]
    out = tmp / "bench"
    (out / "sites").mkdir(parents=True)
    (out / "benchmark.yaml").write_text(yaml.safe_dump(bench))
    for i, f in enumerate(sorted((BUNDLED / "sites").glob("*.yaml"))):
        site = yaml.safe_load(f.read_text())
        site["data"]["synthesize"].update(shape=SHAPE, cases=1 + i % 2)
        site["runtime"] = runtime
        (out / "sites" / f.name).write_text(yaml.safe_dump(site))
    return out


def _run(bench: Path, runs: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-c", "from fedsim.cli import main; main()", "run", "benchmark", str(bench),
         "--runs-dir", str(runs), "--run-id", "r"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def _check_run(run: Path, stdout: str) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert all(j["status"] == "succeeded" for j in summary["jobs"]), [
        (j["site"], j["name"], j["reason"]) for j in summary["jobs"] if j["status"] != "succeeded"
    ]
    assert not any(j.get("output_problems") for j in summary["jobs"])  # label 3 (ET) is valid here
    sites = sorted(summary["sites"])
    assert sites == ["site_d", "site_e", "site_f"]
    columns = brats2025_columns()
    for site in sites:
        prepared = sorted(p.name for p in (run / "sites" / site / "prepared").iterdir() if p.is_dir())
        assert prepared
        results = yaml.safe_load((run / "results" / f"{site}.yaml").read_text())
        assert sorted(results) == prepared
        for case in prepared:  # every prediction was scored, with every column the parser writes
            for model in ("baseline", "region_grow"):
                row = results[case][model]
                assert row["missing_pred"] is False
                assert set(columns) <= set(row)
                assert 0.0 < row["lesionwise_dsc_mean_wt"] <= 1.0
                assert row["all_instance_tp_et"] >= 1  # the model's 3s were read as ET
    with (run / "ranking" / "final_ranks_rankThenMean.csv").open() as fh:
        ranks = {r["algorithm"]: float(r["final_rank"]) for r in csv.DictReader(fh)}
    assert sorted(ranks) == ["baseline", "region_grow"] and sorted(ranks.values())[0] == 1.0
    params = yaml.safe_load((run / "sites" / "site_d" / "params" / "metrics.yaml").read_text())
    assert params == {"metric_set": "brats2025", "brats2025": {"config": "gli"}}
    labels = yaml.safe_load((run / "sites" / "site_d" / "params" / "data_prep.yaml").read_text())["labels"]
    assert labels == [0, 1, 2, 3, 4]
    assert "LW Dice ET" in stdout and "LW NSD WT" in stdout and "ranking (rankThenMean)" in stdout


@pytest.mark.e2e
@pytest.mark.slow
def test_brats2025_benchmark_runs_and_ranks_locally(tmp_path: Path) -> None:
    bench = _small_copy(tmp_path, "local")
    done = _run(bench, tmp_path / "runs")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _check_run(tmp_path / "runs" / "r", done.stdout)
    html = (tmp_path / "runs" / "r" / "report.html").read_text()
    assert "Lesion-wise Dice" in html and "lesion-wise Dice and NSD of ET, TC, WT, NETC, SNFH, RC" in html


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.docker
def test_brats2025_benchmark_runs_and_ranks_on_docker(tmp_path: Path) -> None:
    bench = _small_copy(tmp_path, "docker")
    done = _run(bench, tmp_path / "runs")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _check_run(tmp_path / "runs" / "r", done.stdout)
