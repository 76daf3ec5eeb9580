"""What a submission check found: named checks (passed, failed, skipped, warning), the verdict, and the
timings, peaks and metric means of its run; serialised to the ``--json`` report and the dry-run exports."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

GiB = 1024**3
VERDICT_TEXT = {"WARN": "PASS with warnings"}


class CheckStatus(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # could not be checked here (e.g. container-only checks on the local runtime): not a pass
    WARNING = "warning"  # worth fixing, but the federation would accept it


@dataclass
class Check:
    """One check: ``cause`` and ``fix`` are one line each; ``details`` lists every instance found."""

    name: str
    status: CheckStatus
    cause: str = ""
    fix: str = ""
    details: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        """``cause; fix: ...`` — what a table cell or a log line shows."""
        if not self.fix:
            return self.cause
        return f"{self.cause}; fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "cause": self.cause,
            "fix": self.fix,
            "details": list(self.details),
        }


def passed(name: str, note: str = "", details: list[str] | None = None) -> Check:
    return Check(name, CheckStatus.PASSED, note, "", list(details or []))


def failed(name: str, cause: str, fix: str, details: list[str] | None = None) -> Check:
    return Check(name, CheckStatus.FAILED, cause, fix, list(details or []))


def skipped(name: str, why: str) -> Check:
    return Check(name, CheckStatus.SKIPPED, why)


def warning(name: str, cause: str, fix: str, details: list[str] | None = None) -> Check:
    return Check(name, CheckStatus.WARNING, cause, fix, list(details or []))


@dataclass
class SubmissionReport:
    """Everything ``check-submission`` found about one submission."""

    submission: str
    target: str
    runtime: str = ""
    containment: str = ""  # how the run was held: docker, singularity, bwrap, or none (the local runtime, unsandboxed)
    checks: list[Check] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    num_cases: int = 0
    duration_s: float | None = None  # inference wall clock, container start to exit
    case_seconds: dict[str, float] = field(default_factory=dict)  # from the predictions' write times
    peak_rss_bytes: int | None = None
    peak_gpu_memory_bytes: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # means over the toy cases
    log: str | None = None
    work_dir: str | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # fedsim itself could not check the submission
    check_duration_s: float = 0.0  # the whole check, build and validation included
    forecast: Any = None  # a fedsim.submission.forecast.Forecast: each site's time and memory headroom

    @property
    def verdict(self) -> str:
        """``PASS``; ``WARN`` — PASS with warnings: the federation would accept it, but see the warnings;
        ``FAIL``: it would fail the cube or score cases as missing; ``ERROR``: fedsim could not check it."""
        if self.error is not None:
            return "ERROR"
        if self.problems:
            return "FAIL"
        return "WARN" if self.warnings else "PASS"

    @property
    def verdict_text(self) -> str:
        return VERDICT_TEXT.get(self.verdict, self.verdict)

    @property
    def accepted(self) -> bool:
        """PASS or PASS with warnings (exit code 0)."""
        return self.verdict in ("PASS", "WARN")

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status is CheckStatus.FAILED]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status is CheckStatus.WARNING]

    @property
    def reason(self) -> str:
        """The first problem (checks run from the cheapest to the most expensive), or the error; for a PASS with
        warnings, the first warning."""
        if self.error is not None:
            return self.error
        first = (self.problems or self.warnings)[:1]
        return f"{first[0].name}: {first[0].cause}" if first else ""

    @property
    def seconds_per_case(self) -> float | None:
        if self.duration_s is None or not self.num_cases:
            return None
        return self.duration_s / self.num_cases

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        spc = self.seconds_per_case
        return {
            "submission": self.submission,
            "target": self.target,
            "verdict": self.verdict,
            "accepted": self.accepted,
            "reason": self.reason,
            "warnings": [f"{c.name}: {c.cause}" for c in self.warnings],
            "runtime": self.runtime,
            "containment": self.containment,
            "limits": dict(self.limits),
            "data": self.data,
            "num_cases": self.num_cases,
            "timings": {
                "inference_s": _round(self.duration_s),
                "seconds_per_case": _round(spc),
                "case_seconds": {k: _round(v) for k, v in self.case_seconds.items()},
                "check_s": _round(self.check_duration_s),
            },
            "peaks": {"ram_bytes": self.peak_rss_bytes, "gpu_memory_bytes": self.peak_gpu_memory_bytes},
            "metrics_mean": {k: _round(v) for k, v in self.metrics.items()},
            "forecast": None if self.forecast is None else self.forecast.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            "log": self.log,
            "work_dir": self.work_dir,
            "notes": list(self.notes),
            "error": self.error,
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def gib(value: int | None) -> str:
    return "-" if value is None else f"{value / GiB:.2f} GiB"
