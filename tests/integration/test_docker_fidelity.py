"""Singularity-fidelity mode reproduces the three classic "works with docker, fails at the hospital" bugs.

Each fixture cube (``tests/fixtures/cubes/fidelity_*``) succeeds under a plain ``docker run`` as root and must
fail under fedsim's fidelity mode (what a site's singularity does: read-only image, 64 MiB /tmp, no HOME,
cwd not the WORKDIR, a non-root user), with a job record that names the cause and the fix in one line.
The rules of :mod:`fedsim.jobs.diagnose` are also unit-tested on sample logs, without docker.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedsim.cube import Isolation, bind, container_mounts, load_cube
from fedsim.guard import DeadlineGuard, supervise
from fedsim.jobs.diagnose import explain_failure
from fedsim.jobs.execute import execute_job
from fedsim.jobs.job import Job, JobKind, JobLimits, JobStatus
from fedsim.runtimes import docker_available
from fedsim.runtimes.policy import resolve
from fedsim.runtimes.select import RuntimePool, singularity_binary
from tests.conftest import FIXTURES, containers_of_run

MODEL_PARAMETERS = frozenset({"data_path", "output_path"})
RUN = f"fedsim-test-fidelity-{secrets.token_hex(3)}"  # every container this module creates carries it
CUBE_DIRS = FIXTURES / "cubes"
FIDELITY = Isolation(untrusted=True, singularity_fidelity=True)
CASES = ("FeTS22_Patient0001", "FeTS22_Patient0002")

# cube -> a phrase its job record's reason must contain (cause and fix)
CLASSIC = {
    "fidelity_workdir": "'model.txt' by a relative path: relies on the image's WORKDIR: singularity ignores it; "
    "use absolute paths (e.g. from __file__)",
    "fidelity_write_outside": "wrote outside output_path: no space left",
    "fidelity_root_only": "readable only by root; singularity runs as the calling user: chmod a+r it in the Dockerfile",
}


# ---------------------------------------------------------------- diagnose rules (no docker needed)

FIDELITY_LOGS = {
    "relative open": (
        "Traceback (most recent call last):\n"
        '  File "/app/mlcube.py", line 12, in <module>\n'
        "    with open('model.txt') as fh:\n"
        "FileNotFoundError: [Errno 2] No such file or directory: 'model.txt'",
        ["'model.txt'", "relies on the image's WORKDIR", "singularity ignores it", "use absolute paths"],
    ),
    "relative open, nested": (
        "OSError: [Errno 2] No such file or directory: 'weights/fold0/model.pth'",
        ["'weights/fold0/model.pth'", "relies on the image's WORKDIR"],
    ),
    "relative open, shell": ("cat: model.txt: No such file or directory", ["'model.txt'", "WORKDIR"]),
    "relative entrypoint": (
        "python3: can't open file '//mlcube.py': [Errno 2] No such file or directory",
        ["entrypoint", "WORKDIR", "absolute path in ENTRYPOINT/CMD"],
    ),
    "tmpfs full": (
        '  File "/mlcube_project/mlcube.py", line 16, in <module>\n    fh.write(chunk)\n'
        "OSError: [Errno 28] No space left on device",
        ["wrote outside output_path", "64 MiB", "output_path only"],
    ),
    "read-only image": (
        "OSError: [Errno 30] Read-only file system: '/app/cache'",
        ["wrote to /app/cache, outside output_path", "read-only under singularity", "output_path only"],
    ),
    "read-only input": (
        "OSError: [Errno 30] Read-only file system: '/mlcube_io0/tmp.nii.gz'",
        ["read-only input (/mlcube_io0/tmp.nii.gz)"],
    ),
    "read-only, shell": ("touch: cannot touch '/root/.cache': Read-only file system", ["/root/.cache", "read-only"]),
    "root-only file": (
        "PermissionError: [Errno 13] Permission denied: '/mlcube_project/checkpoint.bin'",
        ["/mlcube_project/checkpoint.bin", "readable only by root", "calling user", "chmod a+r it in the Dockerfile"],
    ),
    "root-only script": ("sh: 1: /app/run.sh: Permission denied", ["/app/run.sh", "readable only by root"]),
}


@pytest.mark.parametrize("name", list(FIDELITY_LOGS))
def test_diagnose_names_cause_and_fix(name: str) -> None:
    log, phrases = FIDELITY_LOGS[name]
    hint = explain_failure(log, FIDELITY)
    assert hint is not None and "\n" not in hint
    for phrase in phrases:
        assert phrase in hint


@pytest.mark.parametrize(
    "log",
    [
        "RuntimeError: CUDA error: no kernel image is available for execution on the device",
        # a missing *input* is the data's or the cube's problem, not singularity's
        "FileNotFoundError: [Errno 2] No such file or directory: '/mlcube_io0/case/case_brain_t1.nii.gz'",
        # output_path is handed to the container's user; a denial there is not a root-only image file
        "PermissionError: [Errno 13] Permission denied: '/mlcube_io1/case.nii.gz'",
        "",
    ],
)
def test_diagnose_stays_silent_on_unknown_failures(log: str) -> None:
    assert explain_failure(log, FIDELITY) is None


def test_diagnose_reads_the_log_from_its_end() -> None:
    """A warning the cube survived must not hide the error that killed it; works on ' | '-joined tails too."""
    log = " | ".join(
        [
            "$ docker run --rm --init --read-only --tmpfs=/tmp:rw,size=67108864 img infer --data_path=/mlcube_io0",
            "warning: cannot write cache: OSError: [Errno 30] Read-only file system: '/root/.cache/x'",
            "PermissionError: [Errno 13] Permission denied: '/opt/model/ckpt.pth'",
        ]
    )
    hint = explain_failure(log, FIDELITY)
    assert hint is not None and hint.startswith("/opt/model/ckpt.pth: a file in the image is readable only by root")


def test_diagnose_reports_the_tmpfs_size_it_was_given() -> None:
    hint = explain_failure("OSError: [Errno 28] No space left on device", Isolation(tmpfs_bytes=16 << 20))
    assert hint is not None and "16 MiB" in hint


# ---------------------------------------------------------------- docker: fixtures and helpers


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_containers() -> Iterator[None]:
    """After this module, no container it created may remain (ran, failed, timed out or interrupted)."""
    yield
    if docker_available():
        left = containers_of_run(RUN)
        assert left == [], f"containers left behind: {left}"


@pytest.fixture(scope="module")
def pool() -> Iterator[RuntimePool]:
    """One docker runtime for the module; every fixture cube is (re)built once, sharing the python3 layer."""
    pool = RuntimePool()
    runtime = pool.get("docker")
    for name in [*CLASSIC, "hostile_read_labels"]:
        runtime.images.build(load_cube(CUBE_DIRS / name), None)  # type: ignore[attr-defined]
    yield pool
    runtime.client.close()  # type: ignore[attr-defined]


def _site(root: Path) -> Path:
    """A site directory as a run lays it out: prepared cases (inputs only), labels beside them, logs."""
    site = root / RUN / "sites" / "s"
    for case in CASES:
        (site / "prepared" / case).mkdir(parents=True)
        for mod in ("t1", "t1ce", "t2", "flair"):
            (site / "prepared" / case / f"{case}_brain_{mod}.nii.gz").write_bytes(b"not really nifti\n")
    (site / "labels").mkdir()
    for case in CASES:
        (site / "labels" / f"{case}_final_seg.nii.gz").write_bytes(b"secret\n")
    return site


def _job(cube: str, site: Path, *, runtime: str = "singularity", timeout_s: float = 60) -> Job:
    return Job(
        site="s",
        name=f"infer.{cube}",
        kind=JobKind.INFER,
        cube=load_cube(CUBE_DIRS / cube),
        task="infer",
        paths=(("data_path", site / "prepared"), ("output_path", site / "predictions" / cube)),
        runtime=runtime,
        limits=JobLimits(timeout_s=timeout_s),
        log_path=site / "logs" / f"infer.{cube}.log",
        workdir=site / "work" / f"infer.{cube}",
        model=cube,
        policy=resolve(runtime, load_cube(CUBE_DIRS / cube), untrusted=True),
        cases_dir=site / "prepared",
        clean_outputs=(site / "predictions" / cube,),
    )


def run_plain_docker(client: Any, cube: str, site: Path) -> tuple[int, str, Path]:
    """``docker run`` with default settings (root, image WORKDIR, writable image), no network, MLCube mounts."""
    from docker.types import Mount

    out = site / "predictions" / cube
    out.mkdir(parents=True, exist_ok=True)
    spec = load_cube(CUBE_DIRS / cube)
    inv = bind(spec, "infer", {"data_path": site / "prepared", "output_path": out}, pinned=MODEL_PARAMETERS)
    mounts, args = container_mounts(inv)
    assert spec.docker is not None
    container = client.containers.create(
        spec.docker.image,
        ["infer", *args],
        mounts=[Mount(m.container_path, str(m.host_path), type="bind", read_only=m.read_only) for m in mounts],
        network_mode="none",
        labels={"fedsim": "1", "fedsim.run": RUN},
    )
    try:
        container.start()
        code = int(container.wait(timeout=120)["StatusCode"])
        return code, container.logs().decode("utf-8", "replace"), out
    finally:
        container.remove(force=True)


def test_diagnosis_sees_the_end_of_a_log_with_a_long_first_line(tmp_path: Path) -> None:
    """The long '$ docker run' line at the top of a short log must not hide the error from diagnose."""
    from fedsim.jobs.execute import _tail_lines

    log = tmp_path / "job.log"
    log.write_text("$ docker run " + "--volume=/x:/y " * 400 + "\nOSError: [Errno 28] No space left on device\n")
    assert _tail_lines(log, 40)[-1] == "OSError: [Errno 28] No space left on device"


needs_fallback = pytest.mark.skipif(
    singularity_binary() is not None, reason="a real singularity is installed: runtime 'singularity' would use it"
)


# ---------------------------------------------------------------- docker: the classic failures


@pytest.mark.docker
@pytest.mark.parametrize("cube", list(CLASSIC))
def test_classic_cube_works_under_plain_docker(pool: RuntimePool, tmp_path: Path, cube: str) -> None:
    """The bug is invisible to the submitter: ``docker run`` as root with the image's defaults succeeds."""
    site = _site(tmp_path)
    code, log, out = run_plain_docker(pool.get("docker").client, cube, site)  # type: ignore[attr-defined]
    assert code == 0, log
    assert sorted(p.name for p in out.iterdir()) == [f"{c}.txt" for c in CASES]


