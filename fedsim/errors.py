"""fedsim's exception tree; every error a user can cause is one of these.

    FedsimError
    ├── SpecError              a benchmark, site, mlcube.yaml or results file is wrong (names file + field)
    │   ├── DockerfileError    (cube.dockerfile) a Dockerfile docker could not build either (no FROM)
    │   └── InvalidYaml        (yamlsafe) text no YAML loader accepts; keeps the problem and its line
    ├── RuntimeUnavailable     the requested runtime (docker engine, singularity binary) is not usable
    │   ├── ImageMissing       (runtimes.images) a cube's image is neither here nor pullable; its cause and fix
    │   ├── ImageFileError     (runtimes.imagefiles) an image file that cannot be fetched, checked, decrypted, loaded
    │   ├── Unsandboxed        (runtimes.policy) a submission would run as a plain host process: refused
    │   ├── EnvironmentFailed  (runtimes.pyenv) a cube's requirements could not be installed
    │   └── ScanTimeout        (submission.image) the image's own find ran past the permission scan's deadline
    ├── StoreError             the run directory or ledger cannot be read or written
    │   ├── BadRunId           a run id that is not a plain directory name (exit 2)
    │   └── RunExists          a new run given the id of an existing one (exit 2)
    ├── RunInUse               another live fedsim process holds the run's lock (exit 1)
    └── UnreadableVolume       (metrics.nifti) a NIfTI file that cannot be used (corrupt, truncated, too big)

The CLI catches ``FedsimError`` and prints one line; anything else is a bug and keeps its traceback.
A job that fails or breaks a limit is not an exception: it is a result (``JobResult.status``, ``reason``).

Signals that never reach the CLI: each is caught by its caller, inside fedsim, and becomes one of the errors
above, a result or a mode:

    Exception
    ├── BuildCancelled         (pipeline.builds) the user stopped the run during a build
    ├── NvmlUnavailable        (guard.nvml) no NVML here: fedsim runs CPU-only
    ├── _Ambiguous             (runtimes.entrypoint) a container path whose host file is unknown here
    ├── _Unmappable            (runtimes.entrypoint) no host command follows: a RuntimeUnavailable
    └── ValueError
        └── NotPlainWords      (cube.dockerfile) a shell-form ENTRYPOINT/CMD only a shell can split

Classes without a module in parentheses live here. ``tests/unit/test_error_tree.py`` holds this drawing to
every exception class fedsim defines, each under its base class.
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
