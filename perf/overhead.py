"""What fedsim adds to every job, and whether the orchestrator's memory stays flat over a long run.

Run: ``python perf/overhead.py`` (about a minute on 2 cores; ``--jobs``, ``--run-jobs`` scale it down, ``--skip-run``
or ``--skip-jobs`` leave one part out). Both parts use one no-op cube whose ``local: {entrypoint: "python3 -c
pass"}`` makes every task a Python that exits at once.

1. Added wall time per job: ``--jobs`` (default 50) interleaved runs, after warm-ups, of the same command line
   (``python -c pass TASK --output_path=...``, taken from the local runtime's own ``command``)
   - bare: ``subprocess.run`` of it, nothing else;
   - trusted: ``execute_job`` on the local runtime, unsandboxed (a metrics job: deadline and RAM guards);
   - untrusted: ``execute_job`` of a submission (``infer``: deadline, RAM and output-size guards) in the
     bubblewrap sandbox, where bwrap runs here; it is also compared with a bare run of its own bwrap command line.
   Prints each median and the differences; the target is the trusted median minus the bare median
   (``--max-extra-ms``, default 50: the issue's budget for fedsim's own work around a job on the local runtime).
2. Orchestrator memory: ``--run-jobs`` (default 1,000) no-op jobs of one site (prepare → sanity_check →
   statistics → infer × M → evaluate × M, ``slots: 2``) through the real scheduler (``run_all``) with the local
   executor and a ledger; the submissions run in the sandbox where it runs, each on the one GPU of a
   :class:`fedsim.testing.FakeNvml` that reports its process, so the shared GPU sampler serves them too. The
   orchestrator's RSS, threads and open file descriptors are sampled every ``--every`` (100) finished jobs.
   Targets: RSS at most ``--max-rss-mb`` (300) and flat — growing at most ``--max-growth-mb`` (20) from the
   first sample to the last — and no thread, file descriptor or GPU sampler entry left behind after the run.

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CUBE = """\
name: noop
docker: {image: fedsim-perf/noop:0.1}
local: {entrypoint: "python3 -c pass"}
tasks:
  prepare: {parameters: {outputs: {output_path: {type: directory, default: prepared/}}}}
  sanity_check: {parameters: {inputs: {data_path: {type: directory, default: prepared/}}}}
  statistics: {parameters: {inputs: {data_path: {type: directory, default: prepared/}}}}
  infer:
    parameters:
      inputs: {data_path: {type: directory, default: prepared/}}
      outputs: {output_path: {type: directory, default: predictions/}}
  evaluate:
    parameters:
      inputs: {predictions: {type: directory, default: predictions/}}
      outputs: {output_path: {type: directory, default: results/}}
