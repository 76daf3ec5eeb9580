"""Prove the GPU guard on a real GPU (or, with --fake, exercise the same code with FakeNvml).

    python perf/gpu_guard_check.py            # on a machine with an NVIDIA GPU, torch and nvidia-ml-py
    python perf/gpu_guard_check.py --fake     # here: scripted NVML, real processes

(a) a job allocating 2 GiB: the guard's peak next to NVML's own reading;
(b) a job growing 256 MiB every 50 ms under an 11 GiB limit, repeated: time from crossing to kill and overshoot
    (targets: p95 <= 50 ms and <= 512 MiB);
(c) two jobs at once on one GPU: peaks accounted separately;
(d) the sampler's CPU cost per second of wall time with 1 and with 8 concurrent jobs (target < 1 % at 50 Hz).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fedsim.guard import DeadlineGuard, supervise
from fedsim.guard.gpu import GpuMemoryGuard, GpuSampler
from fedsim.guard.nvml import GpuProcess, NvmlBackend, PynvmlBackend
from fedsim.runtimes.process import HostProcess
from fedsim.testing import FakeNvml

MiB, GiB = 1024**2, 1024**3

ALLOC = """
import sys, time, torch
x = torch.empty({n}, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
print("allocated", flush=True)
time.sleep({hold})
"""
RAMP = """
import time, torch
blocks = [torch.empty(1, device="cuda")]
torch.cuda.synchronize()
while True:
    blocks.append(torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device="cuda"))
    torch.cuda.synchronize()
    print(f"T {time.monotonic():.6f} {len(blocks) - 1}", flush=True)
    time.sleep(0.05)