@pytest.mark.docker
@needs_fallback
@pytest.mark.parametrize("cube", list(CLASSIC))
def test_classic_cube_fails_in_fidelity_mode_with_cause_and_fix(pool: RuntimePool, tmp_path: Path, cube: str) -> None:
    """Runtime 'singularity' without the binary falls back to docker's fidelity mode and catches the bug."""
    site = _site(tmp_path)
    result = execute_job(_job(cube, site), pool)
    assert result.runtime == "docker"
    assert result.status is JobStatus.FAILED, result.reason
    assert result.exit_code not in (0, None)
    assert "\n" not in result.reason
    assert CLASSIC[cube] in result.reason, result.reason
    assert f"exited with code {result.exit_code}" in result.reason
    assert list((site / "predictions" / cube).iterdir()) == []


@pytest.mark.docker
def test_write_outside_hits_the_64_mib_tmpfs(pool: RuntimePool, tmp_path: Path) -> None:
    """Driving the runtime directly: the scratch file dies with ENOSPC at /tmp's 64 MiB, not at the disk."""
    site = _site(tmp_path)
    out = site / "predictions" / "x"
    inv = bind(
        load_cube(CUBE_DIRS / "fidelity_write_outside"),
        "infer",
        {"data_path": site / "prepared", "output_path": out},
        isolation=FIDELITY,
        pinned=MODEL_PARAMETERS,
        labels={"fedsim.run": RUN},
    )
    inv.create_directories()
    log = site / "logs" / "direct.log"
    handle = pool.get("docker").launch(inv, log, site / "work")
    try:
        outcome = supervise(handle, [DeadlineGuard(60)])
    finally:
        handle.cleanup()
    text = log.read_text()
    assert outcome.exit_code == 1 and outcome.violation is None
    assert "No space left on device" in text and "wrote 100 MiB" not in text
    assert explain_failure(text, inv.isolation) == explain_failure("[Errno 28] No space left on device", FIDELITY)


@pytest.mark.docker
@needs_fallback
def test_fidelity_mode_does_not_break_an_honest_cube(pool: RuntimePool, tmp_path: Path) -> None:
    """A cube that reads its inputs and writes only to output_path succeeds under the same constraints."""
    site = _site(tmp_path)
    result = execute_job(_job("hostile_read_labels", site), pool)
    assert result.status is JobStatus.SUCCEEDED, result.reason
    out = site / "predictions" / "hostile_read_labels"
    assert sorted(p.name for p in out.iterdir()) == [f"{c}.txt" for c in CASES]
    assert all(p.stat().st_uid == os.getuid() for p in out.iterdir())  # handed back to the invoking user
