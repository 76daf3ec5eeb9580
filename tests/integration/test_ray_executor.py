"""The Ray executor on a real two-node cluster on 127.0.0.1, with Ray's token authentication on (the default of
current Ray): same results as the local executor, site affinity and a site spread over two nodes, refusal of a
site no node hosts, a stop that kills the job inside its Ray task, ``--ray-address local``, CPU-only degradation,
and one-line errors for a missing or wrong token.

One cluster per module (``ray start`` costs a few seconds a node), started as the README tells a user:
``ray get-auth-token --generate``, then ``RAY_AUTH_MODE=token ray start --head ...`` and ``RAY_AUTH_MODE=token
ray start --address=HEAD ...``. The head declares ``site:s0`` and ``site:s2``, the second node ``site:s1``,
``site:s2`` and one GPU. The driver — the ``fedsim`` command line with the user's environment, or this process —
gets no RAY_AUTH_MODE: it must find out the cluster wants a token. The token lives in a file RAY_AUTH_TOKEN_PATH
names (Ray's documented alternative to ~/.ray/auth_token) so the test leaves the developer's ~/.ray alone. The
nodes run in a private ``--temp-dir``; teardown stops the processes under it (``ray stop`` would stop every Ray
on the machine).
"""

from __future__ import annotations

import contextlib
import json
import logging
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
from fedsim.executors.ray import RayExecutor, gpu_ids_from_ray, match_cluster_auth  # noqa: E402
from fedsim.guard.nvml import GpuDevice  # noqa: E402
from fedsim.jobs.job import JobStatus  # noqa: E402
from fedsim.pipeline.observer import Callbacks  # noqa: E402
from fedsim.pipeline.run import RunOptions, run_benchmark  # noqa: E402
from tests.conftest import CUBES, FIXTURES, ROOT, small_benchmark  # noqa: E402

SHAPE = (64, 64, 40)
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")  # the module sets its own
CPU_ONLY = "GPU jobs run on the CPU"  # the local executor's and the Ray executor's warning


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> list[str]:
    exe = Path(sys.executable).parent / "ray"
    return [str(exe)] if exe.is_file() else [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


def _ray(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*_ray_cli(), *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ray {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def _stop_nodes(temp: Path) -> None:
    """Stop the Ray processes this module started: those whose command line names its temp dir, and their
    children (workers, agents)."""
    procs: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(temp) in arg for arg in p.info["cmdline"] or ()):
                procs[p.pid] = p
                procs.update((c.pid, c) for c in p.children(recursive=True))
        except psutil.Error:
            continue
    for p in procs.values():
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(list(procs.values()), timeout=3)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="fedsim-ray-", dir="/tmp"))  # short: Ray's socket paths are bounded
    saved = {k: os.environ.get(k) for k in (*AUTH_VARS, "RAY_USAGE_STATS_ENABLED")}
    for k in AUTH_VARS:
        os.environ.pop(k, None)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # `ray get-auth-token --generate` writes ~/.ray/auth_token: here under a private HOME, then named by
    # RAY_AUTH_TOKEN_PATH for every process of the module (the nodes, the drivers, the command line)
    home = temp / "home"
    home.mkdir()
    _ray(["get-auth-token", "--generate"], {**os.environ, "HOME": str(home)})
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(home / ".ray" / "auth_token")
    node_env = {**os.environ, "RAY_AUTH_MODE": "token"}
    address = f"127.0.0.1:{port}"
    head = [
        "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0",
        '--resources={"site:s0": 1, "site:s2": 1}', "--include-dashboard=false", f"--temp-dir={temp}",
        "--disable-usage-stats",
    ]  # fmt: skip
    # the second node declares a GPU: Ray schedules it, nothing uses it
    worker = ["start", f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=1",
              '--resources={"site:s1": 1, "site:s2": 1}']  # fmt: skip
    try:
        started = time.monotonic()
        _ray(head, node_env)
        _ray(worker, node_env)
        print(f"cluster started in {time.monotonic() - started:.1f}s")
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop_nodes(temp)
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _user_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell has: the token where Ray looks for it, no RAY_AUTH_MODE (an in-process
    driver of an earlier test may have set it here)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    return {**env, **extra}


