"""Containment of untrusted model cubes: what a hostile submission tries is prevented, honest work still runs.

Each ``tests/fixtures/cubes/hostile_*`` cube tries one thing (network egress, writing its inputs, finding the
labels, becoming root), prints what happened and exits 0. Through the normal pipeline (``execute_job`` on the
docker runtime, ``untrusted``) the job must succeed and the log must say the attempt failed; a lax
``docker run`` of the same cube is the positive control proving each probe can see an open door. Hanging
containers die at a deadline or on interrupt, and nothing this module starts outlives it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from fedsim.cube import Isolation, bind, load_cube
from fedsim.guard import DeadlineGuard, supervise
from fedsim.jobs.execute import execute_job
from fedsim.jobs.job import Job, JobKind, JobLimits, JobResult, JobStatus
from fedsim.runtimes import docker_available
from fedsim.runtimes.docker import container_user
from fedsim.runtimes.policy import resolve
from fedsim.runtimes.select import RuntimePool
from tests.conftest import FIXTURES, containers_of_run

pytestmark = pytest.mark.docker

RUN = f"fedsim-test-containment-{secrets.token_hex(3)}"  # every container this module creates carries it
CUBE_DIRS = FIXTURES / "cubes"
HOSTILE = ("hostile_network", "hostile_write_input", "hostile_read_labels", "hostile_root")
CASES = ("FeTS22_Patient0001", "FeTS22_Patient0002")


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_containers() -> Iterator[None]:
    """After this module, no container it created may remain (ran, failed, timed out or interrupted)."""
    yield
    if docker_available():
        left = containers_of_run(RUN)
        assert left == [], f"containers left behind: {left}"


@pytest.fixture(scope="module")
def launched() -> list[Any]:
    """Handles the docker runtime started; their cached inspect data (taken at start) outlives the container."""
    return []


@pytest.fixture(scope="module")
def pool(launched: list[Any]) -> Iterator[RuntimePool]:
    """One docker runtime for the module, recording its handles; fixture cubes are (re)built once."""
    pool = RuntimePool()
    runtime: Any = pool.get("docker")
    for name in [*HOSTILE, "hanging_model"]:
        runtime.images.build(load_cube(CUBE_DIRS / name), None)
    launch = runtime.launch

    def recording_launch(*args: Any, **kwargs: Any) -> Any:
        handle = launch(*args, **kwargs)
        launched.append(handle)
        return handle

    runtime.launch = recording_launch
    yield pool
    runtime.client.close()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site as a run lays it out: prepared cases (world-writable, so only the mount can stop writes), labels."""
    site = tmp_path / RUN / "sites" / "s"
    for case in CASES:
        (site / "prepared" / case).mkdir(parents=True)
        for mod in ("t1", "t1ce", "t2", "flair"):
            (site / "prepared" / case / f"{case}_brain_{mod}.nii.gz").write_bytes(b"not really nifti\n")
    (site / "labels").mkdir()
    for case in CASES:
        (site / "labels" / f"{case}_final_seg.nii.gz").write_bytes(b"secret\n")
    for root, _dirs, files in os.walk(site / "prepared"):
        os.chmod(root, 0o777)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666)
    return site


def _job(cube: str, site: Path, *, timeout_s: float = 60) -> Job:
    return Job(
        site="s",
        name=f"infer.{cube}",
        kind=JobKind.INFER,
        cube=load_cube(CUBE_DIRS / cube),
        task="infer",
        paths=(("data_path", site / "prepared"), ("output_path", site / "predictions" / cube)),
        runtime="docker",
        limits=JobLimits(timeout_s=timeout_s),
        log_path=site / "logs" / f"infer.{cube}.log",
        workdir=site / "work" / f"infer.{cube}",
        model=cube,
        policy=resolve("docker", load_cube(CUBE_DIRS / cube), untrusted=True),
        cases_dir=site / "prepared",
        clean_outputs=(site / "predictions" / cube,),
    )


