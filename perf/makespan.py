"""Makespan of the job graph scheduler: S sites x M models of a cube that only sleeps, against the ideal.

Run: ``python perf/makespan.py`` (``--infer-s``, ``--evaluate-s``, ``--prep-s`` set how long each task sleeps;
``--case S,M,SLOTS`` replaces the two default cases; ``--max-ratio 1.1`` exits 1 when a case is slower).

Each case builds a benchmark in a temporary directory whose data prep, models and metrics are one tiny cube that
sleeps (data prep short, models long, as in a real federation) and runs the real pipeline on it: planning, the
ledger, the local runtime, real processes (``--allow-unsandboxed``: the models run in the sandbox where it can
run). The local executor is given as many CPU slots as the sites have slots together, because the jobs only sleep.

Printed per case, from ``summary.json`` and the ledger:

- makespan: first job start to last job end (ledger events), so it includes every per-job cost of the pipeline;
- sum/slots: the job durations (``duration_s``: each process's life) summed, divided by the sites' slots;
- critical path: the longest chain of dependent jobs (prepare → sanity_check → statistics → infer → evaluate);
- ideal = max(sum/slots, critical path), and the ratios makespan / (sum/slots) and makespan / ideal;
- one lane per site: what the former scheduler (one job at a time per site, in plan order) would take with the
  same durations — the per-site sum of durations, the slowest site.

Defaults: (1 site x 8 models, ``slots: 8``) and (4 sites x 2 models, ``slots: 1`` each); about 30 s in all. With
one site, sum/slots is below the critical path (the data prep runs before any model), so the ratio against
sum/slots cannot reach 1 there; long models (8 s) against short data prep keep that bound near 1.08.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CUBE = """\
name: sleeper
tasks:
  prepare:
    parameters:
      inputs: {data_path: {type: directory, default: data/}, labels_path: {type: directory, default: data/}}
      outputs: {output_path: {type: directory, default: prepared/}, output_labels_path: {type: directory, default: labels/}}
  sanity_check:
    parameters:
      inputs: {data_path: {type: directory, default: prepared/}, labels_path: {type: directory, default: labels/}}
  statistics:
    parameters:
      inputs: {data_path: {type: directory, default: prepared/}, labels_path: {type: directory, default: labels/}}
  infer:
    parameters:
      inputs: {data_path: {type: directory, default: data/}}
      outputs: {output_path: {type: directory, default: predictions/}}
  evaluate:
    parameters:
      inputs: {predictions: {type: directory, default: predictions/}, labels: {type: directory, default: labels/}}
      outputs: {output_path: {type: file, default: results.yaml}}
"""  # noqa: E501 - one flow mapping per task reads best

SCRIPT = """\
import sys, time
from pathlib import Path

SLEEP = {sleep!r}
task = sys.argv[1]
args = dict(a[2:].split("=", 1) for a in sys.argv[2:] if a.startswith("--") and "=" in a)
time.sleep(SLEEP[task])
if task == "prepare":
    (Path(args["output_path"]) / "case0").mkdir(parents=True, exist_ok=True)
    Path(args["output_labels_path"]).mkdir(parents=True, exist_ok=True)
elif task == "infer":
    (Path(args["output_path"]) / "case0.nii.gz").write_bytes(b"")
elif task == "evaluate":
    Path(args["output_path"]).write_text("case0: {{Dice_ET: 1.0}}\\n")
