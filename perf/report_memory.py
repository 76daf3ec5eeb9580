"""Peak memory of building a run's report at organiser scale: 100 sites × 10 models (2,300 jobs, 3 cases a site).

The report phase was the orchestrator's memory peak (308 MiB for 100 sites × 3 models, while the jobs ran in
under 60 MiB). This builds a synthetic, finished run directory with fedsim's own writers (the run's config, the
job ledger, every site's per-model and merged results YAMLs, the ranking CSVs, ``summary.json``), then runs
``write_report`` (HTML, ``results_long.csv``, ``summary_report.json``, 1,000 bootstrap resamples) in a fresh
process and prints that process's peak RSS (``getrusage`` ``ru_maxrss``), and its RSS after the imports alone.

    python perf/report_memory.py [--sites 100] [--models 10] [--cases 3] [--target-mb 300] [--keep DIR]

Exit 1 when the peak is at or above ``--target-mb``. ``--code DIR`` runs the report with the fedsim package of
another checkout (e.g. a ``git worktree`` of the commit before a change) on the same run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedsim.jobs.job import JobLimits, JobResult, JobStatus
from fedsim.pipeline.builds import BuildRecord
from fedsim.pipeline.run import RunReport, collect_site_metrics, write_config, write_summary
from fedsim.ranking import load_institutions, rank, write_csvs
from fedsim.spec.models import BenchmarkSpec, SiteSpec
from fedsim.store.atomic import write_text_atomic, write_yaml_atomic
from fedsim.store.ledger import Ledger
from fedsim.store.rundir import RunDirectory

ROOT = Path(__file__).resolve().parents[1]
CUBES = ROOT / "fedsim" / "bundled" / "benchmarks" / "fets2022-task2" / "cubes"
PREP = ("prepare", "sanity_check", "statistics")
GiB = 1024**3

# The child: import what the report needs, note the RSS, build the report, print both peaks as JSON.
_CHILD = """
import json, resource, sys, time
from pathlib import Path
from fedsim.report.html import write_report
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
write_report(Path(sys.argv[1]))
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"imported_kib": imported, "peak_kib": peak, "seconds": seconds}))
"""


def _metrics(rng: random.Random, quality: float, missing: bool) -> dict[str, float | bool | None]:
    """One case's FeTS metrics (the metrics cube's keys); a missing prediction gets the penalty row."""
    out: dict[str, float | bool | None] = {}
    for region in ("ET", "TC", "WT"):
        if missing:
            out |= {f"Dice_{region}": 0.0, f"Hausdorff95_{region}": 374.0, f"Sensitivity_{region}": 0.0}
            out |= {f"Specificity_{region}": 0.0, f"Precision_{region}": 0.0}
            out |= {f"TP_{region}": 0, f"FP_{region}": 0, f"TN_{region}": 0, f"FN_{region}": 8_928_000}
            continue
        dice = min(1.0, max(0.0, rng.gauss(quality, 0.08)))
        out |= {
            f"Dice_{region}": dice,
            f"Hausdorff95_{region}": round(rng.uniform(1.0, 40.0) * (1.2 - dice), 6),
            f"Sensitivity_{region}": min(1.0, dice + rng.uniform(0.0, 0.1)),
            f"Specificity_{region}": 1.0 - rng.uniform(0.0, 1e-3),
            f"Precision_{region}": None if rng.random() < 0.02 else min(1.0, dice + rng.uniform(-0.05, 0.05)),
            f"TP_{region}": rng.randrange(1_000, 50_000),
            f"FP_{region}": rng.randrange(0, 5_000),
            f"TN_{region}": rng.randrange(8_800_000, 8_900_000),
            f"FN_{region}": rng.randrange(0, 5_000),
        }
    out["missing_pred"] = missing
    return out


def build_run(root: Path, n_sites: int, n_models: int, n_cases: int, seed: int = 0) -> Path:
    """A finished run of ``n_sites`` × ``n_models`` in ``root/run``, written as ``fedsim run`` writes one."""
    rng = random.Random(seed)
    run = RunDirectory(root / "run")
    models = [f"model_{m:02d}" for m in range(n_models)]
    bench = BenchmarkSpec.model_validate(
        {
            "name": "fets2022-task2",
            "data_prep": {"cube": str(CUBES / "data_prep"), "parameters_file": "generated"},
            "metrics": {"cube": str(CUBES / "metrics"), "parameters_file": "generated", "metric_set": "brats2021"},
            "models": [{"name": m, "image": f"fedsim/{m}:latest"} for m in models],
        }
    )
    sites = [
        SiteSpec.model_validate(
            {
                "name": f"site_{s:03d}",
                "runtime": "auto",
                "data": {"synthesize": {"cases": n_cases, "seed": s, "shift": {"noise_std": 0.01 * (s % 7)}}},
                "hardware": {"gpus": s % 2, "ram_gb": 16 + 8 * (s % 4), "cpus": 4},
            }
        )
        for s in range(n_sites)
    ]
    write_config(run, bench, sites, [])
    ledger = Ledger(run.root / Ledger.FILE)
    ledger.begin_run(run.run_id, bench.name)
    started = time.time()
    segment = ledger.begin_segment(started, resumed=False)
    quality = {m: rng.uniform(0.55, 0.9) for m in models}
    broken = models[-1]  # crashes at every fifth site: failed jobs, log tails, penalty rows
    results: dict[str, list[JobResult]] = {}
    for index, site in enumerate(sites):
        d = run.site(site.name)
        d.logs.mkdir(parents=True, exist_ok=True)
        limits = JobLimits(timeout_per_case_s=180.0, ram_bytes=int(site.hardware.ram_gb * GiB), gpus=site.hardware.gpus)
        gpu_ids = ["GPU-0"] if site.hardware.gpus else []
        site_results = []
        cases = [f"FeTS22_Patient{c:04d}" for c in range(n_cases)]
        for name in [*PREP, *(f"{k}.{m}" for m in models for k in ("infer", "evaluate"))]:
            kind, _, model = name.partition(".")
            fails = model == broken and kind == "infer" and index % 5 == 0
            log = d.log(name)
            text = "".join(f"[{name}] step {i}\n" for i in range(40))
            write_text_atomic(
                log, text + ("Traceback (most recent call last):\nRuntimeError: CUDA error\n" if fails else "done\n")
            )
            if kind == "evaluate":
                per_case = {c: _metrics(rng, quality[model], index % 5 == 0 and model == broken) for c in cases}
                write_yaml_atomic(d.results(model), per_case)
            result = JobResult(
                site=site.name,
                name=name,
                kind=kind,
                model=model or None,
                status=JobStatus.FAILED if fails else JobStatus.SUCCEEDED,
                reason="exited with code 1" if fails else "",
                exit_code=1 if fails else 0,
                duration_s=round(rng.uniform(2.0, 60.0), 3),
                num_cases=n_cases,
                runtime="docker",
                peak_rss_bytes=rng.randrange(100, 900) * 2**20,
                peak_gpu_memory_bytes=rng.randrange(1, 8) * GiB if gpu_ids and kind == "infer" else None,
                gpu_ids=gpu_ids if kind == "infer" else [],
                log=str(log),
                containment="docker",
                limits=limits.effective(n_cases, gpu_ids if kind == "infer" else []),
            )
            ledger.job_started(result.key, site.name, name)
            ledger.job_finished(result.key, result.to_dict())
            site_results.append(result)
        results[site.name] = site_results
    ledger.set_run_state(run.run_id, "completed")
    ledger.end_segment(segment, time.time(), "completed")
    report = RunReport(run=run, benchmark=bench, sites=sites, results=results, segments=ledger.segments())
    ledger.close()
    for site in sites:
        metrics = collect_site_metrics(run, site.name, results[site.name])
        report.site_metrics[site.name] = metrics
        write_yaml_atomic(run.site_results(site.name), metrics)
    report.builds = [BuildRecord(f"fedsim/{m}:latest", m, "docker", "present", 0.01, n_sites) for m in models]
    report.duration_s = time.time() - started
    write_summary(report, started)
    write_csvs(rank(load_institutions(run.results), bench.ranking.method), run.ranking)
    return run.root


def measure(run_dir: Path, code: Path | None = None) -> dict[str, float]:
    """Build the report of ``run_dir`` in a fresh process; its peak RSS and RSS after the imports, in MiB."""
    env = dict(os.environ, MPLBACKEND="Agg")
    if code is not None:
        env["PYTHONPATH"] = str(code)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(run_dir)], capture_output=True, text=True, env=env, cwd=code or ROOT
    )
    if proc.returncode != 0:
        raise SystemExit(f"building the report failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"imported_mib": out["imported_kib"] / 1024, "peak_mib": out["peak_kib"] / 1024, "seconds": out["seconds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--cases", type=int, default=3, help="cases a site (the bundled sites have 3)")
    parser.add_argument("--target-mb", type=float, default=300.0, help="fail at or above this peak (MB = MiB here)")
    parser.add_argument("--keep", type=Path, help="build the run here and keep it (default: a temporary folder)")
    parser.add_argument("--code", type=Path, help="a checkout whose fedsim package builds the report")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="fedsim-report-mem."))
    try:
        t0 = time.perf_counter()
        run_dir = build_run(work, args.sites, args.models, args.cases)
        jobs = args.sites * (len(PREP) + 2 * args.models)
        print(f"run: {args.sites} sites × {args.models} models × {args.cases} cases, {jobs} jobs "
              f"(written in {time.perf_counter() - t0:.1f}s)")  # fmt: skip
        m = measure(run_dir, args.code)
        ok = m["peak_mib"] < args.target_mb
        print(f"report: peak RSS {m['peak_mib']:.1f} MiB (after imports {m['imported_mib']:.1f} MiB), "
              f"built in {m['seconds']:.1f}s; target < {args.target_mb:g}: {'ok' if ok else 'MISSED'}")  # fmt: skip
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
