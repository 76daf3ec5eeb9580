"""A read-only view of a run's job ledger, for readers that follow a run while it runs (``fedsim serve``).

The ledger is opened with SQLite's ``mode=ro`` URI, so a reader can never write into a run, take its lock or
block its writer (WAL: readers do not block the single writer). :func:`ledger_signature` is a few ``stat``
calls: a follower re-reads the ledger only when the signature moved, which keeps one poll per run cheap even for
a ledger of thousands of jobs.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.store.ledger import Ledger

__all__ = ["LedgerJob", "LedgerSnapshot", "ledger_signature", "read_job_state", "read_ledger"]

Signature = tuple[tuple[int, int] | None, ...]


@dataclass(frozen=True)
class LedgerJob:
    """One row of the ledger's ``jobs`` table; ``record`` is the finished job's record (None while it runs)."""

    key: str
    site: str
    name: str
    state: str  # running, done, interrupted
    attempts: int
    started_at: float | None
    finished_at: float | None
    record: dict[str, Any] | None

    @property
    def status(self) -> str:
        """The job's status as the record says (``succeeded``, ``failed``...), else the ledger state."""
        if self.record is not None and isinstance(self.record.get("status"), str):
            return str(self.record["status"])
        return self.state


@dataclass(frozen=True)
class LedgerSnapshot:
    run_state: str | None
    benchmark: str | None
    created_at: float | None
    driver_host: str | None
    jobs: dict[str, LedgerJob] = field(default_factory=dict)
    segments: tuple[tuple[float, float | None], ...] = ()


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def ledger_signature(run_root: Path) -> Signature:
    """What changes whenever the run's writer commits (the WAL file) or checkpoints (the database file)."""
    db = Path(run_root) / Ledger.FILE
    return (_stat(db), _stat(db.with_name(db.name + "-wal")))


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_ledger(run_root: Path, timeout_s: float = 1.0) -> LedgerSnapshot | None:
    """Every job of the run's ledger, read-only in one transaction; None when there is no readable ledger."""
    path = Path(run_root) / Ledger.FILE
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)
    except sqlite3.Error:
        return None
    try:
        db.execute("BEGIN")  # one consistent read of the runs, jobs and segments tables
        head = db.execute(
            "SELECT state, benchmark, created_at, driver_host FROM runs ORDER BY created_at LIMIT 1"
        ).fetchone()
        jobs: dict[str, LedgerJob] = {}
        for key, site, name, state, attempts, record, started, finished in db.execute(
            "SELECT key, site, name, state, attempts, record, started_at, finished_at FROM jobs"
        ):
            rec: Any = None
            if record:
                try:
                    rec = json.loads(record)
                except ValueError:
                    rec = None
            jobs[str(key)] = LedgerJob(
                key=str(key),
                site=str(site),
                name=str(name),
                state=str(state),
                attempts=int(attempts or 0),
                started_at=_float(started),
                finished_at=_float(finished),
                record=rec if isinstance(rec, dict) else None,
            )
        segments = tuple(
            (float(s), _float(f)) for s, f in db.execute("SELECT started_at, finished_at FROM segments ORDER BY id")
        )
    except sqlite3.Error:
        return None  # being created, or damaged: the caller shows what else the run directory holds
    finally:
        db.close()
    return LedgerSnapshot(
        run_state=head[0] if head else None,
        benchmark=head[1] if head else None,
        created_at=_float(head[2]) if head else None,
        driver_host=head[3] if head else None,
        jobs=jobs,
        segments=segments,
    )


def read_job_state(run_root: Path, key: str, timeout_s: float = 1.0) -> str | None:
    """One job's ledger state (``running``, ``done``, ``interrupted``), read-only; None if unknown or unreadable."""
    path = Path(run_root) / Ledger.FILE
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)
        try:
            row = db.execute("SELECT state FROM jobs WHERE key=?", (key,)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None
