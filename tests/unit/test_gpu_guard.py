"""GPU memory enforcement with the shipped FakeNvml driving real processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fedsim.errors import SpecError
from fedsim.guard import DeadlineGuard, supervise
from fedsim.guard.gpu import GpuMemoryGuard, GpuSampler
from fedsim.guard.nvml import GpuProcess
from fedsim.jobs.job import Job, JobKind, JobLimits
from fedsim.jobs.resources import ResourcePool
from fedsim.runtimes.process import HostProcess
from fedsim.testing import FakeNvml

MiB, GiB = 1024**2, 1024**3
UUID = "GPU-fake-0000"


def _sleeper(tmp_path: Path, code: str = "import time\ntime.sleep(60)\n") -> HostProcess:
    return HostProcess([sys.executable, "-c", code], log_path=tmp_path / "job.log", cwd=tmp_path, env={})


def test_ramp_is_killed_soon_after_crossing_the_limit(tmp_path: Path) -> None:
    nvml = FakeNvml(gpus=1, memory_gb=24)
    handle = _sleeper(tmp_path)
    limit = 2 * GiB
    # +256 MiB every 50 ms, starting at the CUDA context's ~0.5 GiB
    nvml.script(UUID, lambda t: [GpuProcess(handle.pid, int(512 * MiB + (t // 0.05) * 256 * MiB))])
    sampler = GpuSampler(nvml, hz=50)
    outcome = supervise(handle, [DeadlineGuard(30), GpuMemoryGuard(sampler, (UUID,), limit)])
    assert outcome.violation is not None and outcome.violation.status == "gpu_memory_exceeded"
    assert "exceeded the limit of 2.00 GiB" in outcome.violation.reason
    crossing = 0.05 * ((limit - 512 * MiB) // (256 * MiB) + 1)  # first step strictly above the limit
    assert outcome.usage.peak_gpu_memory_bytes is not None
    assert limit < outcome.usage.peak_gpu_memory_bytes <= limit + 512 * MiB
    assert crossing <= outcome.duration_s < crossing + 3.0  # + SIGTERM grace at most
    assert handle.wait(1) is not None


def test_children_count_and_strangers_do_not(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(c.pid, flush=True)\ntime.sleep(60)\n"
    )
    handle = _sleeper(tmp_path, code)
    while not (tmp_path / "job.log").read_text().strip():
        time.sleep(0.02)
    child = int((tmp_path / "job.log").read_text().split()[0])
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        nvml = FakeNvml()
        nvml.set_processes(
            UUID, [GpuProcess(child, 3 * GiB), GpuProcess(stranger.pid, 8 * GiB), GpuProcess(handle.pid, GiB)]
        )
        sampler = GpuSampler(nvml)
        watch = GpuMemoryGuard(sampler, (UUID,), 11 * GiB).watch(handle)
        sampler.sample([watch])
        assert watch.current == 4 * GiB  # the job's own process and its child, not the stranger
        assert watch.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
        handle.terminate(0.2)


def test_two_jobs_on_one_gpu_are_accounted_separately(tmp_path: Path) -> None:
    a, b = _sleeper(tmp_path / "a"), _sleeper(tmp_path / "b")
    try:
        nvml = FakeNvml()
        nvml.set_processes(UUID, [GpuProcess(a.pid, 2 * GiB), GpuProcess(b.pid, 5 * GiB)])
        sampler = GpuSampler(nvml)
        wa = GpuMemoryGuard(sampler, (UUID,), 4 * GiB).watch(a)
        wb = GpuMemoryGuard(sampler, (UUID,), 4 * GiB).watch(b)
        sampler.sample([wa, wb])
        assert (wa.current, wb.current) == (2 * GiB, 5 * GiB)
        assert wa.poll() is None and wb.poll() is not None  # only b is over its own limit
    finally:
        a.terminate(0.2)
        b.terminate(0.2)


def test_unavailable_per_process_values_fall_back_to_the_device_when_alone(tmp_path: Path) -> None:
    a = _sleeper(tmp_path)
    try:
        nvml = FakeNvml()
        nvml.set_processes(UUID, [GpuProcess(a.pid, None)])
        nvml.device_used[UUID] = 6 * GiB
        sampler = GpuSampler(nvml)
        w = GpuMemoryGuard(sampler, (UUID,), 4 * GiB).watch(a)
        sampler.sample([w])
        assert w.current == 6 * GiB and "device-level" in w.note
        assert w.poll() is not None
    finally:
        a.terminate(0.2)


def test_sampler_cost_with_eight_jobs_is_below_one_percent(tmp_path: Path) -> None:
    nvml = FakeNvml(gpus=8)
    handles = [_sleeper(tmp_path / str(i)) for i in range(8)]
    try:
        for i, h in enumerate(handles):
            nvml.set_processes(f"GPU-fake-{i:04d}", [GpuProcess(h.pid, GiB)])
        sampler = GpuSampler(nvml, hz=50)
        watches = [GpuMemoryGuard(sampler, (f"GPU-fake-{i:04d}",), 11 * GiB).watch(h) for i, h in enumerate(handles)]
        time.sleep(0.5)  # let every PID be resolved once
        cpu0, ticks0, t0 = sampler.cpu_seconds, sampler.ticks, time.monotonic()
        time.sleep(2.0)
        cpu, ticks, wall = sampler.cpu_seconds - cpu0, sampler.ticks - ticks0, time.monotonic() - t0
        assert ticks >= 0.8 * 50 * wall  # really sampling at ~50 Hz
        assert cpu / wall < 0.01, f"sampler used {100 * cpu / wall:.2f}% of a core"
        for w in watches:
            assert w.peak == GiB
            w.stop(__import__("fedsim.guard", fromlist=["Usage"]).Usage())
    finally:
        for h in handles:
            h.terminate(0.2)


def _job(gpus: int, ram: int = GiB) -> Job:
    return Job(
        site="s",
        name="infer.m",
        kind=JobKind.INFER,
        cube=None,  # type: ignore[arg-type]
        task="infer",
        paths=(),
        runtime="local",
        limits=JobLimits(timeout_per_case_s=1, ram_bytes=ram, gpus=gpus),
        log_path=Path("/dev/null"),
        workdir=Path("/tmp"),
    )


def test_concurrent_jobs_never_share_a_gpu() -> None:
    pool = ResourcePool(FakeNvml(gpus=2).devices(), cpus=8, ram_bytes=64 * GiB)
    holders: dict[str, int] = {}
    seen: set[str] = set()
    lock = threading.Lock()
    errors: list[str] = []

    def work() -> None:
        with pool.acquire(_job(1)) as grant:
            assert len(grant.gpu_ids) == 1
            with lock:
                for g in grant.gpu_ids:
                    if holders.get(g):
                        errors.append(f"{g} shared")
                    holders[g] = holders.get(g, 0) + 1
                    seen.add(g)
            time.sleep(0.05)
            with lock:
                for g in grant.gpu_ids:
                    holders[g] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert seen == {"GPU-fake-0000", "GPU-fake-0001"}
    assert pool.max_concurrent_gpu_jobs == 2


def test_gpu_jobs_run_on_cpu_without_gpus(caplog: pytest.LogCaptureFixture) -> None:
    pool = ResourcePool([], cpus=2, ram_bytes=8 * GiB)
    with pool.acquire(_job(1)) as grant:
        assert grant.gpu_ids == ()
    assert "run on the CPU" in caplog.text


def test_profile_larger_than_any_gpu_is_refused() -> None:
    pool = ResourcePool(FakeNvml(gpus=1, memory_gb=8).devices())
    with pytest.raises(SpecError, match=r"hardware.gpu_memory_gb: .*largest GPU here has 8.0 GiB"):
        pool.check_profile("s", 1, 11 * GiB, source="sites/s.yaml")
    with pytest.raises(SpecError, match=r"hardware\.gpus"):
        pool.check_profile("s", 2, 4 * GiB, source="sites/s.yaml")
