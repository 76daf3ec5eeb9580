"""The job ledger: one SQLite database (WAL) per run, the source of truth for resume.

A job is ``running`` from its launch until its record is written; it becomes ``done`` only after its
outputs were flushed to disk, in the same transaction that stores its record. A run killed at any moment
therefore leaves every job either done (never rerun) or not done (rerun from a clean output directory).
Every start and finish is also appended to ``events`` so tests can prove no finished job ran twice.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from fedsim.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, benchmark TEXT, state TEXT NOT NULL, created_at REAL, updated_at REAL,
    driver_pid INTEGER, driver_host TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY, site TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, pids TEXT, record TEXT, started_at REAL, finished_at REAL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, attempt INTEGER NOT NULL, event TEXT NOT NULL,
    at REAL NOT NULL, driver_pid INTEGER
);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL, finished_at REAL, resumed INTEGER NOT NULL,
    retry_failed INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, driver_pid INTEGER
);
"""


class Ledger:
    FILE = "ledger.sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the job ledger {self.path}: {exc}") from exc

    def _tx(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                rows = self._db.execute(sql, args).fetchall()
                self._db.execute("COMMIT")
                return rows
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK") if self._db.in_transaction else None
                raise StoreError(f"job ledger {self.path}: {exc}") from exc

    def _many(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, args in statements:
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"job ledger {self.path}: {exc}") from exc

    def begin_run(self, run_id: str, benchmark: str) -> None:
        now = time.time()
        self._tx(
            "INSERT INTO runs(run_id, benchmark, state, created_at, updated_at, driver_pid, driver_host) "
            "VALUES(?,?,?,?,?,?,?) ON CONFLICT(run_id) DO UPDATE SET state=excluded.state, "
            "updated_at=excluded.updated_at, driver_pid=excluded.driver_pid, driver_host=excluded.driver_host",
            (run_id, benchmark, "running", now, now, os.getpid(), socket.gethostname()),
        )

    def set_run_state(self, run_id: str, state: str) -> None:
        self._tx("UPDATE runs SET state=?, updated_at=? WHERE run_id=?", (state, time.time(), run_id))

    def run_state(self, run_id: str) -> str | None:
        rows = self._tx("SELECT state FROM runs WHERE run_id=?", (run_id,))
        return rows[0][0] if rows else None

    def job_started(self, key: str, site: str, name: str) -> int:
        """Record a start; returns the attempt number (1 for the first)."""
        now = time.time()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute("SELECT attempts FROM jobs WHERE key=?", (key,)).fetchone()
                attempt = (row[0] if row else 0) + 1
                self._db.execute(
                    "INSERT INTO jobs(key, site, name, state, attempts, started_at) VALUES(?,?,?,?,?,?) "
                    "ON CONFLICT(key) DO UPDATE SET state='running', attempts=excluded.attempts, "
                    "started_at=excluded.started_at, pids=NULL, record=NULL, finished_at=NULL",
                    (key, site, name, "running", attempt, now),
                )
                self._db.execute(
                    "INSERT INTO events(key, attempt, event, at, driver_pid) VALUES(?,?,?,?,?)",
                    (key, attempt, "started", now, os.getpid()),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"job ledger {self.path}: {exc}") from exc
        return attempt

    def job_finished(self, key: str, record: dict[str, Any]) -> None:
        now = time.time()
        self._many(
            [
                (
                    "UPDATE jobs SET state='done', record=?, finished_at=? WHERE key=?",
                    (json.dumps(record, allow_nan=True), now, key),
                ),
                (
                    "INSERT INTO events(key, attempt, event, at, driver_pid) "
                    "SELECT key, attempts, 'finished', ?, ? FROM jobs WHERE key=?",
                    (now, os.getpid(), key),
                ),
            ]
        )

    def done(self) -> dict[str, dict[str, Any]]:
        rows = self._tx("SELECT key, record FROM jobs WHERE state='done'")
        return {k: json.loads(r) for k, r in rows}

    def mark_unfinished(self, state: str = "interrupted") -> None:
        self._tx("UPDATE jobs SET state=? WHERE state='running'", (state,))

    def events(self) -> list[tuple[str, int, str]]:
        return [(k, a, e) for k, a, e in self._tx("SELECT key, attempt, event FROM events ORDER BY id")]

    def begin_segment(self, started_at: float, *, resumed: bool, retry_failed: bool = False) -> int:
        """Record that one command (a run or a resume) starts working on the run; returns its id."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cur = self._db.execute(
                    "INSERT INTO segments(started_at, resumed, retry_failed, state, driver_pid) VALUES(?,?,?,?,?)",
                    (started_at, int(resumed), int(retry_failed), "running", os.getpid()),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"job ledger {self.path}: {exc}") from exc
        return int(cur.lastrowid or 0)

    def end_segment(self, segment_id: int, finished_at: float, state: str) -> None:
        self._tx("UPDATE segments SET finished_at=?, state=? WHERE id=?", (finished_at, state, segment_id))

    def segments(self) -> list[dict[str, Any]]:
        """Every segment of the run in order: ``started_at``, ``finished_at``, ``resumed``, ``retry_failed``,
        ``state`` and ``jobs_run`` (job starts in it). A segment whose process died without closing it is
        ``aborted``, and ends at its last ledger event (``None`` when it recorded none)."""
        rows = self._tx(
            "SELECT id, started_at, finished_at, resumed, retry_failed, state FROM segments ORDER BY started_at, id"
        )
        out: list[dict[str, Any]] = []
        for i, (_id, started, finished, resumed, retry, state) in enumerate(rows):
            until = rows[i + 1][1] if i + 1 < len(rows) else None
            window = "at >= ?" + (" AND at < ?" if until is not None else "")
            args: tuple[Any, ...] = (started, until) if until is not None else (started,)
            if finished is not None:
                window, args = "at >= ? AND at <= ?", (started, finished)
            (jobs_run, last), *_ = self._tx(f"SELECT SUM(event='started'), MAX(at) FROM events WHERE {window}", args)
            if finished is None and until is not None:  # its process died without closing it
                state, finished = "aborted", last
            out.append(
                {
                    "started_at": started,
                    "finished_at": finished,
                    "resumed": bool(resumed),
                    "retry_failed": bool(retry),
                    "state": state,
                    "jobs_run": int(jobs_run or 0),
                }
            )
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


def recorded_durations(path: Path, benchmark: str | None = None) -> dict[str, float]:
    """Job key → seconds of the jobs a run's ledger holds as done (skipped ones left out), read-only; empty when
    the file is missing or unreadable, or when the run was of another benchmark. For ordering later runs."""
    if not Path(path).is_file():
        return {}
    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            if benchmark is not None:
                names = {b for (b,) in db.execute("SELECT benchmark FROM runs")}
                if names and benchmark not in names:
                    return {}
            rows = db.execute("SELECT key, record FROM jobs WHERE state='done'").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    out: dict[str, float] = {}
    for key, record in rows:
        try:
            rec = json.loads(record)
            secs = float(rec.get("duration_s") or 0.0)
        except (TypeError, ValueError, AttributeError):
            continue
        if secs > 0 and rec.get("status") != "skipped":
            out[key] = secs
    return out
