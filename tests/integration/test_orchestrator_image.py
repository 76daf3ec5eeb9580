"""The orchestrator image: ``fedsim`` in a container drives the host's engine through its socket; the cubes run
as sibling containers whose bind mounts are host paths, and the results land in a host directory.

The host directory is mounted at a *different* path in the orchestrator (``/data``), so the run only works when
fedsim translates its paths: once by discovering its own container's mounts, once through ``FEDSIM_HOST_ROOT``.
The image is built with ``scripts/build-orchestrator.sh`` (wheels gathered on the host, layers cached).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import CUBES, ROOT, small_benchmark

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]

TAG = "fedsim-test/orchestrator:ci"
IN_IMAGE_CUBES = "/opt/fedsim/benchmarks/fets2022-task2/cubes"
SOCKET = "/var/run/docker.sock"


@pytest.fixture(scope="module")
def image() -> str:
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-orchestrator.sh"), TAG],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"orchestrator image built in {time.monotonic() - started:.1f}s")
    return TAG


@pytest.mark.parametrize("translation", ["discovery", "env"])
def test_orchestrator_runs_a_benchmark_against_the_host_engine(tmp_path: Path, image: str, translation: str) -> None:
    bench = small_benchmark(tmp_path, sites=2, cases=1, shape=(64, 64, 40), runtime="docker")
    text = (bench / "benchmark.yaml").read_text().replace(str(CUBES), IN_IMAGE_CUBES)  # the image's own cubes
    (bench / "benchmark.yaml").write_text(text)
    argv = [
        "docker", "run", "--rm", f"--user={os.getuid()}:{os.getgid()}", f"--group-add={os.stat(SOCKET).st_gid}",
        f"--volume={SOCKET}:{SOCKET}", f"--volume={tmp_path}:/data", "--env=FEDSIM_CACHE_DIR=/data/cache",
        "--env=HOME=/data",
    ]  # fmt: skip
    if translation == "env":
        argv += [f"--env=FEDSIM_HOST_ROOT={tmp_path}:/data"]  # wins over discovery
    argv += [image, "run", "benchmark", "/data/bench", "--runs-dir", "/data/runs", "--run-id", "r1"]
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    run = tmp_path / "runs" / "r1"  # on the host
    jobs = json.loads((run / "summary.json").read_text())["jobs"]
    bad = [(j["site"], j["name"], j["status"], j["reason"]) for j in jobs if j["status"] != "succeeded"]
    assert not bad, bad
    assert {j["runtime"] for j in jobs} == {"docker"}
    for site in ("s0", "s1"):
        results = yaml.safe_load((run / "results" / f"{site}.yaml").read_text())
        assert len(results) == 1 and all(m["baseline"]["missing_pred"] is False for m in results.values())
        assert any((run / "sites" / site / "predictions" / "baseline").iterdir())
    print(f"orchestrator run ({translation}): {elapsed:.1f}s")


def test_orchestrator_runs_the_bundled_benchmark(tmp_path: Path, image: str) -> None:
    """The issue's check: the image's own bundled benchmark (three full-size sites, both reference models) on the
    docker runtime, with the results appearing on the host."""
    argv = [
        "docker", "run", "--rm", f"--user={os.getuid()}:{os.getgid()}", f"--group-add={os.stat(SOCKET).st_gid}",
        f"--volume={SOCKET}:{SOCKET}", f"--volume={tmp_path}:/data", "--env=FEDSIM_CACHE_DIR=/data/cache",
        "--env=HOME=/data", image, "run", "benchmark", "/opt/fedsim/benchmarks/fets2022-task2",
        "--runtime", "docker", "--runs-dir", "/data/runs", "--run-id", "bundled",
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    run = tmp_path / "runs" / "bundled"
    jobs = json.loads((run / "summary.json").read_text())["jobs"]
    assert len(jobs) == 21 and {j["status"] for j in jobs} == {"succeeded"}
    assert {j["runtime"] for j in jobs} == {"docker"}
    for site in ("site_a", "site_b", "site_c"):
        results = yaml.safe_load((run / "results" / f"{site}.yaml").read_text())
        assert len(results) == 3
        wt = [m["baseline"]["Dice_WT"] for m in results.values()]
        assert sum(wt) / len(wt) > 0.7
    assert (run / "report.html").is_file() and (run / "ranking" / "final_ranks_rankThenMean.csv").is_file()
    print(f"orchestrator bundled run: {elapsed:.1f}s")
