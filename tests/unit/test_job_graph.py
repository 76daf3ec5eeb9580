"""The job graph and its scheduler, with the fake executor: no processes, fractions of a second each."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from fedsim.executors import LocalExecutor
from fedsim.jobs.job import JobResult, JobStatus
from fedsim.pipeline.graph import JobGraph
from fedsim.pipeline.run import earlier_durations
from fedsim.pipeline.scheduler import capacity, run_all
from fedsim.spec.models import HardwareProfile
from fedsim.store.ledger import Ledger
from fedsim.testing import FakeExecutor, FakeNvml, fake_plans

PLAN_ORDER = ["prepare", "sanity_check", "statistics", "infer.a", "infer.b", "evaluate.a", "evaluate.b"]


def _run(plans, executor, **kw):  # type: ignore[no-untyped-def]
    events: list[tuple[str, str]] = []
    stop = kw.pop("stop", threading.Event())
    results = run_all(plans, executor, lambda kind, job, _r: events.append((kind, job.key)), stop, **kw)
    return results, events


def _status(results: dict[str, list[JobResult]]) -> dict[str, tuple[str, str]]:
    return {r.key: (r.status.value, r.reason) for rs in results.values() for r in rs}


def test_edges_follow_the_job_kinds(tmp_path: Path) -> None:
    graph = JobGraph.from_plans(fake_plans(tmp_path, ["s0"]))
    n = {k.split("/")[1]: v for k, v in graph.nodes.items()}
    assert n["prepare"].deps == ()
    assert n["sanity_check"].requires == ("s0/prepare",)
    assert n["statistics"].requires == ("s0/sanity_check",)
    assert n["infer.a"].requires == ("s0/statistics",) and n["infer.a"].after == ()
    assert n["evaluate.a"].requires == ("s0/statistics",) and n["evaluate.a"].after == ("s0/infer.a",)
    # critical path: prepare + sanity + statistics + the longer model's infer + evaluate
    durations = {f"s0/{k}": 1.0 for k in n} | {"s0/infer.b": 5.0}
    assert graph.critical_path(durations) == 1 + 1 + 1 + 5 + 1


def test_every_job_starts_after_its_dependencies(tmp_path: Path) -> None:
    plans = fake_plans(tmp_path, ["s0", "s1"], models=("a", "b", "c"), slots=3)
    ex = FakeExecutor(default_s=0.02)
    results, events = _run(plans, ex)
    assert all(s == "succeeded" for s, _ in _status(results).values())
    assert [r.name for r in results["s0"]] == [j.name for j in plans[0].jobs]  # results in plan order
    graph = JobGraph.from_plans(plans)
    for key, node in graph.nodes.items():
        start, _ = ex.interval(key)
        for dep in node.deps:
            assert ex.interval(dep)[1] <= start, f"{key} started before {dep} finished"
    assert [e for e in events if e[0] == "started"] and len(events) == 2 * len(graph.nodes)


def test_one_slot_keeps_todays_order(tmp_path: Path) -> None:
    ex = FakeExecutor()
    _run(fake_plans(tmp_path, ["s0"]), ex)
    assert ex.started == [f"s0/{n}" for n in PLAN_ORDER]
    assert ex.max_running_by_site["s0"] == 1


def test_a_failed_data_prep_step_skips_exactly_its_dependants(tmp_path: Path) -> None:
    plans = fake_plans(tmp_path, ["s0", "s1"], slots=2)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ex = FakeExecutor(failures={"s0/sanity_check": JobStatus.FAILED})
    results, _ = _run(plans, ex, ledger=ledger)
    st = _status(results)
    assert st["s0/prepare"][0] == "succeeded" and st["s0/sanity_check"][0] == "failed"
    for name in PLAN_ORDER[2:]:
        assert st[f"s0/{name}"] == ("skipped", "sanity_check failed at this site")
        assert f"s0/{name}" not in ex.started
    assert all(st[f"s1/{n}"][0] == "succeeded" for n in PLAN_ORDER)  # the other site is untouched
    done = ledger.done()  # the skips are recorded like finished jobs, as before
    assert done["s0/infer.a"]["status"] == "skipped" and done["s0/infer.a"]["reason"] == st["s0/infer.a"][1]
    ledger.close()


def test_a_failed_infer_still_scores_its_penalty_and_costs_no_other_model(tmp_path: Path) -> None:
    plans = fake_plans(tmp_path, ["s0"], slots=2)
    pred = tmp_path / "s0" / "predictions" / "a"
    pred.mkdir(parents=True)
    (pred / "partial.nii.gz").write_bytes(b"half a prediction")
    ex = FakeExecutor(failures={"s0/infer.a": JobStatus.TIMEOUT})
    results, _ = _run(plans, ex)
    st = _status(results)
    assert st["s0/infer.a"][0] == "timeout"
    assert st["s0/evaluate.a"][0] == "succeeded" and "s0/evaluate.a" in ex.started
    assert pred.is_dir() and not any(pred.iterdir())  # emptied: every case gets the penalty row
    assert st["s0/infer.b"][0] == st["s0/evaluate.b"][0] == "succeeded"


def test_evaluate_runs_as_soon_as_its_infer_is_done(tmp_path: Path) -> None:
    plans = fake_plans(tmp_path, ["s0"], slots=2)
    ex = FakeExecutor({"infer.a": 0.05, "infer.b": 1.0, "evaluate": 0.05}, default_s=0.01)
    _run(plans, ex)
    a_end = ex.interval("s0/infer.a")[1]
    eval_start, eval_end = ex.interval("s0/evaluate.a")
    assert eval_start - a_end < 0.5
    assert eval_end < ex.interval("s0/infer.b")[1]  # scored while the other model still runs


def test_site_slots_and_gpus_are_respected(tmp_path: Path) -> None:
    models = ("a", "b", "c", "d", "e", "f")
    plans = fake_plans(tmp_path, ["s0", "s1"], models=models, slots={"s0": 3, "s1": 1}, gpus={"s0": 0, "s1": 1})
    plans += fake_plans(tmp_path, ["g0"], models=("a", "b", "c"), slots=3, gpus=1, model_gpus=1)
    ex = FakeExecutor({"infer": 0.1}, default_s=0.02)
    results, _ = _run(plans, ex)
    assert all(s == "succeeded" for s, _ in _status(results).values())
    assert ex.max_running_by_site["s0"] == 3
    assert ex.max_running_by_site["s1"] == 1
    # g0 has one GPU: its GPU infers never overlap, though its 3 slots let evaluates run beside them
    infers = sorted(ex.interval(f"g0/infer.{m}") for m in "abc")
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(infers))
    assert ex.max_running_by_site["g0"] >= 2


def test_executor_slots_and_max_jobs_cap_the_whole_run(tmp_path: Path) -> None:
    plans = fake_plans(tmp_path, ["s0", "s1", "s2"], slots=4)
    ex = FakeExecutor(slots=2, default_s=0.02)
    assert capacity(JobGraph.from_plans(plans), ex) == 2
    _run(plans, ex)
    assert ex.max_running == 2
    ex = FakeExecutor(default_s=0.02)
    _run(plans, ex, max_jobs=3)
    assert ex.max_running == 3
    assert capacity(JobGraph.from_plans(plans), FakeExecutor()) == 12  # the sites' slots, without other limits


def test_longest_first_from_earlier_durations_ties_in_plan_order(tmp_path: Path) -> None:
    plans = fake_plans(tmp_path, ["s0"], models=("a", "b", "c"))
    ex = FakeExecutor()
    _run(plans, ex, durations={"s0/infer.c": 50.0, "s0/infer.a": 10.0, "s0/infer.b": 30.0})
    infers = [k for k in ex.started if "/infer." in k]
    assert infers == ["s0/infer.c", "s0/infer.b", "s0/infer.a"]
    # across sites with one executor slot: the site whose model is known to be slow goes first
    plans = fake_plans(tmp_path, ["s0", "s1"])
    ex = FakeExecutor(slots=1)
    _run(plans, ex, durations={"s0/infer.a": 10.0, "s1/infer.a": 900.0})
    assert ex.started[0] == "s1/prepare"
    # no durations: plan order decides every tie
    ex = FakeExecutor(slots=1)
    _run(plans, ex)
    assert ex.started[:2] == ["s0/prepare", "s1/prepare"]


def test_a_job_that_does_not_fit_holds_back_no_other_and_never_deadlocks(tmp_path: Path) -> None:
    plans = fake_plans(tmp_path, ["s0"], slots=2)
    ex = FakeExecutor(refuse_admission={"s0/infer.a"})
    results, _ = _run(plans, ex)
    assert all(s == "succeeded" for s, _ in _status(results).values())
    started = ex.started
    assert started.index("s0/infer.b") < started.index("s0/infer.a")  # b went past the refused a
    assert started.index("s0/evaluate.b") < started.index("s0/infer.a")
    assert ex.admit_refusals["s0/infer.a"] >= 1


def test_local_executor_admits_what_fits_and_frees_it_after_the_run(tmp_path: Path) -> None:
    ex = LocalExecutor(nvml=FakeNvml(gpus=1), cpus=3)
    assert ex.slots() == 3 and LocalExecutor(8, nvml=None, cpus=2).slots() == 2
    plans = fake_plans(tmp_path, ["s0", "s1"], models=("a",), gpus=1, model_gpus=1)
    a, b = (p.jobs[3] for p in plans)
    assert a.limits.gpus == 1
    assert ex.admit(a) and not ex.admit(b)  # one GPU: the second GPU job waits
    ex.resources.release(ex._admitted.pop(a.key))
    assert ex.admit(b)


def test_interrupt_stops_running_jobs_and_marks_the_rest(tmp_path: Path) -> None:
    plans = fake_plans(tmp_path, ["s0", "s1"], slots=2)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    stop = threading.Event()
    ex = FakeExecutor({"infer": 30.0}, default_s=0.01)

    def on_event(kind: str, job: object, _r: object) -> None:
        if kind == "started" and getattr(job, "name", "") == "infer.b":
            threading.Timer(0.1, stop.set).start()

    started = time.monotonic()
    results = run_all(plans, ex, on_event, stop, ledger=ledger)
    assert time.monotonic() - started < 10
    st = _status(results)
    running = {r.key for r in ex.runs if r.status is JobStatus.INTERRUPTED}
    assert running and all(st[k] == ("interrupted", "stopped by the user") for k in running)
    not_started = [k for k in st if k not in set(ex.started)]
    assert not_started and all(st[k] == ("interrupted", "run interrupted before this job started") for k in not_started)
    done = ledger.done()
    assert not any(k in done for k in running | set(not_started))  # interrupted jobs are not done: resume reruns
    assert done["s0/prepare"]["status"] == "succeeded"
    ledger.close()


def test_resume_keeps_done_results_and_reruns_the_rest(tmp_path: Path) -> None:
    plans = fake_plans(tmp_path, ["s0"], slots=2)
    done = {
        f"s0/{n}": JobResult("s0", n, n.split(".")[0], None, JobStatus.SUCCEEDED, duration_s=1.0)
        for n in ("prepare", "sanity_check", "statistics", "infer.a")
    }
    ex = FakeExecutor()
    results, _ = _run(plans, ex, done=done)
    assert sorted(ex.started) == ["s0/evaluate.a", "s0/evaluate.b", "s0/infer.b"]
    by_key = {r.key: r for r in results["s0"]}
    assert all(by_key[k] is done[k] for k in done)
    # a resumed site whose prepare had failed: the rest is skipped with the original cause, nothing runs
    failed = JobResult("s0", "prepare", "prepare", None, JobStatus.FAILED, reason="exited with code 1")
    skipped = JobResult("s0", "sanity_check", "sanity_check", None, JobStatus.SKIPPED, "prepare failed at this site")
    ex = FakeExecutor()
    results, _ = _run(plans, ex, done={"s0/prepare": failed, "s0/sanity_check": skipped})
    assert ex.started == []
    assert _status(results)["s0/evaluate.b"] == ("skipped", "prepare failed at this site")


def test_slots_must_be_positive() -> None:
    assert HardwareProfile().slots == 1
    assert HardwareProfile(slots=8).slots == 8
    with pytest.raises(ValidationError):
        HardwareProfile(slots=0)


def test_durations_come_from_earlier_runs_of_the_same_benchmark(tmp_path: Path) -> None:
    def ledger_run(run_id: str, bench: str, seconds: float) -> None:
        ledger = Ledger(tmp_path / run_id / Ledger.FILE)
        ledger.begin_run(run_id, bench)
        ledger.job_started("s0/infer.a", "s0", "infer.a")
        ledger.job_finished("s0/infer.a", {"status": "succeeded", "duration_s": seconds})
        ledger.job_started("s0/infer.b", "s0", "infer.b")
        ledger.job_finished("s0/infer.b", {"status": "skipped", "duration_s": 0.0})
        ledger.close()

    ledger_run("old", "bench", 5.0)
    ledger_run("other", "another-bench", 99.0)
    assert earlier_durations(tmp_path, "bench") == {"s0/infer.a": 5.0}
    assert earlier_durations(tmp_path, "bench", exclude="old") == {}
    assert earlier_durations(tmp_path / "missing", "bench") == {}


def test_unknown_jobs_are_timed_like_their_kind(tmp_path: Path) -> None:
    graph = JobGraph.from_plans(fake_plans(tmp_path, ["s0", "s1"], models=("a", "new")))
    secs = graph.expected_seconds({"s0/infer.a": 4.0, "s0/evaluate.a": 1.0})
    assert secs["s1/infer.a"] == 4.0  # the same job at another site
    assert secs["s0/infer.new"] == secs["s1/infer.new"] == 4.0  # a new model: like the known infers
    assert secs["s0/evaluate.new"] == 1.0
    assert secs["s0/prepare"] == 60.0  # nothing known of its kind: the static guess
    # one lane, known baseline and unknown new model: ties keep plan order (a before new), infers before evaluates
    ex = FakeExecutor()
    _run(fake_plans(tmp_path, ["s0"], models=("a", "new")), ex, durations={"s0/infer.a": 4.0, "s0/evaluate.a": 1.0})
    assert ex.started[3:] == ["s0/infer.a", "s0/infer.new", "s0/evaluate.a", "s0/evaluate.new"]