"""
IDLE = "import time\ntime.sleep({hold})\n"


def spawn(code: str, workdir: Path, env: dict[str, str]) -> HostProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    return HostProcess([sys.executable, "-c", code], log_path=workdir / "log", cwd=workdir, env=env)


def nvml_reading(backend: NvmlBackend, uuid: str, pid: int) -> int | None:
    for p in backend.processes(uuid):
        if p.pid == pid:
            return p.used_bytes
    return None


def check_a(backend: NvmlBackend, uuid: str, tmp: Path, env: dict[str, str], fake: bool) -> dict[str, object]:
    sampler = GpuSampler(backend, hz=50)
    h = spawn(IDLE.format(hold=3) if fake else ALLOC.format(n=2 * GiB, hold=3), tmp / "a", env)
    if fake:
        assert isinstance(backend, FakeNvml)
        backend.set_processes(uuid, [GpuProcess(h.pid, 2 * GiB + 300 * MiB)])  # 2 GiB + a CUDA context
    reading: list[int | None] = []

    def probe() -> None:
        time.sleep(2.0)
        reading.append(nvml_reading(backend, uuid, h.pid))

    import threading

    t = threading.Thread(target=probe)
    t.start()
    out = supervise(h, [DeadlineGuard(60), GpuMemoryGuard(sampler, (uuid,), 11 * GiB)])
    t.join()
    if fake:
        backend.set_processes(uuid, [])
    return {"guard_peak_MiB": (out.usage.peak_gpu_memory_bytes or 0) / MiB, "nvml_MiB": (reading[0] or 0) / MiB}


def check_b(
    backend: NvmlBackend, uuid: str, tmp: Path, env: dict[str, str], reps: int, fake: bool
) -> dict[str, object]:
    limit = 11 * GiB
    lat, over = [], []
    sampler = GpuSampler(backend, hz=50)
    for r in range(reps):
        if fake:
            assert isinstance(backend, FakeNvml)
            h = spawn(IDLE.format(hold=60), tmp / f"b{r}", env)
            t0 = time.monotonic()
            backend.script(uuid, lambda t, pid=h.pid: [GpuProcess(pid, int(512 * MiB + (t // 0.05) * 256 * MiB))])
            steps_needed = (limit - 512 * MiB) // (256 * MiB) + 1
            crossed = t0 + 0.05 * steps_needed
        else:
            h = spawn(RAMP, tmp / f"b{r}", env)
        guard = GpuMemoryGuard(sampler, (uuid,), limit)
        out = supervise(h, [DeadlineGuard(120), guard])
        killed = time.monotonic()
        if not fake:
            stamps = [ln.split() for ln in (tmp / f"b{r}" / "log").read_text().splitlines() if ln.startswith("T ")]
            # the first allocation that put the process above the limit (context ~0.5 GiB included by NVML)
            crossed = next((float(s[1]) for s in stamps if 512 * MiB + int(s[2]) * 256 * MiB > limit), killed)
        else:
            backend.clear_script(uuid)
        lat.append((killed - crossed) * 1000)
        over.append(((out.usage.peak_gpu_memory_bytes or 0) - limit) / MiB)
        assert out.violation is not None and out.violation.status == "gpu_memory_exceeded", out
    lat.sort()
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    return {
        "reps": reps,
        "kill_latency_ms_median": round(statistics.median(lat), 1),
        "kill_latency_ms_p95": round(p95, 1),
        "overshoot_MiB_max": round(max(over), 1),
        "pass": p95 <= 50 and max(over) <= 512,
    }


def check_c(backend: NvmlBackend, uuid: str, tmp: Path, env: dict[str, str], fake: bool) -> dict[str, object]:
    import threading

    sampler = GpuSampler(backend, hz=50)
    sizes = (1 * GiB, 3 * GiB)
    handles = [
        spawn(IDLE.format(hold=3) if fake else ALLOC.format(n=n, hold=3), tmp / f"c{i}", env)
        for i, n in enumerate(sizes)
    ]
    if fake:
        assert isinstance(backend, FakeNvml)
        backend.set_processes(uuid, [GpuProcess(h.pid, n + 300 * MiB) for h, n in zip(handles, sizes, strict=True)])
    peaks: dict[int, float] = {}

    def run(i: int) -> None:
        out = supervise(handles[i], [DeadlineGuard(60), GpuMemoryGuard(sampler, (uuid,), 11 * GiB)])
        peaks[i] = (out.usage.peak_gpu_memory_bytes or 0) / MiB

    ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if fake:
        backend.set_processes(uuid, [])
    return {
        "job1_alloc_MiB": sizes[0] / MiB,
        "job1_peak_MiB": peaks[0],
        "job2_alloc_MiB": sizes[1] / MiB,
        "job2_peak_MiB": peaks[1],
    }


def check_d(backend: NvmlBackend, uuids: list[str], tmp: Path, env: dict[str, str], jobs: int, fake: bool) -> dict:
    sampler = GpuSampler(backend, hz=50)
    handles = [
        spawn(IDLE.format(hold=6) if fake else ALLOC.format(n=256 * MiB, hold=6), tmp / f"d{jobs}-{i}", env)
        for i in range(jobs)
    ]
    if fake:
        assert isinstance(backend, FakeNvml)
        for i, h in enumerate(handles):
            backend.add_process(uuids[i % len(uuids)], h.pid, GiB)
    watches = [GpuMemoryGuard(sampler, (uuids[i % len(uuids)],), 11 * GiB).watch(h) for i, h in enumerate(handles)]
    time.sleep(1.5)
    cpu0, ticks0, t0 = sampler.cpu_seconds, sampler.ticks, time.monotonic()
    time.sleep(3.0)
    cpu, ticks, wall = sampler.cpu_seconds - cpu0, sampler.ticks - ticks0, time.monotonic() - t0
    from fedsim.guard import Usage

    for w in watches:
        w.stop(Usage())
    for h in handles:
        h.terminate(0.2)
    if fake:
        for u in uuids:
            backend.set_processes(u, [])
    return {
        "jobs": jobs,
        "hz": round(ticks / wall, 1),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 3),
        "us_per_tick": round(1e6 * cpu / max(1, ticks), 1),
        "pass": 100 * cpu / wall < 1.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fake", action="store_true", help="use FakeNvml (no GPU needed)")
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    backend: NvmlBackend = FakeNvml(gpus=8, memory_gb=80) if args.fake else PynvmlBackend()
    devices = backend.devices()
    uuid = devices[0].uuid
    env = {"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": uuid} if not args.fake else {}
    if not args.fake:
        import os

        env = {**os.environ, "CUDA_VISIBLE_DEVICES": uuid}
    report: dict[str, object] = {
        "backend": "FakeNvml" if args.fake else "NVML",
        "device": f"{devices[0].name} ({devices[0].memory_total / GiB:.0f} GiB)",
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        report["a_2GiB_job"] = check_a(backend, uuid, tmp, env, args.fake)
        report["b_ramp_kill"] = check_b(backend, uuid, tmp, env, args.reps, args.fake)
        report["c_two_jobs_one_gpu"] = check_c(backend, uuid, tmp, env, args.fake)
        uuids = [d.uuid for d in devices]
        report["d_sampler_cost_1_job"] = check_d(backend, uuids, tmp, env, 1, args.fake)
        report["d_sampler_cost_8_jobs"] = check_d(backend, uuids, tmp, env, 8, args.fake)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