def _fedsim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsim.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=env if env is not None else _user_env(),
    )  # fmt: skip


def _site_hardware(bench: Path, site: str, **hardware: object) -> Path:
    path = bench / "sites" / f"{site}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["hardware"].update(hardware)
    path.write_text(yaml.safe_dump(spec))
    return path


def _node_hosts(address: str, *sites: str) -> dict[str, set[str]]:
    match_cluster_auth(address)  # this process is a driver too
    ray.init(address=address, logging_level="WARNING")
    try:
        return {
            site: {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get(f"site:{site}")}
            for site in sites
        }
    finally:
        ray.shutdown()


def _summary(run_root: Path) -> dict[str, dict[str, object]]:
    jobs = json.loads((run_root / "summary.json").read_text())["jobs"]
    return {f"{j['site']}/{j['name']}": j for j in jobs}


def _assert_all_succeeded(run_root: Path) -> dict[str, dict[str, object]]:
    jobs = _summary(run_root)
    failed = {k: (j["status"], j["reason"]) for k, j in jobs.items() if j["status"] != "succeeded"}
    assert not failed, failed
    return jobs


def _assert_same_results(ours: Path, theirs: Path, sites: tuple[str, ...]) -> None:
    for site in sites:
        mine = (ours / "results" / f"{site}.yaml").read_bytes()
        assert mine and mine == (theirs / "results" / f"{site}.yaml").read_bytes(), site


def test_ray_results_equal_local_and_sites_stay_on_their_nodes(tmp_path: Path, cluster: str) -> None:
    bench = small_benchmark(tmp_path, sites=2, cases=1, shape=SHAPE)
    runs = tmp_path / "runs"
    local = run_benchmark(RunOptions(benchmark=bench, runs_dir=runs, run_id="local"), executor=LocalExecutor())
    # the Ray run goes through the command line, as a user runs it: --executor ray --ray-address HEAD:PORT
    started = time.monotonic()
    proc = _fedsim("run", "benchmark", str(bench), "--runs-dir", str(runs), "--run-id", "ray",
                   "--executor", "ray", "--ray-address", cluster)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "InvalidAuthToken" not in proc.stderr  # the driver's probe of the cluster's auth mode stays quiet
    ray_root = runs / "ray"
    jobs = _assert_all_succeeded(ray_root)
    _assert_same_results(ray_root, local.run.root, ("s0", "s1"))
    for site in ("s0", "s1"):
        assert (ray_root / "sites" / site / "logs" / "infer.baseline.log").stat().st_size > 0
    # site affinity: every job of a site ran on the node that declares site:<name>, and those nodes differ
    hosts = _node_hosts(cluster, "s0", "s1")
    nodes = {site: {j["node"] for j in jobs.values() if j["site"] == site} for site in ("s0", "s1")}
    assert nodes["s0"] == hosts["s0"] and nodes["s1"] == hosts["s1"] and hosts["s0"] != hosts["s1"], (nodes, hosts)
    assert all(j["node"] is None for j in _summary(local.run.root).values())
    print(f"ray run via the CLI: {time.monotonic() - started:.1f}s")


def test_a_site_on_two_nodes_spreads_its_jobs_over_them(tmp_path: Path, cluster: str) -> None:
    bench = small_benchmark(tmp_path, models={"a": CUBES / "baseline", "b": CUBES / "baseline"}, sites=3, cases=1,
                            shape=SHAPE)  # fmt: skip
    site = _site_hardware(bench, "s2", slots=2)  # s2: declared on both nodes (one CPU each); two models at once
    report = run_benchmark(
        RunOptions(benchmark=bench, sites=(site,), runs_dir=tmp_path / "runs", run_id="spread", rank=False),
        executor=RayExecutor(cluster),
    )
    jobs = _assert_all_succeeded(report.run.root)
    hosts = _node_hosts(cluster, "s2")["s2"]
    assert len(hosts) == 2
    used = {j["node"] for j in jobs.values()}
    assert used == hosts, (used, hosts)  # only the site's nodes, and both of them
    assert jobs["s2/infer.a"]["node"] != jobs["s2/infer.b"]["node"]  # the two inferences ran side by side


