"""The run observer (fedsim/pipeline/observer.py) and the one set-up step (fedsim.pipeline.run.prepare)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fedsim.errors import BadRunId, SpecError, StoreError
from fedsim.executors.local import LocalExecutor
from fedsim.jobs.job import Job, JobResult
from fedsim.pipeline.builds import BuildEvent
from fedsim.pipeline.observer import Callbacks, Fanout, Observer, RunObserver
from fedsim.pipeline.progress import RunPlan
from fedsim.pipeline.run import PreparedRun, RunOptions, prepare, run_benchmark
from tests.conftest import small_benchmark


class Recorder(Observer):
    """Every event as (what, detail), in order; as a subclass of Observer it must satisfy the protocol."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log = name, log

    def plan(self, plan: RunPlan) -> None:
        self.log.append((self.name, f"plan {len(plan.jobs)}"))

    def job(self, kind: str, job: Job, result: JobResult | None) -> None:
        self.log.append((self.name, f"{kind} {job.key}"))

    def message(self, line: str) -> None:
        self.log.append((self.name, f"message {line}"))


def test_fanout_sends_each_event_to_every_observer_in_order() -> None:
    log: list[tuple[str, str]] = []
    both: RunObserver = Fanout(Recorder("a", log), Recorder("b", log))
    both.message("hello")
    both.build(BuildEvent("start", "img:1", "cube"))  # neither watches builds: ignored by Observer
    assert log == [("a", "message hello"), ("b", "message hello")]


def test_callbacks_call_what_is_given_and_ignore_the_rest() -> None:
    seen: list[Any] = []
    cb = Callbacks(on_build=seen.append)
    event = BuildEvent("start", "img:1", "cube")
    cb.build(event)
    cb.message("ignored")
    cb.plan(RunPlan(()))
    assert seen == [event]


def test_prepare_returns_one_frozen_value(tmp_path: Path) -> None:
    bench = small_benchmark(tmp_path, sites=1, cases=1, shape=(24, 24, 16))
    prepared = prepare(RunOptions(benchmark=bench, runs_dir=tmp_path / "runs"))
    assert isinstance(prepared, PreparedRun)
    assert [s.name for s in prepared.sites] == ["s0"] and prepared.benchmark.models[0].name == "baseline"
    assert "baseline" in prepared.cubes.models
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.note = "changed"  # type: ignore[misc]
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"run_id": "../escape"}, BadRunId),
        ({"resume": "no-such-run"}, StoreError),
        ({"models": ("nobody",)}, SpecError),
    ],
    ids=["run-id-outside-runs-dir", "resume-of-nothing", "unknown-model"],
)
def test_prepare_refuses_before_anything_is_written(tmp_path: Path, options: dict[str, Any], error: type) -> None:
    bench = small_benchmark(tmp_path, sites=1, cases=1, shape=(24, 24, 16))
    with pytest.raises(error):
        prepare(RunOptions(benchmark=bench, runs_dir=tmp_path / "runs", **options))
    assert not (tmp_path / "runs").exists()


@pytest.mark.sandbox
def test_a_run_tells_its_observer_the_plan_first_then_each_job_started_before_finished(tmp_path: Path) -> None:
    bench = small_benchmark(tmp_path, sites=1, cases=1, shape=(24, 24, 16))
    log: list[tuple[str, str]] = []
    prepared = prepare(RunOptions(benchmark=bench, runs_dir=tmp_path / "runs", run_id="o", rank=False))
    report = run_benchmark(prepared, Recorder("r", log), executor=LocalExecutor(nvml=None))
    events = [e for _, e in log if not e.startswith("message synthesising")]  # data made before the plan, if not cached
    assert events[0] == "plan 5"
    jobs = [e for e in events if e.startswith(("started", "finished"))]
    keys = {e.split()[1] for e in jobs}
    assert len(keys) == 5 and all(jobs.index(f"started {k}") < jobs.index(f"finished {k}") for k in keys)
    assert report.run.run_id == "o" and all(r.status.finished_ok for rs in report.results.values() for r in rs)
