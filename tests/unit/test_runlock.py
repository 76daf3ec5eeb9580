"""Run directories are locked, run ids are plain names, ``--retry-failed`` picks the right jobs, and the
ledger records every segment of a run (the parts that need no cube; the CLI end to end is in
tests/integration/test_run_lock.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fedsim.errors import BadRunId, RunExists, RunInUse, StoreError
from fedsim.jobs.job import JobKind, JobResult, JobStatus
from fedsim.pipeline.retry import retry_keys
from fedsim.pipeline.run import summary_segments
from fedsim.store.ledger import Ledger
from fedsim.store.runlock import LOCK_FILE, RunLock, check_run_id, claim_run, read_holder
from tests.conftest import ROOT

HOLD = """
import sys, time
from pathlib import Path
from fedsim.store.runlock import claim_run
lock = claim_run(Path(sys.argv[1]), resume=sys.argv[2] == "resume")
print("locked", flush=True)
time.sleep(300)
"""


def _hold_in_child(root: Path, mode: str = "new") -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root), mode], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


# --- run ids -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["r", "ref", "20261127-081502-ab12", "hostile-local-1a2b3c", "a.b_c-D9"])
def test_plain_run_ids_pass(good: str) -> None:
    assert check_run_id(good) == good


@pytest.mark.parametrize("bad", ["", None, "..", ".", "../escape", "a/b", "/abs", "a\\b", ".hidden", "-rf", "a..b",
                                 "x" * 129, "sp ace", "tab\t", "new\nline", "é"])  # fmt: skip
def test_bad_run_ids_are_refused_with_exit_2(bad: str | None) -> None:
    with pytest.raises(BadRunId, match=r"is not a valid run id.*no path separators, no '\.\.'") as info:
        check_run_id(bad, "--resume")
    assert info.value.exit_code == 2 and str(info.value).startswith("--resume ")
    assert "\n" not in str(info.value)


# --- the lock ------------------------------------------------------------------------------------------------


def test_a_live_holder_is_named_and_its_death_releases_the_lock(tmp_path: Path) -> None:
    root = tmp_path / "runs" / "live"
    proc = _hold_in_child(root)
    try:
        with pytest.raises(RunInUse) as info:
            claim_run(root, resume=True)
        message = str(info.value)
        assert re.fullmatch(
            rf"run live is in use by pid {proc.pid} on host {re.escape(socket.gethostname())} since "
            r"\d\d:\d\d:\d\d \(wait for it to finish, or stop it\)",
            message,
        ), message
        assert info.value.exit_code == 1
        holder = read_holder(root / LOCK_FILE)
        assert holder.pid == proc.pid and holder.host == socket.gethostname()
        with pytest.raises(RunInUse):  # a new run under the same id names the holder too, rather than "exists"
            claim_run(root, resume=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    with claim_run(root, resume=True) as lock:  # SIGKILL: the kernel dropped the lock
        assert lock.held
        assert read_holder(root / LOCK_FILE).pid == os.getpid()
    assert (root / LOCK_FILE).read_text() == ""  # released: nobody is named any more


def test_one_holder_per_process_too(tmp_path: Path) -> None:
    """flock belongs to the open file, not the process: a second claim in the same process is refused."""
    root = tmp_path / "r"
    root.mkdir()
    first = RunLock.acquire(root)
    with pytest.raises(RunInUse, match=rf"in use by pid {os.getpid()} "):
        RunLock.acquire(root)
    first.release()
    first.release()  # idempotent
    RunLock.acquire(root).release()


def test_the_lock_is_not_inherited_by_the_processes_a_run_starts(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    lock = RunLock.acquire(root)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], close_fds=False)
    try:
        lock.release()  # the job process lives on, but holds no copy of the lock's descriptor
        RunLock.acquire(root).release()
    finally:
        child.kill()
        child.wait()


def test_holder_being_written_is_reported_without_a_name(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text("")
    assert read_holder(tmp_path / LOCK_FILE).describe() == "another fedsim process (it has not said which yet)"
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 7, "host": "h", "started_at": time.time()}))
    assert read_holder(tmp_path / LOCK_FILE).describe().startswith("pid 7 on host h since ")


def test_a_new_run_needs_a_new_directory(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with claim_run(runs / "a", resume=False, runs_dir=runs):
        (runs / "a" / "summary.json").write_text("{}")
    with pytest.raises(RunExists, match=r"^run a already exists in .*runs; continue it with --resume a, or pick"):
        claim_run(runs / "a", resume=False, runs_dir=runs)
    assert (runs / "a" / "summary.json").read_text() == "{}"
    # a run that stopped before writing anything left only its lock file: the id is free again
    (runs / "b").mkdir()
    (runs / "b" / LOCK_FILE).write_text(json.dumps({"pid": 1}))
    claim_run(runs / "b", resume=False, runs_dir=runs).release()
    with pytest.raises(StoreError, match="no run 'c' to resume"):
        claim_run(runs / "c", resume=True, runs_dir=runs)
    assert not (runs / "c").exists()


# --- --retry-failed --------------------------------------------------------------------------------------------


def _site(site: str, models: tuple[str, ...] = ("m1", "m2")) -> SimpleNamespace:
    prep = (("prepare", JobKind.PREPARE), ("sanity_check", JobKind.SANITY_CHECK), ("statistics", JobKind.STATISTICS))
    jobs = [SimpleNamespace(key=f"{site}/{n}", kind=k, model=None) for n, k in prep]
    jobs += [SimpleNamespace(key=f"{site}/infer.{m}", kind=JobKind.INFER, model=m) for m in models]
    jobs += [SimpleNamespace(key=f"{site}/evaluate.{m}", kind=JobKind.EVALUATE, model=m) for m in models]
    hardware = SimpleNamespace(slots=1, gpus=0)  # JobGraph.from_plans reads the site's capacity
    return SimpleNamespace(site=SimpleNamespace(name=site, hardware=hardware), jobs=tuple(jobs))


def _done(plans: list[SimpleNamespace], **statuses: JobStatus) -> dict[str, JobResult]:
    out = {}
    for p in plans:
        for j in p.jobs:
            status = statuses.get(j.key.replace("/", "__").replace(".", "_"), JobStatus.SUCCEEDED)
            site, name = j.key.split("/")
            out[j.key] = JobResult(site, name, j.kind.value, j.model, status)
    return out


def test_nothing_failed_nothing_reruns() -> None:
    plans = [_site("a"), _site("b")]
    assert retry_keys(plans, _done(plans)) == set()  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [s for s in JobStatus if s not in (JobStatus.SUCCEEDED, JobStatus.PENDING,
                                                                      JobStatus.RUNNING)])  # fmt: skip
def test_a_failed_inference_reruns_with_its_evaluation_only(status: JobStatus) -> None:
    plans = [_site("a"), _site("b")]
    done = _done(plans, b__infer_m2=status)
    assert retry_keys(plans, done) == {"b/infer.m2", "b/evaluate.m2"}  # type: ignore[arg-type]


def test_a_failed_evaluation_reruns_alone() -> None:
    plans = [_site("a")]
    assert retry_keys(plans, _done(plans, a__evaluate_m1=JobStatus.FAILED)) == {"a/evaluate.m1"}  # type: ignore[arg-type]


def test_a_failed_prepare_reruns_the_whole_site() -> None:
    plans = [_site("a"), _site("b")]
    done = _done(plans, a__prepare=JobStatus.TIMEOUT)
    for key in ("a/sanity_check", "a/statistics", "a/infer.m1", "a/infer.m2", "a/evaluate.m1", "a/evaluate.m2"):
        done[key].status = JobStatus.SKIPPED
    assert retry_keys(plans, done) == {j.key for j in plans[0].jobs}  # type: ignore[arg-type]


def test_a_failed_statistics_step_keeps_the_steps_before_it() -> None:
    plans = [_site("a", models=("m1",))]
    done = _done(plans, a__statistics=JobStatus.FAILED, a__infer_m1=JobStatus.SKIPPED, a__evaluate_m1=JobStatus.SKIPPED)
    assert retry_keys(plans, done) == {"a/statistics", "a/infer.m1", "a/evaluate.m1"}  # type: ignore[arg-type]


def test_jobs_without_a_record_are_not_listed() -> None:
    plans = [_site("a")]
    done = _done(plans, a__infer_m1=JobStatus.FAILED)
    del done["a/evaluate.m1"]  # interrupted before it finished: it runs anyway
    assert retry_keys(plans, done) == {"a/infer.m1"}  # type: ignore[arg-type]


# --- segments --------------------------------------------------------------------------------------------------


def test_segments_record_every_run_and_resume(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / Ledger.FILE)
    t0 = time.time() - 100
    ledger.begin_segment(t0, resumed=False)  # killed: never ended
    ledger.job_started("a/prepare", "a", "prepare")
    ledger.job_finished("a/prepare", {"status": "succeeded"})
    ledger.job_started("a/infer.m", "a", "infer.m")
    time.sleep(0.01)
    second = ledger.begin_segment(time.time(), resumed=True, retry_failed=True)
    ledger.job_started("a/infer.m", "a", "infer.m")
    ledger.job_finished("a/infer.m", {"status": "succeeded"})
    ledger.end_segment(second, time.time(), "completed")
    segments = ledger.segments()
    ledger.close()
    assert [(s["resumed"], s["retry_failed"], s["state"], s["jobs_run"]) for s in segments] == [
        (False, False, "aborted", 2),
        (True, True, "completed", 1),
    ]
    assert segments[0]["finished_at"] is not None and segments[0]["finished_at"] >= t0  # its last event
    summary, total = summary_segments(segments)
    assert [sorted(s) for s in summary] == [
        ["duration_s", "finished", "jobs_run", "resumed", "retry_failed", "started", "state"]
    ] * 2
    assert summary[0]["duration_s"] == pytest.approx(segments[0]["finished_at"] - t0, abs=1e-3)
    assert total == pytest.approx(sum(s["duration_s"] for s in summary), abs=1e-3)
    assert summary[1]["started"].endswith("Z")


def test_an_aborted_segment_without_events_has_no_duration(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / Ledger.FILE)
    ledger.begin_segment(time.time() - 5, resumed=False)
    seg = ledger.begin_segment(time.time(), resumed=True)
    ledger.end_segment(seg, time.time() + 2, "interrupted")
    summary, total = summary_segments(ledger.segments())
    ledger.close()
    assert [(s["state"], s["duration_s"] is None) for s in summary] == [("aborted", True), ("interrupted", False)]
    assert total == pytest.approx(2, abs=0.1)
