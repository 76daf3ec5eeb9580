"""fedsim's exception tree; every error a user can cause is one of these.

    FedsimError
    ├── SpecError              a benchmark, site, mlcube.yaml or results file is wrong (names file + field)
    ├── RuntimeUnavailable     the requested runtime (docker engine, singularity binary) is not usable
    ├── StoreError             the run directory or ledger cannot be read or written
    │   ├── BadRunId           a run id that is not a plain directory name (exit 2)
    │   └── RunExists          a new run given the id of an existing one (exit 2)
    └── RunInUse               another live fedsim process holds the run's lock (exit 1)

The CLI catches ``FedsimError`` and prints one line; anything else is a bug and keeps its traceback.
A job that fails or breaks a limit is not an exception: it is a result (``JobResult.status``, ``reason``).
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


class StoreError(FedsimError):
    """The run directory or the job ledger is unusable."""

    exit_code = 2


class BadRunId(StoreError):
    """A ``--run-id``/``--resume`` value that is not a plain directory name (a path, ``..``, empty)."""


class RunExists(StoreError):
    """A new run was given the id of an existing run directory (resume it, or pick another id)."""


class RunInUse(FedsimError):
    """Another live fedsim process holds the run directory's lock; the message names it. Not a usage
    mistake, a moment's conflict: exit code 1."""

    exit_code = 1


__all__ = [
    "BadRunId",
    "FedsimError",
    "RunExists",
    "RunInUse",
    "RuntimeUnavailable",
    "SpecError",
    "StoreError",
]
