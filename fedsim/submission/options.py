"""What a check runs under: the federation's official limits by default, each one overridable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fedsim.runtimes.policy import CHECK_RUNTIMES, ContainmentOptions
from fedsim.spec.models import DEFAULT_MAX_PIDS

if TYPE_CHECKING:
    from fedsim.submission.forecast import SiteBudget

# FeTS 2022 (docs/fets-contract.md): one 11 GB GPU, 40 GB RAM, num_cases * 180 s; as ResourceLimits' defaults.
OFFICIAL_TIMEOUT_PER_CASE_S = 180.0
OFFICIAL_GPU_MEMORY_GB = 11.0
OFFICIAL_RAM_GB = 40.0
OUTPUT_MB_PER_CASE = 200.0
MAX_IMAGE_GB = 20.0  # FeTS set no hard cap; images this large are slow to ship to every hospital
RUNTIMES = CHECK_RUNTIMES
AS_SITES = ContainmentOptions(as_sites=True)


@dataclass(frozen=True)
class CheckOptions:
    """``runtime``: ``auto`` (docker in singularity-fidelity mode when an engine answers, else local),
    ``docker`` (the same, required), ``singularity`` (a real singularity when installed, else docker's
    fidelity mode) or ``local`` (plain processes: static and output checks only, container checks skipped)."""

    runtime: str = "auto"
    timeout_per_case_s: float = OFFICIAL_TIMEOUT_PER_CASE_S
    ram_gb: float = OFFICIAL_RAM_GB
    gpu_memory_gb: float = OFFICIAL_GPU_MEMORY_GB
    output_mb_per_case: float = OUTPUT_MB_PER_CASE
    max_pids: int = DEFAULT_MAX_PIDS  # processes and threads at once, as a benchmark's limits.max_pids
    max_image_gb: float = MAX_IMAGE_GB
    base_image: str | None = None
    work_dir: Path | None = None  # where each check's data copy, outputs and log go (default: a temp dir)
    keep: bool = False  # keep the work directory of a passing check too (a failing one is always kept)
    # containers held as at the sites (fedsim.runtimes.policy); the leave to run the submission as a plain host
    # process where neither docker nor the bubblewrap sandbox can: yes for check-submission (one's own cube; the
    # report says so), no for dry-run unless --allow-unsandboxed
    containment: ContainmentOptions = AS_SITES
    # the benchmark's sites for the time-budget forecast (their cases and limits); none: the forecast is skipped
    sites: tuple[SiteBudget, ...] = ()
    # the label values a valid prediction holds: the benchmark's (``data.labels``; FeTS by default)
    labels: tuple[int, ...] = (0, 1, 2, 4)
    # --decryption-key FILE: the gpg passphrase file of an encrypted submission image (read by gpg only)
    decryption_key: Path | None = None

    def limits(self) -> dict[str, float]:
        return {
            "timeout_per_case_s": self.timeout_per_case_s,
            "ram_gb": self.ram_gb,
            "gpu_memory_gb": self.gpu_memory_gb,
            "output_mb_per_case": self.output_mb_per_case,
            "max_image_gb": self.max_image_gb,
        }
