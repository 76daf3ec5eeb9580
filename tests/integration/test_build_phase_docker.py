"""Issue 15, item 3, on a real engine: a run whose data-prep cube needs a build builds it before any job starts,
records the build in summary.json with its seconds, and the prepare job's duration leaves the build out."""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from fedsim.jobs.job import Job
from fedsim.pipeline.builds import BuildEvent
from fedsim.pipeline.observer import Callbacks
from fedsim.pipeline.run import RunOptions, run_benchmark
from tests.conftest import CUBES, containers_of_run, small_benchmark

pytestmark = [pytest.mark.docker]

SLEEP_S = 6  # a build step slower than the prepare job itself, so that one cannot hide in the other


def test_a_cube_built_for_the_run_is_timed_apart_from_its_jobs(tmp_path: Path) -> None:
    import docker

    tag = f"fedsim-test/build-phase-{uuid.uuid4().hex[:12]}:0.1"  # unique: the build always happens
    cube = tmp_path / "data_prep"
    shutil.copytree(CUBES / "data_prep", cube, ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((cube / "mlcube.yaml").read_text())
    spec["docker"].update(image=tag, build_strategy="auto")
    (cube / "mlcube.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    dockerfile = cube / "project" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"RUN sleep {SLEEP_S}\n")

    bench = small_benchmark(tmp_path, sites=1, cases=1, runtime="docker")
    config = yaml.safe_load((bench / "benchmark.yaml").read_text())
    config["data_prep"]["cube"] = str(cube)
    (bench / "benchmark.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    timeline: list[tuple[str, str]] = []
    steps: list[str] = []

    def on_build(event: BuildEvent) -> None:
        timeline.append((f"build-{event.kind}", event.image))
        if event.kind == "step" and event.image == tag:
            steps.append(event.line)

    def on_event(kind: str, job: Job, _res: object) -> None:
        timeline.append((kind, job.name))

    run_id = f"build-{uuid.uuid4().hex[:8]}"
    options = RunOptions(benchmark=bench, runs_dir=tmp_path / "runs", run_id=run_id, rank=False)
    try:
        report = run_benchmark(options, Callbacks(on_job=on_event, on_build=on_build))
    finally:
        with contextlib.suppress(Exception):
            docker.from_env().images.remove(tag, force=True)

    summary = json.loads(report.run.summary.read_text())
    ours = [b for b in summary["builds"] if b["image"] == tag]
    assert len(ours) == 1, summary["builds"]
    build = ours[0]
    assert build["action"] == "built" and build["runtime"] == "docker" and build["error"] is None, build
    assert build["seconds"] >= SLEEP_S and build["jobs"] == 3  # prepare, sanity_check, statistics
    assert summary["build_s"] >= build["seconds"]
    assert any(s.startswith("Step ") and f"RUN sleep {SLEEP_S}" in s for s in steps), steps  # live steps

    jobs = {j["name"]: j for j in summary["jobs"]}
    assert all(j["status"] == "succeeded" for j in jobs.values()), [(j["name"], j["reason"]) for j in jobs.values()]
    assert jobs["prepare"]["runtime"] == "docker"
    assert jobs["prepare"]["duration_s"] < build["seconds"]  # the job's clock starts after the build
    built_at = timeline.index(("build-finish", tag))
    assert built_at < timeline.index(("started", "prepare"))
    assert not any(kind == "started" for kind, _ in timeline[:built_at])  # no job waits inside a build
    assert containers_of_run(run_id) == []
