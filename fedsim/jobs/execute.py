"""Run one job to completion: the runtime its containment policy names, prepare the cube, launch, supervise,
record.

The same ``execute_job`` runs under every executor; executors only decide where it runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import traceback
from pathlib import Path

from fedsim.cube import Invocation, Isolation, bind
from fedsim.errors import FedsimError
from fedsim.guard import DeadlineGuard, Guard, RamGuard, supervise
from fedsim.guard.disk import OutputSizeGuard
from fedsim.guard.gpu import GpuMemoryGuard, GpuSampler
from fedsim.jobs.diagnose import explain_failure
from fedsim.jobs.job import Job, JobKind, JobResult, JobStatus
from fedsim.jobs.readback import read_back_problem
from fedsim.runtimes.orphans import TOKEN_VAR, job_token
from fedsim.runtimes.select import RuntimePool
from fedsim.spec.models import DEFAULT_MAX_PIDS
from fedsim.store.reason import reason_from_log
from fedsim.store.tail import read_end


def count_cases(cases_dir: Path | None) -> int:
    if cases_dir is None or not cases_dir.is_dir():
        return 0
    return sum(1 for p in cases_dir.iterdir() if p.is_dir())


def _clean(path: Path) -> None:
    """Empty an output directory owned by this job (a retry or resume must not see stale files)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)


def _flush_outputs(inv: Invocation) -> None:
    """fsync what the job wrote, so that "done" in the ledger implies the outputs survive a crash."""
    for p in inv.parameters:
        if p.io != "output":
            continue
        files = [p.host_path] if p.type == "file" else [f for f in p.host_path.rglob("*") if f.is_file()]
        for f in files:
            if f.is_symlink() or not f.is_file():
                continue
            with contextlib.suppress(OSError):
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)


def _tail_lines(path: Path, lines: int) -> list[str]:
    """The last ``lines`` non-empty lines of a job log (the runtime's own ``$ command`` lines left out)."""
    end = read_end(path, 4096)
    if end is None:
        return []
    kept = [ln.strip() for ln in end[0].splitlines() if ln.strip() and not ln.startswith("$ ")]
    return kept[-lines:]


def validate_outputs(job: Job) -> dict[str, list[str]]:
    """``case -> problems`` of a succeeded ``infer``'s predictions: check-submission's validator over every
    case of ``cases_dir``. A validator error is logged to the job's log and never fails the job."""
    output = job.overrides().get("output_path")
    if job.cases_dir is None or output is None or not job.cases_dir.is_dir():
        return {}
    try:
        from fedsim.metrics.predictions import case_problems

        cases = sorted(p.name for p in job.cases_dir.iterdir() if p.is_dir())
        return case_problems(output, job.cases_dir, cases, job.output_labels)
    except Exception:  # a bug in the validator must not turn a finished job into a failure
        with contextlib.suppress(OSError), open(job.log_path, "a", encoding="utf-8") as fh:
            fh.write("fedsim: validating the predictions failed:\n" + traceback.format_exc())
        return {}


