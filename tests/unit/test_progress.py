"""Issue 15, item 4: the progress model (counts over the whole plan, ETA from known durations) and the live view
that fits any terminal, running jobs first."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from fedsim.jobs.job import Job, JobResult, JobStatus
from fedsim.pipeline.builds import BuildEvent, BuildRecord
from fedsim.pipeline.progress import ProgressModel, RunPlan
from fedsim.report.console import RunProgress
from fedsim.report.progress_view import BuildStatus, render_live
from fedsim.testing import fake_plans


def _jobs(tmp_path: Path, sites: int = 2, models: tuple[str, ...] = ("a", "b")) -> list[Job]:
    return [j for p in fake_plans(tmp_path, [f"s{i}" for i in range(sites)], models) for j in p.jobs]


def _result(job: Job, status: JobStatus = JobStatus.SUCCEEDED, duration: float = 1.0, reason: str = "") -> JobResult:
    return JobResult(job.site, job.name, job.kind.value, job.model, status, reason=reason, duration_s=duration)


def test_the_total_is_the_plan_less_what_was_done_earlier(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)  # 2 sites × 7 jobs
    done = frozenset(j.key for j in jobs if j.site == "s0" and j.kind.value in {"prepare", "sanity_check"})
    model = ProgressModel(RunPlan(tuple(jobs), done=done, concurrency=2))
    c = model.counts()
    assert (c.total, c.earlier, c.waiting, c.finished, c.running) == (12, 2, 12, 0, 0)

    todo = [j for j in jobs if j.key not in done]
    model.started(todo[0], 0.0)
    model.started(todo[1], 0.0)
    model.finished(todo[0], _result(todo[0]))
    model.finished(todo[1], _result(todo[1], JobStatus.TIMEOUT))
    model.finished(todo[2], _result(todo[2], JobStatus.SKIPPED))  # skipped jobs never start
    model.started(todo[3], 1.0)
    c = model.counts()
    assert (c.succeeded, c.failed, c.skipped, c.running, c.waiting) == (1, 1, 1, 1, 8)
    assert c.finished == 3 and c.total == 12  # "3/12", not "3/4 jobs seen so far"


def test_eta_is_unknown_until_a_duration_is_known(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, sites=1, models=("a",))  # prepare, sanity_check, statistics, infer.a, evaluate.a
    model = ProgressModel(RunPlan(tuple(jobs), concurrency=1))
    assert str(model.eta(0.0)) == "unknown"
    assert model.expected(jobs[0]) is None
    assert str(ProgressModel().eta(0.0)) == "unknown"  # no plan: nothing to add up


def test_eta_adds_up_known_durations_over_the_concurrency(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, sites=2, models=("a",))  # 10 jobs
    expected = {j.key: 10.0 for j in jobs}
    model = ProgressModel(RunPlan(tuple(jobs), expected=expected, concurrency=2))
    eta = model.eta(0.0)
    assert eta.seconds == pytest.approx(50.0) and not eta.partial  # 10 jobs × 10 s / 2 at once
    assert str(eta) == "~50s"
    model.started(jobs[0], 0.0)
    assert model.eta(4.0).seconds == pytest.approx((6.0 + 90.0) / 2)  # the running job counts what it has left
    model.finished(jobs[0], _result(jobs[0], duration=4.0))
    assert model.eta(4.0).seconds == pytest.approx(45.0)


def test_eta_takes_the_same_job_elsewhere_then_the_kind_and_is_a_lower_bound_with_gaps(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path, sites=2, models=("a", "b"))
    by = {j.key: j for j in jobs}
    # an earlier run timed s0's jobs only; model b is new
    expected = {j.key: 20.0 for j in jobs if j.site == "s0" and j.model != "b"}
    model = ProgressModel(RunPlan(tuple(jobs), expected=expected, concurrency=1))
    assert model.expected(by["s1/infer.a"]) == 20.0  # the same job at another site
    assert model.expected(by["s1/infer.b"]) == 20.0  # a new model: the mean of its kind
    assert model.expected(by["s0/evaluate.b"]) == 20.0
    assert not model.eta(0.0).partial

    fresh = ProgressModel(RunPlan(tuple(jobs), concurrency=1))
    prep = by["s0/prepare"]
    fresh.started(prep, 0.0)
    fresh.finished(prep, _result(prep, duration=3.0))  # a running average from this run
    assert fresh.expected(by["s1/prepare"]) == 3.0
    eta = fresh.eta(3.0)
    assert eta.partial and eta.seconds == pytest.approx(3.0)  # only s1/prepare is known: a lower bound
    assert str(eta) == ">3s"
    skipped = by["s0/sanity_check"]
    fresh.finished(skipped, _result(skipped, JobStatus.SKIPPED, duration=0.0))
    assert fresh.expected(by["s1/sanity_check"]) is None  # a skipped job times nothing


def _render(model: ProgressModel, height: int, width: int = 80, **kw: object) -> list[str]:
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None)
    console.print(render_live(model, now=100.0, started=0.0, height=height, **kw))  # type: ignore[arg-type]
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def _busy_model(tmp_path: Path, running: int, finished: int) -> tuple[ProgressModel, list[Job]]:
    jobs = _jobs(tmp_path, sites=6, models=("a", "b", "c", "d", "e"))  # 6 × 13 jobs
    model = ProgressModel(RunPlan(tuple(jobs), concurrency=running))
    for i, job in enumerate(jobs[:finished]):
        model.started(job, float(i))
        model.finished(job, _result(job, JobStatus.FAILED if i % 4 == 0 else JobStatus.SUCCEEDED))
    for i, job in enumerate(jobs[finished : finished + running]):
        model.started(job, 10.0 + i)  # the first started runs longest
    return model, jobs[finished : finished + running]


def test_a_small_terminal_shows_running_jobs_first_and_never_overflows(tmp_path: Path) -> None:
    model, running = _busy_model(tmp_path, running=20, finished=30)
    lines = _render(model, height=12)
    assert len(lines) == 12, lines
    assert lines[0].startswith("fedsim: 30/78 jobs finished · 20 running")
    rows = lines[3:10]  # head, table header, rule, then the running jobs, longest running first
    for job, line in zip(running[:7], rows, strict=True):
        assert [c.strip() for c in line.split("│")][:2] == [job.site, job.name], (job.key, line)
    assert "… 13 more running" in lines[10]  # 20 do not fit: the last row says how many more
    assert lines[11].startswith("done 22 · failed 8 · skipped 0 · waiting 28"), lines
    # the finished jobs take no room from the running ones
    assert not any("succeeded" in ln or " failed " in ln for ln in lines[:11]), lines


@pytest.mark.parametrize("height", [1, 2, 3, 4, 5, 8, 12, 30, 60])
@pytest.mark.parametrize("width", [30, 80, 200])
def test_the_live_view_fits_any_terminal(tmp_path: Path, height: int, width: int) -> None:
    model, running = _busy_model(tmp_path, running=20, finished=30)
    build = BuildStatus()
    build.update(BuildEvent("start", "fedsim-test/a-very-long-image-name:0.1", "data_prep"), now=90.0)
    build.update(BuildEvent("step", "fedsim/cube-base:0.1.0", "data_prep", line="Step 3/7 : RUN " + "x" * 300))
    lines = _render(model, height=height, width=width, build=build)
    assert len(lines) <= height, (height, width, lines)
    assert all(len(ln) <= width for ln in lines)
    assert lines[0].startswith("fedsim:"[: width - 1])
    if height >= 30:  # room for all: every running job, then the counts, then recent finished jobs
        text = "\n".join(lines)
        assert "more running" not in text
        assert all(job.name in text for job in running)
        assert "preparing fedsim-test/a-very-long-image-name:0.1" in text or width < 80


@pytest.mark.parametrize("height", range(1, 12))
def test_finished_jobs_never_take_the_place_of_running_ones(tmp_path: Path, height: int) -> None:
    model, running = _busy_model(tmp_path, running=3, finished=30)
    build = BuildStatus()
    build.update(BuildEvent("start", "fedsim-test/x:1", "x"), now=99.0)
    lines = _render(model, height=height, build=build)
    assert len(lines) <= height
    if any(ln.startswith("  ") and "│" not in ln for ln in lines):  # a finished job shown: every running one is
        rows = [[c.strip() for c in ln.split("│")][:2] for ln in lines if "│" in ln]
        assert all([job.site, job.name] in rows for job in running), lines
    if height >= 4:
        assert any("running" in ln for ln in lines[1:]), lines  # a row or "3 running" under the head line


def test_finished_jobs_fill_only_the_room_left(tmp_path: Path) -> None:
    model, _ = _busy_model(tmp_path, running=2, finished=30)
    lines = _render(model, height=20)
    assert len(lines) <= 20
    counts = next(i for i, ln in enumerate(lines) if ln.startswith("done "))
    assert counts == 5  # head, header, rule, two running jobs
    assert 1 <= len(lines) - counts - 1 <= 5  # then a few of the last finished


def test_build_status_line_names_the_image_the_step_and_the_time() -> None:
    build = BuildStatus()
    assert build.line(0.0) is None
    build.update(BuildEvent("start", "fedsim/fets-data-prep:0.1", "fets-data-prep"), now=10.0)
    build.update(BuildEvent("step", "fedsim/fets-data-prep:0.1", "fets-data-prep", line="Step 3/7 : RUN chmod"))
    line = build.line(52.0)
    assert line is not None
    assert line.plain == "preparing fedsim/fets-data-prep:0.1 (fets-data-prep) · Step 3/7 : RUN chmod · 42s"
    record = BuildRecord("fedsim/fets-data-prep:0.1", "fets-data-prep", "docker", "built", 42.0, 3)
    build.update(BuildEvent("finish", record.image, record.cube, record=record))
    assert build.line(53.0) is None and build.records == [record]


def test_plain_progress_counts_against_the_plan(tmp_path: Path) -> None:
    """Off a terminal: one line per event, the count out of the plan's total from the first job on."""
    jobs = _jobs(tmp_path, sites=1, models=("a",))
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    progress = RunProgress(console)
    progress.plan(RunPlan(tuple(jobs), done=frozenset({jobs[0].key}), concurrency=1))
    record = BuildRecord("fedsim-test/x:1", "x", "docker", "built", 2.5, 4)
    progress.build(BuildEvent("start", "fedsim-test/x:1", "x"))
    progress.build(BuildEvent("step", "fedsim-test/x:1", "x", line="Step 1/2 : FROM debian"))
    progress.build(BuildEvent("finish", "fedsim-test/x:1", "x", record=record))
    progress.job("started", jobs[1], None)
    progress.job("finished", jobs[1], _result(jobs[1], duration=0.5))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "4 jobs to run (1 done earlier)" in out
    assert "image fedsim-test/x:1 (x): preparing" in out
    assert "image fedsim-test/x:1: Step 1/2 : FROM debian" in out
    assert "image fedsim-test/x:1 (x): built in 2.5s" in out
    assert f"{jobs[1].name}" in out and "succeeded in 0.5s  [1/4]" in out