def _run_contained(cube: str, site: Path, pool: RuntimePool, launched: list[Any]) -> tuple[JobResult, str, dict]:
    """Run the cube as the pipeline runs a submission; the job must succeed (containment keeps honest work)."""
    result = execute_job(_job(cube, site), pool)
    log = Path(result.log or "").read_text()
    assert result.status is JobStatus.SUCCEEDED, f"{result.reason}\n{log}"
    out = site / "predictions" / cube
    assert sorted(p.name for p in out.iterdir()) == [f"{c}.txt" for c in CASES]
    return result, log, launched[-1].container.attrs


def _snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(path)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"") for p in path.rglob("*")
    }


def _probes(log: str) -> dict[str, str]:
    return dict(re.findall(r"^probe (.+?): (blocked|OPEN)", log, re.MULTILINE))


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, int, str]]:
    """A TCP server on every host address, and the docker bridge's gateway address (the host, seen from a
    container on the default network)."""
    import docker

    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen(8)
    client = docker.from_env()
    try:
        cfg = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    finally:
        client.close()
    gateway = cfg.get("Gateway") or str(ipaddress.ip_network(cfg["Subnet"])[1])
    try:
        yield server, server.getsockname()[1], gateway
    finally:
        server.close()


def _accepted_any(server: socket.socket) -> bool:
    server.setblocking(False)
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


# ---------------------------------------------------------------- what a hostile cube tries is prevented


def test_network_egress_is_blocked(site: Path, pool: RuntimePool, launched: list[Any], listener: Any) -> None:
    server, port, gateway = listener
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # the host service is really there: a refusal inside the container is the namespace's doing
    assert _accepted_any(server)
    (site / "prepared" / "targets.txt").write_text(f"127.0.0.1:{port} {gateway}:{port}\n")
    _, log, attrs = _run_contained("hostile_network", site, pool, launched)
    assert "NETWORK: blocked" in log, log
    probes = _probes(log)
    assert set(probes) == {f"tcp 127.0.0.1:{port}", f"tcp {gateway}:{port}", "tcp 1.1.1.1:53", "dns example.com",
                           "dns pypi.org"}  # fmt: skip
    assert set(probes.values()) == {"blocked"}
    assert "interfaces: lo\n" in log
    assert not _accepted_any(server)
    assert attrs["HostConfig"]["NetworkMode"] == "none"


def test_inputs_are_read_only(site: Path, pool: RuntimePool, launched: list[Any]) -> None:
    before = _snapshot(site / "prepared")
    _, log, attrs = _run_contained("hostile_write_input", site, pool, launched)
    assert "WRITE_INPUT: blocked" in log, log
    probes = re.findall(r"^probe (\S+): blocked \((\w+):", log, re.MULTILINE)
    assert {name for name, _ in probes} == {"create", "mkdir", "overwrite", "append", "chmod", "rename", "delete"}
    assert {code for _, code in probes} == {"EROFS"}  # the mount, not file modes (they are 0666/0777 here)
    assert _snapshot(site / "prepared") == before
    data = next(m for m in attrs["Mounts"] if m["Destination"] == "/mlcube_io0")
    assert data["RW"] is False


def test_labels_are_never_mounted(site: Path, pool: RuntimePool, launched: list[Any]) -> None:
    _, log, attrs = _run_contained("hostile_read_labels", site, pool, launched)
    assert "LABELS: none found" in log, log
    assert "mlcube mounts: /mlcube_io0,/mlcube_io1\n" in log
    mounts = {m["Destination"]: (m["Source"], m["RW"]) for m in attrs["Mounts"]}
    assert mounts == {
        "/mlcube_io0": (str(site / "prepared"), False),
        "/mlcube_io1": (str(site / "predictions" / "hostile_read_labels"), True),
    }


def test_cube_never_runs_as_root(site: Path, pool: RuntimePool, launched: list[Any]) -> None:
    _, log, attrs = _run_contained("hostile_root", site, pool, launched)
    line = next(ln for ln in log.splitlines() if ln.startswith("ROOT:"))
    assert line.startswith("ROOT: prevented"), line
    uid = container_user()[0]
    assert uid != 0 and f"uid={uid} euid={uid} " in line
    assert "CapEff=0000000000000000" in line and "CapBnd=0000000000000000" in line and "NoNewPrivs=1" in line
    assert "setuid(0)=PermissionError" in line
    su = re.search(r"su=rc=(\d+) out=(\S+)", line)
    assert su is not None and su.group(1) != "0" and su.group(2) != "0", line
    host = attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"] and host["Init"] is True
    assert attrs["Config"]["User"] == f"{uid}:{container_user()[1]}"


