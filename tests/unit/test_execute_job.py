"""``execute_job`` with the shipped :class:`fedsim.testing.FakeRuntime`: exact outcomes, no processes."""

from __future__ import annotations

import threading
from pathlib import Path

from fedsim.cube import load_cube
from fedsim.jobs.execute import execute_job
from fedsim.jobs.job import Job, JobKind, JobLimits, JobStatus
from fedsim.runtimes.policy import ContainmentOptions, resolve
from fedsim.runtimes.select import RuntimePool
from fedsim.testing import FakeRuntime, Script
from tests.conftest import CUBES


def _job(tmp_path: Path, **kw: object) -> Job:
    out = tmp_path / "out"
    values: dict[str, object] = {
        "site": "s",
        "name": "evaluate.m",
        "kind": JobKind.EVALUATE,
        "cube": load_cube(CUBES / "baseline"),
        "task": "infer",
        "paths": (("data_path", tmp_path / "data"), ("output_path", out)),
        "runtime": "local",
        "limits": JobLimits(timeout_s=5),
        "log_path": tmp_path / "logs" / "job.log",
        "workdir": tmp_path / "work",
        "clean_outputs": (out,),
    }
    values.update(kw)
    return Job(**values)  # type: ignore[arg-type]


def _pool(runtime: FakeRuntime) -> RuntimePool:
    pool = RuntimePool()
    pool.register("local", runtime)
    pool.register("sandbox", runtime)  # submissions on the local runtime go to its sandboxed variant
    return pool


def test_success_records_outputs_and_duration(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.nii.gz").write_bytes(b"old")
    fake = FakeRuntime(Script(duration_s=0.05, files={"case.nii.gz": b"new"}))
    res = execute_job(_job(tmp_path), _pool(fake))
    assert res.status is JobStatus.SUCCEEDED and res.exit_code == 0 and res.runtime == "local"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case.nii.gz"]  # stale output cleaned
    assert 0.04 <= res.duration_s < 2
    # the federation's keys are pinned; the cube's other parameters keep their defaults
    assert [p.name for p in fake.launched[0].parameters] == ["data_path", "output_path"]


def test_failure_reason_comes_from_the_log(tmp_path: Path) -> None:
    log = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad volume\n'
    res = execute_job(_job(tmp_path), _pool(FakeRuntime(Script(exit_code=3, log=log))))
    assert res.status is JobStatus.FAILED and res.exit_code == 3
    assert res.reason == "exited with code 3: ValueError: bad volume"


def test_deadline_kills_and_records_timeout(tmp_path: Path) -> None:
    fake = FakeRuntime(Script(duration_s=30))
    res = execute_job(_job(tmp_path, limits=JobLimits(timeout_s=0.3)), _pool(fake))
    assert res.status is JobStatus.TIMEOUT and fake.handles[0].terminated
    assert res.duration_s < 5


def test_stop_event_interrupts(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    fake = FakeRuntime(Script(duration_s=30))
    res = execute_job(_job(tmp_path), _pool(fake), stop_event=stop)
    assert res.status is JobStatus.INTERRUPTED and res.reason == "stopped by the user"


def test_a_bad_cube_parameter_is_a_failed_job_not_a_crash(tmp_path: Path) -> None:
    """A submission's default naming a site path is refused before anything starts."""
    cube_dir = tmp_path / "cube"
    cube_dir.mkdir()
    (cube_dir / "mlcube.yaml").write_text(
        "name: m\ntasks:\n  infer:\n    parameters:\n"
        f"      inputs: {{data_path: data/, x: {tmp_path}/}}\n      outputs: {{output_path: out/}}\n"
    )
    fake = FakeRuntime()
    cube = load_cube(cube_dir)
    leave = ContainmentOptions(allow_unsandboxed=True)
    job = _job(tmp_path, cube=cube, kind=JobKind.INFER, policy=resolve("local", cube, untrusted=True, options=leave))
    res = execute_job(job, _pool(fake))
    assert res.status is JobStatus.FAILED and "outside the cube's own directory" in res.reason
    assert fake.launched == []
