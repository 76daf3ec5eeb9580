"""Limits on real containers: the wall-clock deadline and the RAM limit (cgroup + OOMKilled)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fedsim.cube import Isolation, bind, load_cube
from fedsim.guard import DeadlineGuard, supervise
from tests.conftest import FIXTURES

pytestmark = pytest.mark.docker
MiB = 1024**2


@pytest.fixture(scope="module")
def runtime():
    from fedsim.runtimes.docker import DockerRuntime

    rt = DockerRuntime()
    yield rt
    mine = [f"fedsim.job=test/{c}" for c in ("hanging_model", "memory_hog")]
    left = [c for label in mine for c in rt.client.containers.list(all=True, filters={"label": label})]
    assert not left, f"containers left behind: {[c.name for c in left]}"


def _launch(runtime, tmp_path: Path, cube: str, **iso: object):
    c = load_cube(FIXTURES / "cubes" / cube)
    runtime.prepare(c)
    (tmp_path / "data").mkdir(exist_ok=True)
    inv = bind(
        c,
        "infer",
        {"data_path": tmp_path / "data", "output_path": tmp_path / "out"},
        isolation=Isolation(untrusted=True, **iso),  # type: ignore[arg-type]
        labels={"fedsim.job": f"test/{cube}"},
    )
    inv.create_directories()
    return runtime.launch(inv, tmp_path / "job.log", tmp_path / "work")


def test_chatty_container_is_killed_within_a_second_of_its_deadline(runtime, tmp_path: Path) -> None:
    handle = _launch(runtime, tmp_path, "hanging_model")
    try:
        start = time.monotonic()
        outcome = supervise(handle, [DeadlineGuard(2.0)])
        assert outcome.violation is not None and outcome.violation.status == "timeout"
        assert 2.0 <= outcome.duration_s < 3.0
        assert time.monotonic() - start < 3.5
        assert handle.wait(0) is not None
    finally:
        handle.cleanup()
    assert "still working on case" in (tmp_path / "job.log").read_text()  # logs streamed while running


def test_memory_bomb_hits_the_container_limit_and_is_recorded(runtime, tmp_path: Path) -> None:
    handle = _launch(runtime, tmp_path, "memory_hog", ram_bytes=256 * MiB)
    try:
        outcome = supervise(handle, [DeadlineGuard(60)])  # the cgroup alone: OOMKilled must be detected
        assert outcome.violation is not None, (tmp_path / "job.log").read_text()[-500:]
        assert outcome.violation.status == "ram_exceeded"
        assert "OOMKilled" in outcome.violation.reason
        assert outcome.duration_s < 30
    finally:
        handle.cleanup()


def test_host_pids_are_the_container_processes(runtime, tmp_path: Path) -> None:
    import psutil

    handle = _launch(runtime, tmp_path, "hanging_model")
    try:
        deadline = time.monotonic() + 10
        while "child" not in (tmp_path / "job.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = handle.host_pids()
        assert handle.root_pid() in pids and len(pids) >= 3  # init, the cube, its child
        cmdlines = " ".join(" ".join(psutil.Process(p).cmdline()) for p in pids)
        assert "mlcube.py" in cmdlines
    finally:
        handle.terminate(0.5)
        handle.cleanup()


def test_rss_guard_stops_a_docker_job_at_the_limit_and_records_its_peak(runtime, tmp_path: Path) -> None:
    from fedsim.guard import RamGuard

    handle = _launch(runtime, tmp_path, "memory_hog", ram_bytes=512 * MiB)
    try:
        outcome = supervise(handle, [DeadlineGuard(60), RamGuard(256 * MiB)])
        assert outcome.violation is not None and outcome.violation.status == "ram_exceeded"
        assert "exceeded the limit of 0.25 GiB" in outcome.violation.reason
        assert outcome.usage.peak_rss_bytes and outcome.usage.peak_rss_bytes > 256 * MiB
    finally:
        handle.cleanup()


def test_cgroup_accounting_stops_a_container_pinned_at_its_limit(runtime, tmp_path: Path) -> None:
    from fedsim.guard import RamGuard

    handle = _launch(runtime, tmp_path, "memory_hog", ram_bytes=384 * MiB)
    try:
        outcome = supervise(handle, [DeadlineGuard(60), RamGuard(384 * MiB, use_cgroup=True)])
        assert outcome.violation is not None and outcome.violation.status == "ram_exceeded", outcome
        assert outcome.usage.peak_rss_bytes and outcome.usage.peak_rss_bytes > 300 * MiB
        assert outcome.duration_s < 20
    finally:
        handle.cleanup()
