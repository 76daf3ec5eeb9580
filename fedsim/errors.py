"""fedsim's exception tree; every error a user can cause is one of these.

    FedsimError
    ├── SpecError              a benchmark, site, mlcube.yaml or results file is wrong (names file + field)
    ├── RuntimeUnavailable     the requested runtime (docker engine, singularity binary) is not usable
    ├── JobFailed              a job could not be run to completion (carries the reason)
    ├── LimitExceeded          a guard stopped a job
    │   ├── WallTimeExceeded
    │   ├── GpuMemoryExceeded
    │   └── RamExceeded
    └── StoreError             the run directory or ledger cannot be read or written

The CLI catches ``FedsimError`` and prints one line; anything else is a bug and keeps its traceback.
This module must stay import-light: cubes import it inside minimal images.
"""

from __future__ import annotations


class FedsimError(Exception):
    """Base of every error fedsim raises on purpose."""

    exit_code = 1


class SpecError(FedsimError):
    """A configuration or data file is invalid; the message names the file, the field and the fix."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        self.file = file
        self.field = field
        where = ""
        if file:
            where = f"{file}"
            if field:
                where += f": {field}"
            where += ": "
        super().__init__(f"{where}{message}")


class RuntimeUnavailable(FedsimError):
    """The runtime a job asked for cannot run here (no engine, no binary)."""

    exit_code = 2


class JobFailed(FedsimError):
    """A job ended without producing its result."""

    def __init__(self, reason: str, *, exit_code: int | None = None) -> None:
        self.reason = reason
        self.job_exit_code = exit_code
        super().__init__(reason)


class LimitExceeded(FedsimError):
    """A guard stopped a job because it crossed one of the federation's limits."""

    status = "limit_exceeded"


class WallTimeExceeded(LimitExceeded):
    status = "timeout"


class GpuMemoryExceeded(LimitExceeded):
    status = "gpu_memory_exceeded"


class RamExceeded(LimitExceeded):
    status = "ram_exceeded"


class StoreError(FedsimError):
    """The run directory or the job ledger is unusable."""

    exit_code = 2


__all__ = [
    "FedsimError",
    "GpuMemoryExceeded",
    "JobFailed",
    "LimitExceeded",
    "RamExceeded",
    "RuntimeUnavailable",
    "SpecError",
    "StoreError",
    "WallTimeExceeded",
]
