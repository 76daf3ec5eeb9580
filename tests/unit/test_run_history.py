"""Issue 15, items 6 and 8: run history (``fedsim runs list/show``) from run directories and ledgers; ties explained;
the report's sites table shows what the jobs ran on and under; sanity problems with the original case names."""

from __future__ import annotations

import html
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedsim.jobs.job import JobKind, JobLimits, JobResult, JobStatus
from fedsim.pipeline.sanity import MAX_PROBLEMS, sanity_problems
from fedsim.ranking import InstitutionResults, rank, write_csvs
from fedsim.report.effective import site_effective
from fedsim.report.history import list_runs, show_run
from fedsim.report.loader import job_result, recorded_benchmark, recorded_site
from fedsim.report.ties import TIES_RULE, ties_note
from fedsim.store.ledger import Ledger
from fedsim.store.rundir import RunDirectory
from tests.conftest import ROOT

GiB = 1024**3


def _record(site: str, name: str, status: str = "succeeded", **kw: Any) -> dict[str, Any]:
    kind = name.split(".", 1)[0]
    model = name.split(".", 1)[1] if "." in name else None
    return {
        "site": site,
        "name": name,
        "kind": kind,
        "model": model,
        "status": status,
        "reason": kw.pop("reason", ""),
        "duration_s": kw.pop("duration_s", 1.0),
        **kw,
    }


def _make_run(
    runs: Path,
    run_id: str,
    *,
    jobs: list[dict[str, Any]],
    state: str = "completed",
    results: dict[str, Any] | None = None,
    summary: bool = True,
    started: float = 1_700_000_000.0,
    segments: list[tuple[float, float | None]] | None = None,
    lock: dict[str, Any] | None = None,
) -> Path:
    run = RunDirectory(runs / run_id)
    run.root.mkdir(parents=True)
    ledger = Ledger(run.root / Ledger.FILE)
    ledger.begin_run(run_id, "bench")
    for start, end in segments or [(started, started + 60.0)]:
        seg = ledger.begin_segment(start, resumed=start != started)
        if end is not None:
            ledger.end_segment(seg, end, "completed")
    for rec in jobs:
        key = f"{rec['site']}/{rec['name']}"
        ledger.job_started(key, rec["site"], rec["name"])
        ledger.job_finished(key, rec)
    ledger.set_run_state(run_id, state)
    ledger.close()
    if results:
        run.results.mkdir()
        for site, cases in results.items():
            (run.results / f"{site}.yaml").write_text(yaml.safe_dump(cases))
        institutions = {s: InstitutionResults.from_mapping(s, c) for s, c in results.items()}
        write_csvs(rank(institutions), run.ranking)
    if summary:
        sites = sorted({j["site"] for j in jobs})
        models = sorted({j["model"] for j in jobs if j.get("model")})
        run.summary.write_text(
            json.dumps(
                {
                    "run_id": run_id,
                    "benchmark": "bench",
                    "sites": sites,
                    "models": models,
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                    "duration_s": 60.0,
                    "interrupted": state == "interrupted",
                    "jobs": jobs,
                    "total_duration_s": 60.0,
                }
            )
        )
    if lock is not None:
        (run.root / "run.lock").write_text(json.dumps(lock))
    return run.root


def _metrics(dice: float) -> dict[str, Any]:
    regions = ("ET", "TC", "WT")
    return {f"Dice_{r}": dice for r in regions} | {f"Hausdorff95_{r}": 10 * (1 - dice) for r in regions}


PREP = ["prepare", "sanity_check", "statistics"]


def _site_jobs(site: str, models: dict[str, str]) -> list[dict[str, Any]]:
    jobs = [_record(site, n) for n in PREP]
    for model, status in models.items():
        jobs.append(_record(site, f"infer.{model}", status, reason="" if status == "succeeded" else "exited 1"))
        jobs.append(_record(site, f"evaluate.{model}"))
    return jobs


