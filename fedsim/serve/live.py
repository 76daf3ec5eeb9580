"""In-process state for ``--serve`` on commands that keep their progress in memory until they end.

A dry run writes ``dry_run.json`` and a stress test its exports only at the end, and the build phase of a run
is not in its ledger; the command that starts the server in its own process feeds a :class:`LiveBoard` with
the same events its console shows (a submission's phase, a set finished, an image being built), and the
server shows the board. Thread-safe: the command's worker threads update it, the server's loop reads it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["FINAL_PHASES", "LiveBoard", "RunFeed"]

FINAL_PHASES = frozenset(
    {"PASS", "WARN", "FAIL", "ERROR", "succeeded", "failed", "timeout", "done", "interrupted"}
    | {"built", "pulled", "converted", "loaded", "present"}  # the build phase's actions
)


@dataclass
class _Row:
    phase: str
    since: float
    detail: str = ""
    finished_s: float | None = None


class LiveBoard:
    """Named rows (a submission, a model × shift set, an image), each with a phase and since when."""

    def __init__(self, kind: str, name: str, rows: list[str] | None = None, *, result: str | None = None) -> None:
        self.kind = kind  # dry-run, stress, run (the build phase of a run)
        self.name = name
        self.result = result  # where the command writes its results at the end (a dry run's --out), for a link
        self.started = time.time()
        self.ended: float | None = None
        self._lock = threading.Lock()
        self._rows: dict[str, _Row] = {r: _Row("queued", self.started) for r in rows or []}
        self.version = 0

    def update(self, row: str, phase: str, detail: str = "") -> None:
        now = time.time()
        with self._lock:
            old = self._rows.get(row)
            since = old.since if old is not None and old.phase != "queued" else now
            done = now - since if phase in FINAL_PHASES else None
            self._rows[row] = _Row(phase, since, detail, done)
            self.version += 1

    def end(self) -> None:
        with self._lock:
            self.ended = time.time()
            self.version += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            rows = [
                {"name": n, "phase": r.phase, "since": r.since, "detail": r.detail, "finished_s": r.finished_s}
                for n, r in self._rows.items()
            ]
            done = sum(1 for r in self._rows.values() if r.finished_s is not None)
            return {
                "kind": self.kind,
                "name": self.name,
                "result": self.result,
                "started": self.started,
                "ended": self.ended,
                "rows": rows,
                "done": done,
                "total": len(rows),
                "version": self.version,
            }


BUILD_ACTIONS = frozenset({"built", "pulled", "converted", "loaded", "present", "failed", "interrupted"})


class RunFeed:
    """The live view's observer of ``run benchmark --serve`` (beside the console's): the build phase (not in the
    ledger) as a board named after the run, which the run page shows while images are prepared."""

    def __init__(self) -> None:
        self.boards: dict[str, LiveBoard] = {}
        self._board: LiveBoard | None = None

    def plan(self, plan: Any) -> None:
        """A :class:`fedsim.pipeline.progress.RunPlan`: the run id is its jobs'."""
        run_id = next((j.run_id for j in plan.jobs if j.run_id), None)
        if run_id:
            self._board = self.boards[run_id] = LiveBoard("run", run_id)

    def build(self, event: Any) -> None:
        """A :class:`fedsim.pipeline.builds.BuildEvent`."""
        board = self._board
        if board is None:
            return
        if event.kind == "start":
            board.update(event.image, "preparing", event.cube)
        elif event.kind == "step":
            board.update(event.image, "building", event.line)
        elif event.record is not None:
            rec = event.record
            detail = f"{rec.seconds:.1f}s" + (f": {rec.error}" if rec.error else "")
            board.update(rec.image, rec.action, detail)

    def job(self, kind: str, job: Any, result: Any) -> None:
        """Jobs reach the live view through the ledger."""
        return None

    def message(self, line: str) -> None:
        return None