"""


def build(tmp: Path, sites: int, models: int, slots: int, sleep: dict[str, float]) -> Path:
    cube = tmp / "sleeper"
    cube.mkdir(parents=True)
    (cube / "mlcube.yaml").write_text(CUBE)
    (cube / "mlcube.py").write_text(SCRIPT.format(sleep=sleep))
    raw = tmp / "raw" / "case0"
    raw.mkdir(parents=True)
    bench = tmp / "bench"
    (bench / "sites").mkdir(parents=True)
    benchmark = {
        "name": f"makespan-{sites}x{models}",
        "data_prep": {"cube": str(cube)},
        "metrics": {"cube": str(cube)},
        "models": [{"name": f"m{i}", "cube": str(cube)} for i in range(models)],
        "limits": {"timeout_per_case_s": 120, "task_timeout_s": 120, "ram_gb": 2},
        "sites": ["sites"],
    }
    (bench / "benchmark.yaml").write_text(yaml.safe_dump(benchmark, sort_keys=False))
    for i in range(sites):
        site = {"name": f"s{i}", "data": {"path": str(raw.parent)}, "runtime": "local"}
        site["hardware"] = {"gpus": 0, "ram_gb": 2, "cpus": 1, "slots": slots}
        (bench / "sites" / f"s{i}.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    return bench


def run_case(sites: int, models: int, slots: int, sleep: dict[str, float]) -> dict[str, float]:
    from fedsim.executors import LocalExecutor
    from fedsim.pipeline.graph import JobGraph
    from fedsim.pipeline.plan import plan
    from fedsim.pipeline.run import RunOptions, prepare_run, run_benchmark

    with tempfile.TemporaryDirectory(prefix="fedsim-makespan-") as d:
        tmp = Path(d)
        bench = build(tmp, sites, models, slots, sleep)
        options = RunOptions(
            benchmark=bench, runs_dir=tmp / "runs", run_id="r", runtime="local", allow_unsandboxed=True,
            rank=False, report=False,
        )  # fmt: skip
        started = time.monotonic()
        report = run_benchmark(options, executor=LocalExecutor(cpus=sites * slots))
        wall = time.monotonic() - started
        jobs = json.loads(report.run.summary.read_text())["jobs"]
        bad = [f"{j['site']}/{j['name']}: {j['status']} {j['reason']}" for j in jobs if j["status"] != "succeeded"]
        if bad:
            raise SystemExit("jobs did not succeed:\n" + "\n".join(bad))
        durations = {f"{j['site']}/{j['name']}": float(j["duration_s"]) for j in jobs}
        db = sqlite3.connect(report.run.root / "ledger.sqlite")
        (first, last), *_ = db.execute("SELECT MIN(at), MAX(at) FROM events").fetchall()
        db.close()
        bench_spec, site_specs, cubes = prepare_run(options)  # the plans again (pure), for the graph's shape
        graph = JobGraph.from_plans(plan(bench_spec, [(s, tmp / "raw") for s in site_specs], cubes, report.run))
        per_site = {s: sum(v for k, v in durations.items() if k.startswith(f"{s}/")) for s in graph.sites}
        total = sum(durations.values())
        return {
            "makespan": last - first,
            "wall": wall,
            "sum": total,
            "sum_per_slot": total / (sites * slots),
            "critical_path": graph.critical_path(durations),
            "one_lane": max(per_site.values()),
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prep-s", type=float, default=0.05, help="seconds each data-prep task sleeps")
    ap.add_argument("--infer-s", type=float, default=8.0, help="seconds each model's infer sleeps")
    ap.add_argument("--evaluate-s", type=float, default=0.3, help="seconds each evaluate sleeps")
    ap.add_argument("--case", action="append", default=None, help="SITES,MODELS,SLOTS (repeatable)")
    ap.add_argument("--max-ratio", type=float, default=None, help="exit 1 if makespan/(sum/slots) exceeds it")
    args = ap.parse_args(argv)
    sleep = {"prepare": args.prep_s, "sanity_check": args.prep_s, "statistics": args.prep_s,
             "infer": args.infer_s, "evaluate": args.evaluate_s}  # fmt: skip
    cases = [tuple(int(x) for x in c.split(",")) for c in args.case] if args.case else [(1, 8, 8), (4, 2, 1)]
    print(f"cube sleeps: data prep {args.prep_s:g} s a step, infer {args.infer_s:g} s, evaluate {args.evaluate_s:g} s")
    worst = 0.0
    for sites, models, slots in cases:
        r = run_case(sites, models, slots, sleep)
        ideal = max(r["sum_per_slot"], r["critical_path"])
        ratio = r["makespan"] / r["sum_per_slot"]
        worst = max(worst, ratio)
        print(
            f"{sites} site(s) x {models} models, slots {slots}: makespan {r['makespan']:.2f} s "
            f"(run {r['wall']:.2f} s); sum {r['sum']:.2f} s / {sites * slots} slots = {r['sum_per_slot']:.2f} s; "
            f"critical path {r['critical_path']:.2f} s; ratio {ratio:.3f} vs sum/slots, "
            f"{r['makespan'] / ideal:.3f} vs max(sum/slots, critical path); "
            f"one lane per site would take {r['one_lane']:.2f} s ({r['one_lane'] / r['sum_per_slot']:.2f}x)"
        )
    if args.max_ratio is not None and worst > args.max_ratio:
        print(f"FAIL: worst ratio {worst:.3f} > {args.max_ratio}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
