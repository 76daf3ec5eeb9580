"""The Ray executor on a real two-node cluster on 127.0.0.1: same results as the local executor, site affinity,
refusal of a site no node hosts, and a stop that kills the job inside its Ray task.

One cluster per module (``ray start`` costs ~10 s a node): a head declaring ``site:s0`` and a second node
declaring ``site:s1``, each in a private ``--temp-dir``, stopped with ``ray stop --force`` at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.e2e]

ray = pytest.importorskip("ray")

from fedsim.errors import SpecError  # noqa: E402
from fedsim.executors import LocalExecutor, executor_class  # noqa: E402
from fedsim.executors.ray import RayExecutor, gpu_ids_from_ray  # noqa: E402
from fedsim.guard.nvml import GpuDevice  # noqa: E402
from fedsim.pipeline.job import JobStatus  # noqa: E402
from fedsim.pipeline.run import RunOptions, run_benchmark  # noqa: E402
from tests.conftest import FIXTURES, ROOT, small_benchmark  # noqa: E402

SHAPE = (64, 64, 40)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> list[str]:
    exe = Path(sys.executable).parent / "ray"
    return [str(exe)] if exe.is_file() else [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="fedsim-ray-", dir="/tmp"))  # short: Ray's socket paths are bounded
    # no usage reports; no token auth (Ray >= 2.5x turns it on when ~/.ray/auth_token exists): the driver, the
    # CLI child and both nodes must agree, so the setting goes into this process's environment for the module
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    env = dict(os.environ)
    address = f"127.0.0.1:{port}"
    head = [
        "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
        '--resources={"site:s0": 1}', "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats",
    ]  # fmt: skip
    worker = ["start", f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=1",
              '--resources={"site:s1": 1}']  # fmt: skip  # a declared GPU: Ray schedules it, nothing uses it
    try:
        for args in (head, worker):
            proc = subprocess.run([*_ray_cli(), *args], env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, f"ray {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([*_ray_cli(), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _summary(run_root: Path) -> dict[str, dict[str, object]]:
    jobs = json.loads((run_root / "summary.json").read_text())["jobs"]
    return {f"{j['site']}/{j['name']}": j for j in jobs}


def test_ray_results_equal_local_and_sites_stay_on_their_nodes(tmp_path: Path, cluster: str) -> None:
    bench = small_benchmark(tmp_path, sites=2, cases=1, shape=SHAPE)
    runs = tmp_path / "runs"
    local = run_benchmark(RunOptions(benchmark=bench, runs_dir=runs, run_id="local"), executor=LocalExecutor())
    # the Ray run goes through the command line: --executor ray --ray-address
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "run", "benchmark", str(bench), "--runs-dir", str(runs),
         "--run-id", "ray", "--executor", "ray", "--ray-address", cluster],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ray_root = runs / "ray"
    jobs = _summary(ray_root)
    failed = {k: (j["status"], j["reason"]) for k, j in jobs.items() if j["status"] != "succeeded"}
    assert not failed, failed
    for site in ("s0", "s1"):
        ours = yaml.safe_load((ray_root / "results" / f"{site}.yaml").read_text())
        theirs = yaml.safe_load((local.run.root / "results" / f"{site}.yaml").read_text())
        assert ours == theirs and ours, site
        assert (ray_root / "sites" / site / "logs" / "infer.baseline.log").stat().st_size > 0
    # site affinity: every job of a site ran on the node that declares site:<name>, and those nodes differ
    ray.init(address=cluster, logging_level="WARNING")
    try:
        hosts = {
            site: {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get(f"site:{site}")}
            for site in ("s0", "s1")
        }
    finally:
        ray.shutdown()
    nodes = {site: {j["node"] for j in jobs.values() if j["site"] == site} for site in ("s0", "s1")}
    assert nodes["s0"] == hosts["s0"] and nodes["s1"] == hosts["s1"] and hosts["s0"] != hosts["s1"], (nodes, hosts)
    assert all(j["node"] is None for j in _summary(local.run.root).values())
    print(f"ray run via the CLI: {time.monotonic() - started:.1f}s")


def test_site_without_a_node_is_refused_before_anything_runs(tmp_path: Path, cluster: str) -> None:
    bench = small_benchmark(tmp_path, sites=3, cases=1, shape=SHAPE)  # s2: no node declares site:s2
    runs = tmp_path / "runs"
    with pytest.raises(SpecError, match=r"site 's2'.*site:s2"):
        run_benchmark(RunOptions(benchmark=bench, runs_dir=runs, run_id="r"), executor=RayExecutor(cluster))
    assert not runs.exists()
    assert not ray.is_initialized()  # the refused executor let go of its connection


def test_stop_kills_the_job_inside_its_task(tmp_path: Path, cluster: str) -> None:
    bench = small_benchmark(
        tmp_path, models={"sleeper": FIXTURES / "cubes" / "hanging_model"}, sites=2, cases=1, shape=SHAPE,
        timeout_per_case_s=600,
    )  # fmt: skip
    stop = threading.Event()
    started: dict[str, float] = {}

    def on_event(kind: str, job: object, _res: object) -> None:
        if kind == "started" and getattr(job, "name", "") == "infer.sleeper":
            started[getattr(job, "site", "")] = time.monotonic()
            if len(started) == 2:
                threading.Timer(3.0, stop.set).start()  # both sleepers are running their children by then

    with RayExecutor(cluster) as executor:
        report = run_benchmark(
            RunOptions(benchmark=bench, runs_dir=tmp_path / "runs", run_id="stop", rank=False),
            on_event=on_event, executor=executor, stop_event=stop,
        )  # fmt: skip
    assert report.interrupted
    for site in ("s0", "s1"):
        res = {r.name: r for r in report.results[site]}
        sleeper = res["infer.sleeper"]
        assert sleeper.status is JobStatus.INTERRUPTED, (sleeper.status, sleeper.reason)
        assert sleeper.duration_s < 120, sleeper.duration_s  # stopped, not run into its 600 s limit
        log = (report.run.root / "sites" / site / "logs" / "infer.sleeper.log").read_text()
        child = int(log.split("child ")[1].split()[0])
        deadline = time.monotonic() + 15
        while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, f"{site}: the sleeper's child {child} survived the stop"
            time.sleep(0.1)
        assert res["evaluate.sleeper"].status is JobStatus.INTERRUPTED


def test_gpu_jobs_get_the_gpus_ray_assigns(tmp_path: Path, cluster: str) -> None:
    bench = small_benchmark(tmp_path, models={"echo": FIXTURES / "cubes" / "gpu_echo"}, sites=2, cases=1, shape=SHAPE)
    site_file = bench / "sites" / "s1.yaml"
    site = yaml.safe_load(site_file.read_text())
    site["hardware"]["gpus"] = 2
    site_file.write_text(yaml.safe_dump(site))
    with pytest.raises(SpecError, match=r"site 's1' asks for 2 GPUs"):  # the s1 node declares one
        run_benchmark(RunOptions(benchmark=bench, sites=(site_file,), runs_dir=tmp_path / "runs"),
                      executor=RayExecutor(cluster))  # fmt: skip
    site["hardware"]["gpus"] = 1
    site_file.write_text(yaml.safe_dump(site))
    report = run_benchmark(
        RunOptions(benchmark=bench, sites=(site_file,), runs_dir=tmp_path / "runs", run_id="gpu", rank=False),
        executor=RayExecutor(cluster),
    )
    infer = {r.name: r for r in report.results["s1"]}["infer.echo"]
    assert infer.status is JobStatus.SUCCEEDED, infer.reason
    assert infer.gpu_ids == ["0"]  # Ray's id; an NVML UUID where the node has NVML
    log = (report.run.root / "sites" / "s1" / "logs" / "infer.echo.log").read_text()
    assert "CUDA_VISIBLE_DEVICES=0" in log


def test_gpu_ids_map_to_uuids_and_registry_hint() -> None:
    devices = [GpuDevice(0, "GPU-aaa", "x", 1), GpuDevice(1, "GPU-bbb", "x", 1)]
    assert gpu_ids_from_ray([1], devices) == ("GPU-bbb",)
    assert gpu_ids_from_ray(["0", "GPU-ccc"], devices) == ("GPU-aaa", "GPU-ccc")
    assert gpu_ids_from_ray([3], []) == ("3",)
    assert executor_class("ray") is RayExecutor


def test_registry_without_ray_gives_the_install_hint() -> None:
    script = (
        "import importlib.util, sys\n"
        "orig = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'ray' else orig(n, *a)\n"
        "from fedsim.errors import RuntimeUnavailable\n"
        "from fedsim.executors import executor_class\n"
        "try:\n    executor_class('ray')\nexcept RuntimeUnavailable as e:\n    print(e)\n"
        "assert 'ray' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'fedsim[ray]'" in out.stdout