# ---------------------------------------------------------------- positive controls: the probes can see an open door


@pytest.mark.parametrize(
    ("cube", "verdict"),
    [
        ("hostile_network", "NETWORK: OPEN"),
        ("hostile_write_input", "WRITE_INPUT: OPEN"),
        ("hostile_read_labels", "LABELS: FOUND"),
        ("hostile_root", "ROOT: OPEN"),
    ],
)
def test_probes_detect_an_uncontained_run(
    cube: str, verdict: str, site: Path, pool: RuntimePool, listener: Any
) -> None:
    """``docker run`` as root on the default network, inputs writable, labels mounted: every probe says so."""
    from docker.types import Mount

    _, port, gateway = listener
    (site / "prepared" / "targets.txt").write_text(f"{gateway}:{port}\n")
    out = site / "predictions" / cube
    out.mkdir(parents=True)
    spec = load_cube(CUBE_DIRS / cube)
    assert spec.docker is not None
    client: Any = pool.get("docker").client  # type: ignore[attr-defined]
    container = client.containers.create(
        spec.docker.image,
        ["infer", "--data_path=/mlcube_io0", "--output_path=/mlcube_io1"],
        mounts=[
            Mount("/mlcube_io0", str(site / "prepared"), type="bind"),
            Mount("/mlcube_io1", str(out), type="bind"),
            Mount("/mlcube_io2", str(site / "labels"), type="bind", read_only=True),
        ],
        dns_opt=["timeout:1", "attempts:1"],
        labels={"fedsim": "1", "fedsim.run": RUN},
    )
    try:
        container.start()
        assert container.wait(timeout=120)["StatusCode"] == 0
        log = container.logs().decode("utf-8", "replace")
    finally:
        container.remove(force=True)
    assert verdict in log, log


# ---------------------------------------------------------------- hanging containers die and are removed


def _containers(client: Any, job_key: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": [f"fedsim.run={RUN}", f"fedsim.job={job_key}"]})


def test_deadline_kills_and_removes_a_hanging_container(site: Path, pool: RuntimePool) -> None:
    """DeadlineGuard: wall clock from start, though the cube keeps printing; its whole process tree dies."""
    runtime: Any = pool.get("docker")
    inv = bind(
        load_cube(CUBE_DIRS / "hanging_model"),
        "infer",
        {"data_path": site / "prepared", "output_path": site / "predictions" / "hang"},
        isolation=Isolation(untrusted=True),
        pinned={"data_path", "output_path"},
        labels={"fedsim.run": RUN, "fedsim.job": "s/deadline"},
    )
    inv.create_directories()
    log = site / "logs" / "deadline.log"
    handle = runtime.launch(inv, log, site / "work")
    try:
        while "child" not in log.read_text() and time.monotonic() - handle.started_at < 20:
            time.sleep(0.1)
        pids = handle.host_pids()
        assert len(pids) >= 3  # init, the cube, its detached child
        outcome = supervise(handle, [DeadlineGuard(2.0)], grace_s=1)
    finally:
        handle.cleanup()
    assert outcome.violation is not None and outcome.violation.status == "timeout"
    assert 2.0 <= outcome.duration_s < 10
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert "still working on case 2" in log.read_text()  # the log streamed while it ran, kept after the kill
    assert _containers(runtime.client, "s/deadline") == []


def test_stop_event_kills_and_removes_a_hanging_container(site: Path, pool: RuntimePool) -> None:
    """Ctrl-C path: the pipeline's stop_event ends the job as interrupted and its container is gone."""
    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)
    timer.start()
    try:
        started = time.monotonic()
        result = execute_job(_job("hanging_model", site, timeout_s=120), pool, stop_event=stop)
    finally:
        timer.cancel()
    assert result.status is JobStatus.INTERRUPTED and result.reason == "stopped by the user"
    assert time.monotonic() - started < 15
    assert _containers(pool.get("docker").client, "s/infer.hanging_model") == []  # type: ignore[attr-defined]