def test_list_runs_reads_ledgers_and_summaries(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cases = {"c1": {"a": _metrics(0.9), "b": _metrics(0.5)}, "c2": {"a": _metrics(0.8), "b": _metrics(0.4)}}
    _make_run(
        runs,
        "r1",
        jobs=_site_jobs("s0", {"a": "succeeded", "b": "failed"}),
        results={"s0": cases},
        started=1_700_000_000.0,
    )
    _make_run(  # every site's data prep failed: completed, but nothing to rank
        runs,
        "r2",
        jobs=[_record("s0", "prepare"), _record("s0", "sanity_check", "failed", reason="2 problem(s)")]
        + [_record("s0", n, "skipped") for n in ("statistics", "infer.a", "evaluate.a")],
        started=1_700_000_100.0,
    )
    _make_run(  # killed: the ledger says running, nobody holds the lock
        runs,
        "r3",
        jobs=[_record("s0", "prepare")],
        state="running",
        summary=False,
        started=1_700_000_200.0,
        segments=[(1_700_000_200.0, None)],
        lock={},
    )
    _make_run(  # live: the lock file names this very process
        runs,
        "r4",
        jobs=[],
        state="running",
        summary=False,
        started=1_700_000_300.0,
        segments=[(1_700_000_300.0, None)],
        lock={"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time()},
    )
    (runs / "not-a-run").mkdir()
    (runs / "stress-20250101").mkdir()
    infos = list_runs(runs)
    assert [i.run_id for i in infos] == ["r1", "r2", "r3", "r4"]
    r1, r2, r3, r4 = infos
    assert (r1.state, r1.benchmark, r1.jobs_ok, r1.jobs_failed, r1.jobs_total) == ("completed", "bench", 6, 1, 7)
    assert r1.duration_s == pytest.approx(60.0) and r1.started == pytest.approx(1_700_000_000.0)
    assert (r2.state, r2.jobs_ok, r2.jobs_failed, r2.jobs_skipped) == ("no result", 1, 1, 3)
    assert (r3.state, r3.jobs_ok) == ("aborted", 1)
    assert r4.state == "running" and r4.duration_s is not None and r4.duration_s > 1000
    assert list_runs(tmp_path / "nowhere") == []
    d = r1.to_dict()
    assert d["started"] == "2023-11-14T22:13:20Z" and d["state"] == "completed" and d["jobs_failed"] == 1


def test_resumed_runs_count_every_segment(tmp_path: Path) -> None:
    _make_run(
        tmp_path,
        "r",
        jobs=[_record("s0", "prepare")],
        segments=[(1000.0, 1030.0), (2000.0, 2010.0)],
        summary=False,
    )
    (info,) = list_runs(tmp_path)
    assert info.duration_s == pytest.approx(40.0) and info.segments == 2
    assert info.state == "no result"  # completed, but no site produced metrics


def test_show_run_has_sites_ranking_and_failures(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    tie = {"c1": {"a": _metrics(0.9), "b": _metrics(0.9), "c": _metrics(0.1)}}
    jobs = _site_jobs("s0", {"a": "succeeded", "b": "succeeded", "c": "timeout"})
    jobs += [_record("s1", "prepare"), _record("s1", "sanity_check", "failed", reason="sanity_check: 1 problem(s)")]
    jobs += [_record("s1", n, "skipped") for n in ("statistics", "infer.a", "evaluate.a")]
    _make_run(runs, "r1", jobs=jobs, results={"s0": tie})
    detail = show_run(runs, "r1")
    rows = {(r["site"], r["model"]): r for r in detail.rows}
    assert rows[("s0", "a")]["status"] == "succeeded" and rows[("s0", "a")]["dice_wt"] == pytest.approx(0.9)
    assert rows[("s0", "c")]["status"] == "timeout"
    assert rows[("s1", "a")]["status"] == "skipped"
    assert rows[("s1", "b")]["status"] == "skipped (sanity_check failed)"
    assert detail.ranking is not None and detail.ranking["ties"] is True
    assert [(m["model"], m["rank"]) for m in detail.ranking["models"]] == [("a", 1.5), ("b", 1.5), ("c", 3.0)]
    failures = {(f["site"], f["job"]): f for f in detail.failures}
    assert set(failures) == {("s0", "infer.c"), ("s1", "sanity_check")}  # skipped jobs are not failures
    json.dumps(detail.to_dict())  # serialisable
    from fedsim.errors import StoreError

    with pytest.raises(StoreError, match=r"no run 'nope' in .*the newest: r1"):
        show_run(runs, "nope")
    with pytest.raises(StoreError, match="not a valid run id"):
        show_run(runs, "../r1")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "fedsim.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_runs_commands(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    tie = {"c1": {"a": _metrics(0.9), "b": _metrics(0.9)}}
    _make_run(runs, "r1", jobs=_site_jobs("s0", {"a": "succeeded", "b": "failed"}), results={"s0": tie})
    listed = _cli("runs", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    for text in ("r1", "bench", "2023-11-1", "60.0s", "completed", "6/1"):
        assert text in listed.stdout, listed.stdout
    as_json = _cli("runs", "list", "--runs-dir", str(runs), "--json", cwd=ROOT)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["runs"][0]["run_id"] == "r1"
    shown = _cli("runs", "show", "r1", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for text in ("per site and model", "ranking (rankThenMean)", "1.5", TIES_RULE, "failures (1)", "s0/infer.b"):
        assert text in shown.stdout, shown.stdout
    shown_json = json.loads(_cli("runs", "show", "r1", "--json", cwd=tmp_path).stdout)
    assert shown_json["ranking"]["ties"] is True and shown_json["failures"][0]["job"] == "infer.b"
    missing = _cli("runs", "show", "zzz", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no run 'zzz'")
    empty = _cli("runs", "list", "--runs-dir", str(tmp_path / "none"), cwd=tmp_path)
    assert empty.returncode == 0 and "no runs in" in empty.stdout


# --- ties ---------------------------------------------------------------------------------------------------------


def test_ties_note() -> None:
    assert ties_note({"a": 1.0, "b": 2.0, "c": 3.0}) is None
    note = ties_note({"a": 1.5, "b": 1.5, "c": 3.0})
    assert note == f"rank 1.5: a and b tie for places 1-2 — {TIES_RULE}"
    assert "rank 3: b, c and d tie for places 2-4" in (ties_note({"a": 1, "b": 3, "c": 3, "d": 3}) or "")
    assert "rank 3.5" in (ties_note({"x": 3.5}) or "")  # a lone non-integer rank still gets the rule


def test_console_and_report_explain_ties() -> None:
    from rich.console import Console

    from fedsim.report.console import ranking_table
    from fedsim.report.html import ties_footnote as _ties

    tied = rank({"s": InstitutionResults.from_mapping("s", {"c1": {"a": _metrics(0.7), "b": _metrics(0.7)}})})
    assert tied.final_rank == {"a": 1.5, "b": 1.5}
    console = Console(width=200, record=True)
    console.print(ranking_table(tied))
    text = console.export_text()
    assert "1.5" in text and TIES_RULE in text and "a and b tie for places 1-2" in text
    assert html.escape(TIES_RULE) in _ties(tied.final_rank) and _ties({"a": 1.0, "b": 2.0}) == ""
    clear = rank({"s": InstitutionResults.from_mapping("s", {"c1": {"a": _metrics(0.9), "b": _metrics(0.2)}})})
    console = Console(width=200, record=True)
    console.print(ranking_table(clear))
    assert TIES_RULE not in console.export_text()


# --- what a site's jobs ran on and under ---------------------------------------------------------------------------


def test_effective_limits_come_from_the_jobs() -> None:
    limits = JobLimits(timeout_per_case_s=180, ram_bytes=16 * GiB, gpu_memory_bytes=11 * GiB, max_pids=1024)
    rec = limits.effective(3, ["GPU-1"])
    assert rec == {
        "ram_bytes": 16 * GiB,
        "gpu_memory_bytes": 11 * GiB,
        "timeout_s": 540,
        "gpus": 1,
        "cpus": None,
        "max_pids": 1024,
    }
    assert limits.effective(3, [])["gpu_memory_bytes"] is None  # no GPU: no GPU memory limit applied
    task = JobLimits(ram_bytes=16 * GiB).effective(0, [])
    jobs = [
        _record("s", "prepare", runtime="docker", containment="docker", limits=task),
        _record("s", "infer.m", runtime="docker", containment="docker", limits=rec),
        _record("t", "infer.m", runtime="local", containment="bwrap", limits=limits.effective(3, [])),
        _record("t", "prepare", runtime="local", containment="none"),
    ]
    bench = {"limits": {"ram_gb": 40, "gpu_memory_gb": 11}}
    site = {"runtime": "auto", "hardware": {"ram_gb": 16, "gpus": 1, "gpu_memory_gb": 24}}
    # the report's typed view of those records and files, as load_run reads them
    records, recorded = [job_result(j) for j in jobs], recorded_benchmark(bench)
    s = site_effective(records, recorded, recorded_site(site, "s"), "s")
    assert (s.runtime, s.configured_runtime, s.observed) == ("docker", "auto", True)
    assert (s.ram_bytes, s.gpu_memory_bytes, s.model_timeout_s, s.gpus) == (16 * GiB, 11 * GiB, 540, 1)
    t = site_effective(records, recorded, recorded_site({"runtime": "local", "hardware": {}}, "t"), "t")
    assert (t.runtime, t.configured_runtime, t.gpu_memory_bytes) == ("local (submissions in bwrap)", None, None)
    old = site_effective([job_result(_record("u", "infer.m"))], recorded, recorded_site(site, "u"), "u")  # pre-limits
    assert (old.observed, old.ram_bytes, old.gpu_memory_bytes, old.runtime) == (False, 16 * GiB, 11 * GiB, "auto")


def test_report_sites_table_shows_what_ran(tmp_path: Path) -> None:
    from fedsim.report.html import render_html
    from fedsim.report.loader import load_run

    limits = JobLimits(timeout_per_case_s=180, ram_bytes=16 * GiB, gpu_memory_bytes=11 * GiB).effective(2, ["G"])
    jobs = [
        _record("s0", n, runtime="docker", containment="docker", limits=limits if n.startswith("infer") else None)
        for n in [*PREP, "infer.a", "evaluate.a"]
    ]
    root = _make_run(tmp_path, "r1", jobs=jobs, results={"s0": {"c1": {"a": _metrics(0.9)}}})
    (root / "config" / "sites").mkdir(parents=True)
    (root / "config" / "benchmark.yaml").write_text(yaml.safe_dump({"name": "bench", "limits": {"ram_gb": 40}}))
    (root / "config" / "sites" / "s0.yaml").write_text(
        yaml.safe_dump({"name": "s0", "runtime": "auto", "hardware": {"ram_gb": 16, "gpus": 1, "cpus": 4}})
    )
    page = render_html(load_run(root), None)
    table = page[page.index("<h3>Sites</h3>") :]
    assert "ran on" in table and "docker" in table and "(configured: auto)" in table
    assert "16.0 GiB" in table and "11.0 GiB" in table and "360 s" in table
    assert "40 GB" not in table
    assert "Limits (the benchmark&#x27;s)" in page or "Limits (the benchmark's)" in page


# --- sanity problems with the site's own case names ---------------------------------------------------------------


def test_sanity_problems_name_the_original_cases(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "run")
    site = run.site("s0")
    site.metadata.mkdir(parents=True)
    (site.metadata / "alias_map.csv").write_text(
        "alias,original\nFeTS22_Patient0001,hospital_case_17\nFeTS22_Patient0002,hospital_case_03\n"
    )
    site.logs.mkdir(parents=True)
    site.log("sanity_check").write_text(
        "$ python3 mlcube.py sanity_check --data_path=...\n"
        "FeTS22_Patient0002: label values [3] outside [0, 1, 2, 4]\n"
        "FeTS22_Patient0001: t1 shape [96, 96, 60] != expected [96, 96, 64]\n"
        "sanity_check: 2 problem(s)\n"
    )
    failed = JobResult("s0", "sanity_check", JobKind.SANITY_CHECK.value, None, JobStatus.FAILED, reason="x")
    ok = JobResult("s1", "sanity_check", JobKind.SANITY_CHECK.value, None, JobStatus.SUCCEEDED)
    problems = sanity_problems(run, [failed, ok])
    assert problems == {
        "s0": [
            "hospital_case_03 (FeTS22_Patient0002): label values [3] outside [0, 1, 2, 4]",
            "hospital_case_17 (FeTS22_Patient0001): t1 shape [96, 96, 60] != expected [96, 96, 64]",
        ]
    }
    many = "".join(f"FeTS22_Patient{i:04d}: bad\n" for i in range(1, 40)) + "sanity_check: 39 problem(s)\n"
    site.log("sanity_check").write_text(many)
    lines = sanity_problems(run, [failed])["s0"]
    assert len(lines) == MAX_PROBLEMS + 1 and lines[-1].startswith("... and 19 more in ")
    (site.metadata / "alias_map.csv").unlink()  # no map: the aliases stay as they are
    assert sanity_problems(run, [failed])["s0"][0] == "FeTS22_Patient0001: bad"
