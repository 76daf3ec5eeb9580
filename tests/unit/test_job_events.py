"""``record_job``: the one writer of a job's ledger events (a run, a skipped job, an unbuildable image's job)."""

from __future__ import annotations

import re
from pathlib import Path

import fedsim
from fedsim.bundled import BENCHMARK
from fedsim.cube import load_cube
from fedsim.jobs.factory import infer_job, model_limits
from fedsim.jobs.job import Job, JobResult, JobStatus
from fedsim.pipeline.graph import skipped
from fedsim.pipeline.scheduler import record_job
from fedsim.spec import ResourceLimits
from fedsim.store.ledger import Ledger


def _job(tmp_path: Path) -> Job:
    return infer_job(
        site="s0",
        name="infer.m",
        model="m",
        cube=load_cube(BENCHMARK / "cubes" / "baseline"),
        data=tmp_path / "data",
        predictions=tmp_path / "pred",
        limits=model_limits(ResourceLimits()),
        runtime="local",
        log_path=tmp_path / "infer.log",
        workdir=tmp_path / "work",
    )


def _result(job: Job, status: JobStatus) -> JobResult:
    return JobResult(job.site, job.name, job.kind.value, job.model, status, reason="r")


def test_a_run_writes_started_then_finished_with_its_record(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / Ledger.FILE)
    job = _job(tmp_path)
    seen: list[list[tuple[str, int, str]]] = []

    def run() -> JobResult:
        seen.append(ledger.events())  # the start is on record while the job runs
        return _result(job, JobStatus.FAILED)

    res = record_job(ledger, job, run)
    assert seen == [[("s0/infer.m", 1, "started")]]
    assert ledger.events() == [("s0/infer.m", 1, "started"), ("s0/infer.m", 1, "finished")]
    assert ledger.done() == {"s0/infer.m": res.to_dict()}
    ledger.close()


def test_a_settled_job_gets_the_same_pair_and_an_interrupted_run_stays_running(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / Ledger.FILE)
    job = _job(tmp_path)
    settled = skipped(job, "its model failed")
    assert record_job(ledger, job, settled) is settled
    assert record_job(ledger, job, lambda: _result(job, JobStatus.INTERRUPTED)).status is JobStatus.INTERRUPTED
    assert ledger.events() == [
        ("s0/infer.m", 1, "started"),
        ("s0/infer.m", 1, "finished"),
        ("s0/infer.m", 2, "started"),  # no 'finished': a resume runs it again
    ]
    assert ledger.done() == {}
    ledger.close()
    assert record_job(None, job, settled) is settled  # no ledger (check-submission, stress): just the outcome


def test_no_other_module_writes_job_events() -> None:
    root = Path(fedsim.__file__).parent
    writes = re.compile(r"\.job_(started|finished)\(")
    found = {str(p.relative_to(root)) for p in root.rglob("*.py") if writes.search(p.read_text(encoding="utf-8"))}
    assert found == {"pipeline/scheduler.py"}