def execute_job(
    job: Job,
    runtimes: RuntimePool,
    stop_event: threading.Event | None = None,
    gpu_sampler: GpuSampler | None = None,
) -> JobResult:
    """Execute ``job``; never raises for a job-level failure — the failure is the returned record."""
    result = JobResult(job.site, job.name, job.kind.value, job.model, JobStatus.RUNNING, log=str(job.log_path))
    started = time.monotonic()
    try:
        for path in job.clean_outputs:
            _clean(path)
        policy = job.containment()
        result.policy = policy.record()
        policy.check()  # no runtime may run it: the job fails with the refusal
        name = policy.runtime
        result.runtime = name
        runtime = runtimes.get(policy.instance)
        runtime.prepare(job.cube, job.base_image)  # image build/pull: before the clock starts
        result.image = runtime.provenance(job.cube, job.base_image)
        num_cases = count_cases(job.cases_dir)
        result.num_cases = num_cases if job.cases_dir is not None else None
        run_id = job.run_id
        inv = bind(
            job.cube,
            job.task,
            job.overrides(),
            isolation=Isolation(
                untrusted=policy.untrusted,
                singularity_fidelity=policy.singularity_fidelity,
                ram_bytes=job.limits.ram_bytes,
                base_image=job.base_image,
                cpus=job.limits.cpus,
                pids_limit=job.limits.max_pids or DEFAULT_MAX_PIDS,
            ),
            gpu_ids=job.gpu_ids,
            pinned=frozenset(name for name, _ in job.paths),
            outputs_dir=job.workdir / "outputs",
            scratch_dir=job.workdir / "tmp",
            labels={"fedsim.job": job.key, "fedsim.run": run_id},
            env={TOKEN_VAR: job_token(run_id, job.key)},
        )
        result.containment = runtime.containment(inv)
        result.sandbox_binary = runtime.sandbox_binary()
        inv.create_directories()
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        job.log_path.write_bytes(b"")
        handle = runtime.launch(inv, job.log_path, job.workdir)
    except FedsimError as exc:
        result.status = JobStatus.FAILED
        result.reason = str(exc)
        result.duration_s = time.monotonic() - started
        return result
    except Exception as exc:  # a bug in fedsim must not take the other jobs down; keep its traceback
        result.status = JobStatus.FAILED
        result.reason = f"internal error: {type(exc).__name__}: {exc}"
        with open(job.log_path, "a", encoding="utf-8") as fh:
            fh.write(traceback.format_exc())
        result.duration_s = time.monotonic() - started
        return result

    result.limits = job.limits.effective(num_cases, inv.gpu_ids)  # what the guards below and the runtime enforce
    guards: list[Guard] = [DeadlineGuard(job.limits.deadline_s(num_cases))]
    # RAM sampling for every runtime: it records the peak, and under docker (the container's cgroup) it stops
    # a job pinned at its limit instead of leaving it thrashing for seconds before the OOM killer acts.
    guards.append(RamGuard(job.limits.ram_bytes, use_cgroup=runtime.capabilities.enforces_memory_limit))
    if job.limits.output_bytes_per_case is not None:
        outputs = tuple(p.host_path for p in inv.parameters if p.io == "output" and p.type == "directory")
        guards.append(OutputSizeGuard(outputs, job.limits.output_bytes_per_case * max(1, num_cases)))
    if inv.scratch_dir is not None and inv.untrusted:  # a host folder as /tmp: bounded like a submission's tmpfs
        guards.append(OutputSizeGuard((inv.scratch_dir,), inv.isolation.untrusted_tmpfs_bytes, what="/tmp"))
    if gpu_sampler is not None and job.gpu_ids:
        guards.append(GpuMemoryGuard(gpu_sampler, job.gpu_ids, job.limits.gpu_memory_bytes))
    try:
        outcome = supervise(handle, guards, stop_event=stop_event)
    finally:
        handle.cleanup()
        if inv.scratch_dir is not None:  # the job's /tmp: scratch, as MedPerf's, not a result (a hostile GiB)
            shutil.rmtree(inv.scratch_dir, ignore_errors=True)
    result.exit_code = outcome.exit_code
    result.duration_s = outcome.duration_s
    result.peak_rss_bytes = outcome.usage.peak_rss_bytes
    result.peak_gpu_memory_bytes = outcome.usage.peak_gpu_memory_bytes
    result.gpu_ids = list(inv.gpu_ids)
    if outcome.interrupted:
        result.status, result.reason = JobStatus.INTERRUPTED, "stopped by the user"
    elif outcome.violation is not None:
        result.status, result.reason = JobStatus(outcome.violation.status), outcome.violation.reason
    elif outcome.exit_code == 0 and (problem := read_back_problem(inv)) is not None:
        result.status, result.reason = JobStatus.FAILED, problem
    elif outcome.exit_code == 0:
        result.status = JobStatus.SUCCEEDED
        _flush_outputs(inv)
        if job.kind is JobKind.INFER and job.validate_outputs:
            result.output_problems = validate_outputs(job)  # after the clock: not part of the job's time
    else:
        result.status = JobStatus.FAILED
        tail = _tail_lines(job.log_path, 40)  # read once: the telling line for the reason, all for the diagnosis
        last = reason_from_log("\n".join(tail))
        result.reason = f"exited with code {outcome.exit_code}" + (f": {last}" if last else "")
        hint = runtime.failure_hint(inv, "\n".join(tail)) or explain_failure("\n".join(tail), inv.isolation)
        if hint:
            result.reason = f"{hint} ({result.reason})"
    return result