def test_site_without_a_node_is_refused_before_anything_runs(tmp_path: Path, cluster: str) -> None:
    bench = small_benchmark(tmp_path, sites=4, cases=1, shape=SHAPE)  # s3: no node declares site:s3
    runs = tmp_path / "runs"
    with pytest.raises(SpecError, match=r"site 's3'.*site:s3"):
        run_benchmark(RunOptions(benchmark=bench, runs_dir=runs, run_id="r"), executor=RayExecutor(cluster))
    assert not runs.exists()
    assert not ray.is_initialized()  # the refused executor let go of its connection


def test_missing_or_wrong_token_is_one_line_naming_the_fix(tmp_path: Path, cluster: str) -> None:
    bench = small_benchmark(tmp_path, sites=1, cases=1, shape=SHAPE)
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 64)
    home = tmp_path / "home"  # a machine without ~/.ray/auth_token
    home.mkdir()
    no_token = {k: v for k, v in _user_env(HOME=str(home)).items() if k != "RAY_AUTH_TOKEN_PATH"}
    wrong_env = _user_env(RAY_AUTH_TOKEN_PATH=str(wrong))
    cases = [
        ("has no token", no_token, cluster),
        ("rejected this machine's authentication token", wrong_env, cluster),
        ("RAY_AUTH_TOKEN_PATH is set but file cannot be opened", _user_env(RAY_AUTH_TOKEN_PATH="/nil"), cluster),
        # the default --ray-address auto finds the cluster in RAY_ADDRESS and asks it the same way
        ("rejected this machine's authentication token", {**wrong_env, "RAY_ADDRESS": cluster}, "auto"),
    ]
    for expected, env, address in cases:
        started = time.monotonic()
        proc = _fedsim("run", "benchmark", str(bench), "--runs-dir", str(tmp_path / "runs"),
                       "--executor", "ray", "--ray-address", address, env=env)  # fmt: skip
        assert proc.returncode == 2, (expected, proc.stdout[-2000:], proc.stderr[-2000:])
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "ray get-auth-token" in lines[0], (expected, proc.stderr)
        assert time.monotonic() - started < 30  # no ~20 s of ray.init retries
    assert not (tmp_path / "runs").exists()


def test_local_address_declares_the_sites_and_runs_gpu_sites_on_the_cpu(
    tmp_path: Path, cluster: str, caplog: pytest.LogCaptureFixture
) -> None:
    # bundled-like sites: each asks for a GPU; the machine shows none (CUDA_VISIBLE_DEVICES="" hides any from Ray);
    # gpu_echo asks for one (accelerator_count: 1), so its jobs are GPU jobs
    models = {"baseline": CUBES / "baseline", "echo": FIXTURES / "cubes" / "gpu_echo"}
    bench = small_benchmark(tmp_path, models=models, sites=2, cases=1, shape=SHAPE)
    for site in ("s0", "s1"):
        _site_hardware(bench, site, gpus=1)
    runs = tmp_path / "runs"
    with caplog.at_level(logging.WARNING):
        local = run_benchmark(
            RunOptions(benchmark=bench, runs_dir=runs, run_id="local"), executor=LocalExecutor(nvml=None)
        )
    assert sum(CPU_ONLY in r.getMessage() for r in caplog.records) == 1
    proc = _fedsim("run", "benchmark", str(bench), "--runs-dir", str(runs), "--run-id", "ray",
                   "--executor", "ray", "--ray-address", "local", env=_user_env(CUDA_VISIBLE_DEVICES=""))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.count(CPU_ONLY) == 1, proc.stderr[-3000:]  # one warning, as the local executor gives
    jobs = _assert_all_succeeded(runs / "ray")
    _assert_same_results(runs / "ray", local.run.root, ("s0", "s1"))
    assert len({j["node"] for j in jobs.values()}) == 1  # the private node, not the module's cluster
    assert all(j["gpu_ids"] == [] for j in jobs.values())
    assert jobs["s0/infer.echo"]["status"] == "succeeded"


