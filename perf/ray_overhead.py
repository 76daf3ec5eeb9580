"""Per-job overhead of the Ray executor next to the local executor, over no-op jobs.

Run: ``python perf/ray_overhead.py --jobs 50`` (``--address HOST:PORT`` to use a running cluster whose nodes
declare ``site:p0``; default: a private single-node Ray started here). Needs ``fedsim[ray]``.

Each job is a tiny local-runtime cube that exits 0 at once, run through ``Executor.run`` exactly as the scheduler
runs it (``execute_job``: clean outputs, bind, launch, supervise, cleanup). Prints the median and p90 wall time
per job for both executors, their ratio, and Ray's added latency (median difference). Warm-up jobs (worker
start, imports) are run first and not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOOP_MLCUBE = """\
name: noop
tasks:
  infer:
    parameters:
      inputs: {data_path: {type: directory, default: data/}}
      outputs: {output_path: {type: directory, default: predictions/}}
"""
NOOP_SCRIPT = "import sys\nsys.exit(0)\n"


def make_jobs(tmp: Path, n: int, site: str) -> list:  # type: ignore[type-arg]
    from fedsim.cube import load_cube
    from fedsim.jobs.job import Job, JobKind, JobLimits

    cube_dir = tmp / "noop"
    cube_dir.mkdir(parents=True)
    (cube_dir / "mlcube.yaml").write_text(NOOP_MLCUBE)
    (cube_dir / "mlcube.py").write_text(NOOP_SCRIPT)
    (tmp / "data").mkdir()
    cube = load_cube(cube_dir)
    jobs = []
    for i in range(n):
        out = tmp / "out" / f"{i}"
        jobs.append(
            Job(
                site=site,
                name=f"infer.noop{i}",
                kind=JobKind.INFER,
                cube=cube,
                task="infer",
                paths=(("data_path", tmp / "data"), ("output_path", out)),
                runtime="local",
                limits=JobLimits(timeout_s=60),
                log_path=tmp / "runs" / "r" / "sites" / site / "logs" / f"{i}.log",
                workdir=tmp,
                clean_outputs=(out,),
            )
        )
    return jobs


def measure(executor, jobs: list, warmup: int) -> list[float]:  # type: ignore[no-untyped-def, type-arg]
    samples: list[float] = []
    for i, job in enumerate(jobs):
        start = time.perf_counter()
        res = executor.run(job)
        elapsed = time.perf_counter() - start
        if res.status.value != "succeeded":
            raise SystemExit(f"{executor.name}: job {job.name} {res.status.value}: {res.reason}")
        if i >= warmup:
            samples.append(elapsed)
    return samples


def _fmt(samples: list[float]) -> str:
    s = sorted(samples)
    p90 = s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]
    return f"median {statistics.median(s) * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms  (n={len(s)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--address", default="local", help="Ray address (default: a private local Ray)")
    args = ap.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private throw-away cluster: no token in ~/.ray
    from fedsim.executors import LocalExecutor
    from fedsim.executors.ray import RayExecutor

    with tempfile.TemporaryDirectory(prefix="fedsim-ray-perf-") as tmp:
        jobs = make_jobs(Path(tmp), args.jobs + args.warmup, "p0")
        with LocalExecutor(nvml=None) as local:
            t_local = measure(local, jobs, args.warmup)
        started = time.perf_counter()
        ray_ex = RayExecutor(args.address, site_resources={"site:p0": 1}, num_cpus=2)
        print(f"ray start/connect: {time.perf_counter() - started:.1f}s")
        with ray_ex:
            t_ray = measure(ray_ex, jobs, args.warmup)
    m_local, m_ray = statistics.median(t_local), statistics.median(t_ray)
    print(f"no-op job through Executor.run ({args.jobs} jobs after {args.warmup} warm-up):")
    print(f"  local executor  {_fmt(t_local)}")
    print(f"  ray executor    {_fmt(t_ray)}")
    print(f"  ratio ray/local {m_ray / m_local:6.2f}x   ray adds {(m_ray - m_local) * 1000:.1f} ms per job (median)")


if __name__ == "__main__":
    main()