"""
MiB = 1024**2


def _ms(x: float) -> str:
    return f"{x * 1000:7.1f} ms"


def _stats(samples: list[float]) -> str:
    s = sorted(samples)
    p90 = s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]
    return f"median {_ms(statistics.median(s))}  p90 {_ms(p90)}  min {_ms(s[0])}"


def _cube(tmp: Path) -> Any:
    from fedsim.cube import load_cube

    (tmp / "noop").mkdir(parents=True, exist_ok=True)
    (tmp / "noop" / "mlcube.yaml").write_text(CUBE)
    return load_cube(tmp / "noop")


def per_job(tmp: Path, jobs: int, max_extra_ms: float) -> bool:
    from fedsim.cube import Isolation, bind
    from fedsim.jobs.execute import execute_job
    from fedsim.jobs.job import Job, JobKind, JobLimits, JobStatus
    from fedsim.runtimes import sandbox
    from fedsim.runtimes.local import LocalRuntime, SandboxedLocalRuntime
    from fedsim.runtimes.select import RuntimePool

    cube = _cube(tmp)
    (tmp / "data").mkdir()
    found = sandbox.probe()
    pool = RuntimePool()
    plain = LocalRuntime()
    boxed = SandboxedLocalRuntime() if found.ok else None

    def job(kind: JobKind, i: int, **kw: Any) -> Job:
        out = tmp / "out" / f"{kind.value}-{i}"
        paths: tuple[tuple[str, Path], ...] = (("output_path", out),)
        if kind is JobKind.INFER:
            paths = (("data_path", tmp / "data"), *paths)
        else:
            paths = (("predictions", tmp / "data"), *paths)
        values: dict[str, Any] = {"limits": JobLimits(timeout_s=60, ram_bytes=2 * 1024**3), **kw}
        return Job(
            site="s",
            name=f"{kind.value}.{i}",
            kind=kind,
            cube=cube,
            task=kind.value,
            paths=paths,
            runtime="local",
            log_path=tmp / "logs" / f"{kind.value}-{i}.log",
            workdir=tmp / "work" / f"{kind.value}-{i}",
            clean_outputs=(out,),
            run_id="perf",
            **values,
        )

    def timed_job(j: Job) -> float:
        t0 = time.perf_counter()
        res = execute_job(j, pool)
        elapsed = time.perf_counter() - t0
        if res.status is not JobStatus.SUCCEEDED:
            raise SystemExit(f"the no-op job {j.name} failed: {res.reason}\n{j.log_path.read_text()[-1500:]}")
        return elapsed

    def bare_argv(runtime: LocalRuntime, i: int) -> list[str]:
        inv = bind(
            cube,
            "infer",
            {"data_path": tmp / "data", "output_path": tmp / "out" / f"bare-{i}"},
            isolation=Isolation(untrusted=runtime is boxed, ram_bytes=2 * 1024**3),
            pinned={"data_path", "output_path"},
        )
        inv.create_directories()
        return runtime.argv(inv)

    def timed_bare(argv: list[str]) -> float:
        t0 = time.perf_counter()
        rc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        ).returncode
        elapsed = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"the bare no-op command failed ({rc}): {argv}")
        return elapsed

    infer_limits = JobLimits(timeout_per_case_s=60, ram_bytes=2 * 1024**3, output_bytes_per_case=200 * MiB)
    variants: dict[str, Any] = {
        "bare": lambda i: timed_bare(bare_argv(plain, i)),
        "trusted": lambda i: timed_job(job(JobKind.EVALUATE, i)),
    }
    if boxed is not None:
        variants["bare bwrap"] = lambda i: timed_bare(bare_argv(boxed, i))
        variants["untrusted"] = lambda i: timed_job(
            job(JobKind.INFER, i, untrusted=True, limits=infer_limits, cases_dir=tmp / "data")
        )
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(3):  # imports, page cache, the sandbox probe
        for fn in variants.values():
            fn(-1 - i)
    for i in range(jobs):
        for name, fn in variants.items():
            samples[name].append(fn(i))
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"1. wall time per no-op job ({jobs} runs each, interleaved; command: python -c pass TASK --output_path=...)")
    labels = {
        "bare": "bare subprocess.run             ",
        "trusted": "execute_job, local (trusted)    ",
        "bare bwrap": "bare subprocess.run of bwrap    ",
        "untrusted": "execute_job, local in bwrap     ",
    }
    for k, v in samples.items():
        print(f"   {labels[k]} {_stats(v)}")
    extra = med["trusted"] - med["bare"]
    ok = extra * 1000 <= max_extra_ms
    print(
        f"   fedsim's added time, trusted job:    {_ms(extra)}  (ratio {med['trusted'] / med['bare']:.2f}x)  "
        f"{'OK' if ok else 'OVER TARGET'}: target <= {max_extra_ms:g} ms"
    )
    if boxed is not None:
        own = med["untrusted"] - med["bare bwrap"]
        print(f"   fedsim's added time, sandboxed job:  {_ms(own)}  (over the same bwrap command run bare)")
        print(f"   sandboxed job over bare python:      {_ms(med['untrusted'] - med['bare'])}  (bwrap included)")
    else:
        print(f"   sandboxed job not measured: {found.reason}")
    return ok


def long_run(tmp: Path, total: int, every: int, max_rss_mb: float, max_growth_mb: float) -> bool:
    import psutil

    from fedsim.executors.local import LocalExecutor
    from fedsim.guard.nvml import GpuProcess
    from fedsim.jobs.job import Job, JobLimits, JobResult, JobStatus
    from fedsim.pipeline.scheduler import run_all
    from fedsim.runtimes import sandbox
    from fedsim.store.ledger import Ledger
    from fedsim.testing import FakeNvml, fake_plans

    cube = _cube(tmp)
    models = max(1, (total - 3) // 2)
    site = tmp / "run" / "s0"
    limits = JobLimits(timeout_s=60, ram_bytes=1024**3)
    infer_limits = JobLimits(timeout_per_case_s=60, ram_bytes=1024**3, output_bytes_per_case=200 * MiB, gpus=1)
    plans = []
    for plan in fake_plans(tmp / "run", ["s0"], [f"m{i:04d}" for i in range(models)], slots=2, gpus=1):
        jobs = []
        for j in plan.jobs:
            if j.model is None:
                paths: dict[str, Path] = {"output_path": site / "prepared"} if j.task == "prepare" else {}
                if j.task != "prepare":
                    paths = {"data_path": site / "prepared"}
                clean = tuple(p for k, p in paths.items() if k == "output_path")
                jobs.append(
                    dataclasses.replace(j, cube=cube, paths=tuple(paths.items()), clean_outputs=clean, limits=limits)
                )
                continue
            pred, res = site / "predictions" / j.model, site / "results" / j.model
            if j.task == "infer":
                paths = {"data_path": site / "prepared", "output_path": pred}
                j = dataclasses.replace(j, limits=infer_limits, cases_dir=site / "prepared", clean_outputs=(pred,))
            else:
                paths = {"predictions": pred, "output_path": res}
                j = dataclasses.replace(j, limits=limits, clean_outputs=(res,))
            jobs.append(
                dataclasses.replace(j, cube=cube, paths=tuple(paths.items()), allow_unsandboxed=True, run_id="perf")
            )
        plans.append(dataclasses.replace(plan, jobs=tuple(jobs)))
    n = sum(len(p.jobs) for p in plans)

    me = psutil.Process()
    series: list[tuple[int, float, int, int]] = []
    finished = 0
    failed: list[str] = []
    lock = threading.Lock()

    def sample(count: int) -> None:
        series.append((count, me.memory_info().rss / MiB, threading.active_count(), me.num_fds()))

    def on_event(kind: str, job: Job, res: JobResult | None) -> None:
        nonlocal finished
        if kind != "finished" or res is None:
            return
        with lock:
            finished += 1
            if res.status is not JobStatus.SUCCEEDED and len(failed) < 3:
                failed.append(f"{res.key}: {res.status.value} {res.reason}")
            if finished % every == 0 or finished == n:
                sample(finished)

    def idle_threads() -> list[str]:  # what outlives the jobs: workers, waiters, relays, samplers
        return sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())

    threads_before, fds_before = idle_threads(), me.num_fds()
    ledger = Ledger(tmp / "run" / Ledger.FILE)
    # a fake GPU, so every submission also registers with the one GPU sampler, which sees its process
    nvml = FakeNvml(gpus=1)
    executor = LocalExecutor(nvml=nvml)
    sampler = executor.sampler
    assert sampler is not None
    uuid = nvml.devices()[0].uuid
    nvml.script(uuid, lambda _t: [GpuProcess(w.handle.root_pid() or 0, 64 * MiB) for w in list(sampler._watches)])
    sample(0)
    t0 = time.perf_counter()
    try:
        results = run_all(plans, executor, on_event, threading.Event(), ledger=ledger)
    finally:
        executor.close()
        ledger.close()
    wall = time.perf_counter() - t0
    settle = time.monotonic() + 10  # a relay thread lingers a few seconds after the last job, by design
    while idle_threads() != threads_before and time.monotonic() < settle:
        time.sleep(0.1)
    threads_after, fds_after = idle_threads(), me.num_fds()
    done = sum(1 for rs in results.values() for r in rs if r.status is JobStatus.SUCCEEDED)
    boxed = "in bwrap" if sandbox.probe().ok else "unsandboxed (no bwrap here)"
    print(
        f"2. orchestrator over {n} no-op jobs (1 site, {models} models, slots 2, submissions {boxed}): "
        f"{wall:.1f} s, {wall / n * 1000:.1f} ms per job, {done} succeeded"
    )
    print("   jobs   RSS MiB  threads  fds   (threads and fds while jobs run)")
    for count, rss, threads, fds in series:
        print(f"   {count:5d}  {rss:7.1f}  {threads:7d}  {fds:4d}")
    base = series[1] if len(series) > 2 else series[0]  # after the first batch: imports and caches are warm
    peak = max(s[1] for s in series)
    growth = series[-1][1] - base[1]
    gpu_left = (len(sampler._watches), len(sampler._owner))
    leaks = threads_after != threads_before or fds_after > fds_before or gpu_left != (0, 0)
    ok = peak <= max_rss_mb and growth <= max_growth_mb and not leaks and done == n
    print(
        f"   max RSS {peak:.1f} MiB (target <= {max_rss_mb:g}); growth after job {base[0]}: {growth:+.1f} MiB "
        f"(target <= {max_growth_mb:g})"
    )
    print(
        f"   before -> after the run: threads {len(threads_before)} -> {len(threads_after)}, open fds {fds_before} -> "
        f"{fds_after} (target: none left behind)  {'OK' if ok else 'OVER TARGET'}"
    )
    print(
        f"   GPU sampler ({sampler.ticks} ticks, {nvml.calls} NVML calls) after the run: {gpu_left[0]} registrations, "
        f"{gpu_left[1]} cached PID owners (target: 0, 0)"
    )
    if threads_after != threads_before:
        print(f"   threads left: {sorted(set(threads_after) - set(threads_before))}")
    for line in failed:
        print(f"   failed: {line}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="runs of each variant in part 1 (default 50)")
    parser.add_argument("--max-extra-ms", type=float, default=50.0, help="target for fedsim's added median time")
    parser.add_argument("--run-jobs", type=int, default=1000, help="jobs of the long run in part 2 (default 1000)")
    parser.add_argument("--every", type=int, default=100, help="sample the RSS every N finished jobs")
    parser.add_argument("--max-rss-mb", type=float, default=300.0, help="target for the orchestrator's RSS")
    parser.add_argument("--max-growth-mb", type=float, default=20.0, help="target for RSS growth over the run")
    parser.add_argument("--skip-jobs", action="store_true", help="leave out part 1")
    parser.add_argument("--skip-run", action="store_true", help="leave out part 2")
    opts = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="fedsim-perf-overhead-") as tmp:
        if not opts.skip_jobs:
            ok &= per_job(Path(tmp) / "jobs", opts.jobs, opts.max_extra_ms)
        if not opts.skip_run:
            ok &= long_run(Path(tmp) / "run", opts.run_jobs, opts.every, opts.max_rss_mb, opts.max_growth_mb)
    print("OK" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