def _sleeper_children(child: int | None, since: float) -> list[psutil.Process]:
    """Live processes of the hanging model's child. ``child`` is its pid as the cube saw it: in the sandbox's own
    PID namespace that is not the host's, so match the last pid of /proc/<pid>/status NSpid."""
    found = []
    for p in psutil.process_iter(["cmdline", "create_time", "status"]):
        try:
            if (
                "while True: time.sleep(1)" not in " ".join(p.info["cmdline"] or ())
                or p.info["create_time"] < since - 1
                or p.info["status"] == psutil.STATUS_ZOMBIE
            ):
                continue
            status = Path(f"/proc/{p.pid}/status").read_text().splitlines()
            nspid = next((ln.split()[1:] for ln in status if ln.startswith("NSpid:")), [str(p.pid)])
            if child is None or nspid[-1] == str(child):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def test_stop_kills_the_job_inside_its_task(tmp_path: Path, cluster: str) -> None:
    bench = small_benchmark(
        tmp_path, models={"sleeper": FIXTURES / "cubes" / "hanging_model"}, sites=2, cases=1, shape=SHAPE,
        timeout_per_case_s=600,
    )  # fmt: skip
    stop = threading.Event()
    started: dict[str, float] = {}
    seen: list[psutil.Process] = []

    def stop_now() -> None:
        seen.extend(_sleeper_children(None, since))  # the matcher below finds the children while they live
        stop.set()

    def on_event(kind: str, job: object, _res: object) -> None:
        if kind == "started" and getattr(job, "name", "") == "infer.sleeper":
            started[getattr(job, "site", "")] = time.monotonic()
            if len(started) == 2:
                threading.Timer(3.0, stop_now).start()  # both sleepers are running their children by then

    since = time.time()
    with RayExecutor(cluster) as executor:
        report = run_benchmark(
            RunOptions(benchmark=bench, runs_dir=tmp_path / "runs", run_id="stop", rank=False),
            Callbacks(on_job=on_event), executor=executor, stop_event=stop,
        )  # fmt: skip
    assert report.interrupted
    assert len(seen) >= 2, seen  # (>= : another run of this fixture may share the machine)
    for site in ("s0", "s1"):
        res = {r.name: r for r in report.results[site]}
        sleeper = res["infer.sleeper"]
        assert sleeper.status is JobStatus.INTERRUPTED, (sleeper.status, sleeper.reason)
        assert sleeper.duration_s < 120, sleeper.duration_s  # stopped, not run into its 600 s limit
        log = (report.run.root / "sites" / site / "logs" / "infer.sleeper.log").read_text()
        child = int(log.split("child ")[1].split()[0])
        deadline = time.monotonic() + 15
        while survivors := _sleeper_children(child, since):
            assert time.monotonic() < deadline, f"{site}: the sleeper's child {child} survived the stop: {survivors}"
            time.sleep(0.1)
        assert res["evaluate.sleeper"].status is JobStatus.INTERRUPTED


def test_gpu_jobs_get_the_gpus_ray_assigns(tmp_path: Path, cluster: str) -> None:
    bench = small_benchmark(tmp_path, models={"echo": FIXTURES / "cubes" / "gpu_echo"}, sites=2, cases=1, shape=SHAPE)
    site_file = _site_hardware(bench, "s1", gpus=2)
    with pytest.raises(SpecError, match=r"site 's1' asks for 2 GPUs"):  # the s1 node declares one
        run_benchmark(RunOptions(benchmark=bench, sites=(site_file,), runs_dir=tmp_path / "runs"),
                      executor=RayExecutor(cluster))  # fmt: skip
    _site_hardware(bench, "s1", gpus=1)
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
