"""Run a submission's ``infer`` on the check's cases under the federation's limits, through the same
``execute_job`` every benchmark job uses (deadline, RAM, output size and GPU guards; singularity fidelity).

A job whose runtime is ``singularity`` runs on a real singularity when one is installed and otherwise on docker
in singularity-fidelity mode (read-only image, 64 MiB /tmp, no HOME, cwd ``/``, non-root user).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from fedsim.cube import CubeSpec
from fedsim.errors import RuntimeUnavailable
from fedsim.executors.base import Executor
from fedsim.jobs.factory import infer_job, model_limits
from fedsim.jobs.job import Job, JobResult, JobStatus
from fedsim.runtimes import engine
from fedsim.runtimes.policy import ContainmentPolicy, resolve
from fedsim.submission.options import CheckOptions
from fedsim.submission.report import Check, failed, passed


@dataclass(frozen=True)
class RunLayout:
    """Where one check's job reads and writes. ``sandbox`` holds only ``predictions`` and ``cwd``."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sandbox(self) -> Path:
        return self.root / "sandbox"

    @property
    def predictions(self) -> Path:
        return self.sandbox / "predictions"

    @property
    def cwd(self) -> Path:
        return self.sandbox / "cwd"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "infer" / "job" / "infer.log"


def make_job(
    cube: CubeSpec,
    key: str,
    runtime: str,
    layout: RunLayout,
    options: CheckOptions,
    ram_gb: float,
    policy: ContainmentPolicy | None = None,
) -> Job:
    """The infer job exactly as the planner builds one for a site (``site`` = the check's unique key), with
    the federation's hardware: one GPU, no CPU quota. ``policy``: as the check resolved it (default: resolved
    here from ``runtime`` and the options)."""
    return infer_job(
        site=key,
        name="infer",
        model=cube.name,
        cube=cube,
        data=layout.data,
        predictions=layout.predictions,
        limits=model_limits(replace(options, ram_gb=ram_gb)),  # the RAM limit as lowered for this machine
        runtime=runtime,
        log_path=layout.log,
        workdir=layout.cwd,
        base_image=options.base_image,
        run_id=key,
        policy=policy or resolve(runtime, cube, untrusted=True, options=options.containment),
        validate_outputs=False,  # the check's own output checks read every prediction once, in detail
    )


class DockerRamProbe:
    """Peak RSS of a docker job's processes (the container's memory limit enforces RAM, so ``execute_job``
    samples nothing there). Finds the container by its ``fedsim.job`` label and sums its tree's RSS."""

    def __init__(self, job_key: str, interval_s: float = 0.1) -> None:
        self.job_key = job_key
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ram-probe-{job_key}", daemon=True)

    def __enter__(self) -> DockerRamProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            client = engine.docker_client(engine.CONTAINERS_TIMEOUT_S)
        except RuntimeUnavailable:  # no engine: nothing to probe
            return
        root: psutil.Process | None = None
        with contextlib.closing(client):
            while not self._stop.is_set():
                if root is None:
                    with contextlib.suppress(Exception):
                        found = client.containers.list(filters={"label": f"fedsim.job={self.job_key}/infer"})
                        pid = int(found[0].attrs["State"]["Pid"]) if found else 0
                        root = psutil.Process(pid) if pid else None
                else:
                    total = 0
                    try:
                        for proc in [root, *root.children(recursive=True)]:
                            with contextlib.suppress(psutil.Error):
                                total += proc.memory_info().rss
                    except psutil.Error:
                        root = None
                    self.peak = max(self.peak, total)
                self._stop.wait(self.interval_s)


_FIX = {
    JobStatus.TIMEOUT: "make inference faster (at most {t:g} s per case on one 11 GB GPU) or look for a hang",
    JobStatus.RAM_EXCEEDED: "keep peak RAM below {ram:g} GB (load one case at a time, free arrays)",
    JobStatus.GPU_MEMORY_EXCEEDED: "keep GPU memory below {gpu:g} GB (smaller batch or patch size)",
    JobStatus.OUTPUT_EXCEEDED: "write only the predictions into output_path",
    JobStatus.INTERRUPTED: "run the check again",
}


def run_check(job: Job, executor: Executor, stop_event: threading.Event | None = None) -> tuple[JobResult, int | None]:
    """Run the job; returns its record and, on docker, the probed peak RSS."""
    if not job.containment().runs_image:  # no container to find
        return executor.run(job, stop_event), None
    with DockerRamProbe(job.site) as probe:
        result = executor.run(job, stop_event)
    return result, (probe.peak or None)


def run_verdict(result: JobResult, options: CheckOptions, ram_gb: float) -> Check:
    """The ``run`` check: finished in time, within RAM and GPU memory, exit code 0."""
    if result.status is JobStatus.SUCCEEDED:
        return passed("run", f"finished in {result.duration_s:.1f} s on {result.runtime}")
    fix = _FIX.get(result.status)
    if fix is not None:
        fix = fix.format(t=options.timeout_per_case_s, ram=ram_gb, gpu=options.gpu_memory_gb)
    else:
        fix = f"see the log: {result.log}" if result.log else "see the job log"
    return failed("run", f"{result.status.value}: {result.reason}", fix)


def case_seconds(predictions: Path, cases: tuple[str, ...], started_wall: float) -> dict[str, float]:
    """Seconds each case took, from the predictions' write times (the first one includes model loading)."""
    times: list[tuple[float, str]] = []
    for case in cases:
        with contextlib.suppress(OSError):
            times.append(((predictions / f"{case}.nii.gz").lstat().st_mtime, case))
    out: dict[str, float] = {}
    previous = started_wall
    for t, case in sorted(times):
        out[case] = max(0.0, t - previous)
        previous = t
    return out


def now() -> float:
    return time.time()
