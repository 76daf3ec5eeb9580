"""Issue 15, item 3: image builds are a phase of their own, before the jobs, reported and timed, never inside a
job's duration; a failed build fails its cube's jobs and the run goes on. No Docker here: a fake runtime that
"builds" stands in for it (tests/integration/test_build_phase_docker.py does the real thing)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fedsim.cube import CubeSpec
from fedsim.errors import RuntimeUnavailable
from fedsim.executors import LocalExecutor
from fedsim.jobs.job import Job, JobStatus
from fedsim.pipeline.builds import BuildEvent, build_images
from fedsim.pipeline.observer import Callbacks
from fedsim.pipeline.plan import SitePlan
from fedsim.pipeline.progress import RunPlan
from fedsim.pipeline.run import RunOptions, run_benchmark
from fedsim.runtimes.base import BuildProgress, Prepared
from fedsim.runtimes.policy import resolve
from fedsim.store.ledger import Ledger
from fedsim.testing import FakeExecutor, FakeRuntime, Script, fake_plans
from tests.conftest import small_benchmark


class BuildingRuntime(FakeRuntime):
    """A docker stand-in whose ``prepare`` takes ``build_s`` the first time per image, reporting two steps."""

    name = "docker"

    def __init__(self, build_s: float = 0.0, fail: tuple[str, ...] = ()) -> None:
        super().__init__(Script())
        self.build_s = build_s
        self.fail = fail
        self.prepared: list[str] = []  # cube names, one per call
        self.built: set[str] = set()
        self._lock = threading.Lock()

    def prepare(
        self, cube: CubeSpec, base_image: str | None = None, *, progress: BuildProgress | None = None
    ) -> Prepared:
        assert cube.docker is not None
        image = cube.docker.image
        with self._lock:
            self.prepared.append(cube.name)
            if image in self.built:
                return Prepared(image, "present")
        if cube.name in self.fail:
            raise RuntimeUnavailable(f"building {image} failed: The command '/bin/sh -c false' returned 1")
        if progress is not None:
            progress(image, "Step 1/2 : FROM debian:bookworm-slim")
            progress(image, " ---> 1234abcd")  # not a step: not reported
            progress(image, "Step 2/2 : RUN make")
        time.sleep(self.build_s)
        with self._lock:
            self.built.add(image)
        return Prepared(image, "built")


def _cube(name: str) -> CubeSpec:
    return CubeSpec.model_validate(
        {"name": name, "docker": {"image": f"fedsim-test/{name}:1", "build_strategy": "auto"}, "tasks": {"t": {}}}
    )


def _docker_plans(tmp_path: Path, sites: tuple[str, ...] = ("s0", "s1")) -> list[SitePlan]:
    """fake_plans on the docker runtime: the data-prep cube, one cube per model, the metrics cube."""
    cubes = {"prep": _cube("prep"), "a": _cube("a"), "b": _cube("b"), "metrics": _cube("metrics")}

    def cube_of(job: Job) -> CubeSpec:
        if job.kind.value == "infer":
            return cubes[job.model or ""]
        return cubes["metrics"] if job.kind.value == "evaluate" else cubes["prep"]

    plans = fake_plans(tmp_path, list(sites))

    def on_docker(j: Job) -> Job:  # the planner resolves each job's containment policy from its runtime and cube
        cube = cube_of(j)
        return replace(j, runtime="docker", cube=cube, policy=resolve("docker", cube, untrusted=j.untrusted))

    return [replace(p, jobs=tuple(on_docker(j) for j in p.jobs)) for p in plans]


class PreparingExecutor(FakeExecutor):
    """The fake executor, preparing ahead through a runtime like the local executor does."""

    builds_ahead = True

    def __init__(self, runtime: BuildingRuntime, **kw: Any) -> None:
        super().__init__(**kw)
        self.runtime = runtime

    def prepare(self, job: Job, progress: BuildProgress | None = None) -> Prepared | None:
        if job.runtime == "local":
            return None  # as the local runtime when fedsim's Python satisfies the cube: nothing to build
        return self.runtime.prepare(job.cube, job.base_image, progress=progress)


def test_each_image_is_prepared_once_before_the_jobs_with_its_steps(tmp_path: Path) -> None:
    runtime = BuildingRuntime(build_s=0.05)
    events: list[BuildEvent] = []
    plans = _docker_plans(tmp_path)
    records, failed = build_images(plans, PreparingExecutor(runtime), on_build=events.append)
    assert runtime.prepared == ["prep", "a", "b", "metrics"]  # once per cube over both sites, in plan order
    assert failed == []
    assert [(r.cube, r.action, r.jobs, r.runtime) for r in records] == [
        ("prep", "built", 6, "docker"),
        ("a", "built", 2, "docker"),
        ("b", "built", 2, "docker"),
        ("metrics", "built", 4, "docker"),
    ]
    assert all(r.seconds >= 0.05 and r.image == f"fedsim-test/{r.cube}:1" for r in records)
    first = [(e.kind, e.image, e.line) for e in events[:4]]
    assert first == [
        ("start", "fedsim-test/prep:1", ""),
        ("step", "fedsim-test/prep:1", "Step 1/2 : FROM debian:bookworm-slim"),
        ("step", "fedsim-test/prep:1", "Step 2/2 : RUN make"),
        ("finish", "fedsim-test/prep:1", ""),
    ]
    assert events[3].record is records[0]

    again, _ = build_images(plans, PreparingExecutor(runtime))
    assert [r.action for r in again] == ["present"] * 4


def test_jobs_done_earlier_or_on_other_runtimes_need_no_build(tmp_path: Path) -> None:
    runtime = BuildingRuntime()
    plans = _docker_plans(tmp_path, sites=("s0",))
    def on_local(j: Job) -> Job:
        return replace(j, runtime="local", policy=resolve("local", j.cube, untrusted=j.untrusted))

    local = [replace(p, jobs=tuple(on_local(j) if j.model == "b" else j for j in p.jobs)) for p in plans]
    done = {"s0/infer.a": object()}
    records, _ = build_images(local, PreparingExecutor(runtime), done=done)
    assert [r.cube for r in records] == ["prep", "metrics"]  # infer.a is done; model b runs locally, needing nothing
    assert build_images(plans, FakeExecutor()) == ([], [])  # an executor that prepares on its nodes (Ray): no phase


def test_a_failed_build_fails_that_cubes_jobs_with_its_error(tmp_path: Path) -> None:
    runtime = BuildingRuntime(fail=("a",))
    records, failed = build_images(_docker_plans(tmp_path), PreparingExecutor(runtime))
    assert [(r.cube, r.action) for r in records] == [
        ("prep", "built"),
        ("a", "failed"),
        ("b", "built"),
        ("metrics", "built"),
    ]
    assert "returned 1" in (records[1].error or "")
    assert sorted(j.key for j, _ in failed) == ["s0/infer.a", "s1/infer.a"]
    for _job, res in failed:
        assert res.status is JobStatus.FAILED and res.runtime == "docker" and res.duration_s == 0.0
        assert res.reason == "building fedsim-test/a:1 failed: The command '/bin/sh -c false' returned 1"


def test_a_stop_during_a_build_ends_the_phase(tmp_path: Path) -> None:
    stop = threading.Event()
    runtime = BuildingRuntime()
    events: list[BuildEvent] = []

    def on_build(event: BuildEvent) -> None:
        events.append(event)
        if event.kind == "step":
            stop.set()  # Ctrl-C while the first image builds

    records, failed = build_images(
        _docker_plans(tmp_path), PreparingExecutor(runtime), stop_event=stop, on_build=on_build
    )
    assert [(r.cube, r.action) for r in records] == [("prep", "interrupted")] and failed == []
    assert runtime.prepared == ["prep"]


def _run(tmp_path: Path, runtime: BuildingRuntime) -> tuple[Any, list[tuple[str, str]], list[RunPlan]]:
    bench = small_benchmark(tmp_path, sites=1, cases=1, shape=(24, 24, 16), runtime="docker")
    executor = LocalExecutor(nvml=None)
    executor.runtimes.register("docker", runtime)
    timeline: list[tuple[str, str]] = []
    plans: list[RunPlan] = []

    def on_build(event: BuildEvent) -> None:
        timeline.append((f"build-{event.kind}", event.cube))

    def on_event(kind: str, job: Job, _res: object) -> None:
        timeline.append((kind, job.key))

    options = RunOptions(benchmark=bench, runs_dir=tmp_path / "runs", run_id="build-phase", rank=False)
    report = run_benchmark(
        options, Callbacks(on_plan=plans.append, on_build=on_build, on_job=on_event), executor=executor
    )
    return report, timeline, plans


def test_a_run_builds_first_and_reports_the_builds_apart_from_the_jobs(tmp_path: Path) -> None:
    runtime = BuildingRuntime(build_s=0.5)
    report, timeline, plans = _run(tmp_path, runtime)

    assert len(plans) == 1 and len(plans[0].jobs) == 5 and not plans[0].done  # the plan, before anything ran
    first_job = next(i for i, (kind, _) in enumerate(timeline) if kind == "started")
    assert [k for k, _ in timeline[:first_job]].count("build-finish") == 3  # every image before the first job
    assert all(k.startswith("build-") for k, _ in timeline[:first_job])

    summary = json.loads(report.run.summary.read_text())
    builds = {b["cube"]: b for b in summary["builds"]}
    assert set(builds) == {"fets-data-prep", "fets-metrics", "fets-baseline"}
    assert all(b["action"] == "built" and b["seconds"] >= 0.5 and b["error"] is None for b in builds.values())
    assert summary["build_s"] == pytest.approx(sum(b["seconds"] for b in builds.values()), abs=0.01)
    assert summary["build_s"] == pytest.approx(report.build_s, abs=0.01)
    jobs = {j["name"]: j for j in summary["jobs"]}
    assert jobs["prepare"]["duration_s"] < 0.5  # the build is the run's time, never the job's
    assert summary["duration_s"] >= summary["build_s"]
    # execute_job still prepares (a no-op now): no image is built twice
    assert runtime.prepared.count("fets-data-prep") == 1 + 3 and len(runtime.built) == 3


def test_a_run_goes_on_when_a_build_fails(tmp_path: Path) -> None:
    runtime = BuildingRuntime(fail=("fets-baseline",))
    report, timeline, _ = _run(tmp_path, runtime)
    results = {r.name: r for r in report.results["s0"]}
    infer = results["infer.baseline"]
    assert infer.status is JobStatus.FAILED and infer.reason.startswith("building fedsim/fets-baseline:0.1 failed")
    assert ("finished", "s0/infer.baseline") in timeline and ("started", "s0/infer.baseline") not in timeline
    assert ("started", "s0/evaluate.baseline") in timeline  # the penalty rows are still scored
    assert results["prepare"].status is JobStatus.SUCCEEDED
    done = Ledger(report.run.root / Ledger.FILE).done()
    assert done["s0/infer.baseline"]["status"] == "failed"  # a resume keeps it; --retry-failed retries it
    summary = json.loads(report.run.summary.read_text())
    failed = [b for b in summary["builds"] if b["action"] == "failed"]
    assert len(failed) == 1 and failed[0]["cube"] == "fets-baseline" and "returned 1" in failed[0]["error"]


def test_the_report_shows_the_builds_and_their_time(tmp_path: Path) -> None:
    from fedsim.report.html import build_report
    from tests.unit.test_report_html import make_run

    run = make_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    summary["builds"] = [
        {"image": "fedsim/fets-data-prep:0.1", "cube": "fets-data-prep", "runtime": "docker", "action": "built",
         "seconds": 45.0, "jobs": 6, "error": None},
        {"image": "fedsim-test/<b>:1", "cube": "b", "runtime": "docker", "action": "failed", "seconds": 2.25,
         "jobs": 2, "error": "building fedsim-test/<b>:1 failed: boom"},
    ]  # fmt: skip
    summary["build_s"] = 47.25
    (run / "summary.json").write_text(json.dumps(summary))
    html = build_report(run).read_text(encoding="utf-8")
    assert "Image builds (47.2 s, before the jobs" in html
    assert "<td>fedsim/fets-data-prep:0.1</td>" in html and '<td class="num">45.0 s</td>' in html
    assert "fedsim-test/&lt;b&gt;:1 failed: boom" in html and "<b>:1" not in html  # escaped, marked failed
    assert '<div class="v">47.2 s</div><div class="k">image builds</div>' in html

    del summary["builds"], summary["build_s"]  # a run from before the build phase, or on Ray
    (run / "summary.json").write_text(json.dumps(summary))
    html = build_report(run).read_text(encoding="utf-8")
    assert "Image builds" not in html and "image builds" not in html
