"""What ``fedsim run`` shows while it runs: the build phase's status line and the live job view.

The live view fits the terminal: a head line (jobs finished of the plan's total, running, elapsed, ETA), the
image being built (image, step, elapsed) during the build phase, the running jobs (longest running first, each
with its elapsed and expected time), one line of counts (``done 12 · failed 1 · skipped 0 · waiting 14``) and,
with room to spare, the last jobs to finish. Lines are cut at the terminal's width; when the running jobs do not
fit its height the last row says how many more run — finished jobs only ever take room that is left over.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from fedsim.jobs.job import FAILED_STATUSES, JobStatus
from fedsim.pipeline.builds import BuildEvent, BuildRecord
from fedsim.pipeline.progress import Counts, ProgressModel, duration_text

RECENT_MAX = 5  # finished jobs shown below the counts, when there is room


class BuildStatus:
    """The build phase as the console sees it: the image being prepared now and the records of those done."""

    def __init__(self) -> None:
        self.image: str | None = None  # the cube's image being prepared now
        self.cube = ""
        self.step_image = ""  # the image the current step builds (the cube base, for a cube built on it)
        self.step = ""
        self.started = 0.0
        self.records: list[BuildRecord] = []

    def update(self, event: BuildEvent, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if event.kind == "start":
            self.image, self.cube, self.step_image, self.step, self.started = event.image, event.cube, "", "", now
        elif event.kind == "step":
            self.step_image, self.step = event.image, event.line
        elif event.kind == "finish":
            self.image = None
            if event.record is not None:
                self.records.append(event.record)

    def line(self, now: float) -> Text | None:
        """``building IMAGE (cube CUBE) · STEP · 42s`` while an image is being prepared, else None."""
        if self.image is None:
            return None
        step = self.step or "starting"
        if self.step_image and self.step_image != self.image:
            step = f"{self.step_image}: {step}"
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("preparing ", style="cyan")
        text.append(self.image, style="bold")
        text.append(f" ({self.cube}) · {step} · {duration_text(now - self.started)}")
        return text


def build_event_line(event: BuildEvent, clock: str) -> str | None:
    """The plain line (no terminal) for a build event; None for none."""
    if event.kind == "start":
        return f"[{clock}] image {event.image} ({event.cube}): preparing"
    if event.kind == "step":
        return f"[{clock}] image {event.image}: {event.line}"
    rec = event.record
    if rec is None:
        return None
    what = f"failed after {rec.seconds:.1f}s: {rec.error}" if rec.error else f"{rec.action} in {rec.seconds:.1f}s"
    return f"[{clock}] image {rec.image} ({rec.cube}): {what}"


def build_summary_line(records: list[BuildRecord]) -> str | None:
    """``image builds: 2 built, 3 present in 47.2s (before the jobs, in no job's time)``; None without any."""
    if not records:
        return None
    actions: dict[str, int] = {}
    for r in records:
        actions[r.action] = actions.get(r.action, 0) + 1
    what = ", ".join(f"{n} {a}" for a, n in actions.items())
    total = sum(r.seconds for r in records)
    return f"images: {what} in {total:.1f}s (before the jobs, in no job's time)"


def head_line(model: ProgressModel, now: float, started: float, counts: Counts | None = None) -> Text:
    c = model.counts() if counts is None else counts
    parts = [f"fedsim: {c.finished}/{c.total} jobs finished", f"{c.running} running"]
    parts += [f"elapsed {duration_text(now - started)}", f"ETA {model.eta(now)}"]
    if c.earlier:
        parts.append(f"{c.earlier} done earlier")
    return Text(" · ".join(parts), no_wrap=True, overflow="ellipsis")


def counts_line(model: ProgressModel, counts: Counts | None = None) -> Text:
    c = model.counts() if counts is None else counts
    text = Text(no_wrap=True, overflow="ellipsis")
    items = [("done", c.succeeded, "green"), ("failed", c.failed, "red"), ("skipped", c.skipped, "yellow")]
    if c.interrupted:
        items.append(("interrupted", c.interrupted, "yellow"))
    items.append(("waiting", c.waiting, "dim"))
    for i, (label, n, style) in enumerate(items):
        if i:
            text.append(" · ")
        text.append(f"{label} {n}", style=style if n else "")
    return text


def _status_style(status: JobStatus) -> str:
    if status is JobStatus.SUCCEEDED:
        return "green"
    return "red" if status in FAILED_STATUSES else "yellow"


def render_live(
    model: ProgressModel,
    *,
    now: float,
    started: float,
    height: int,
    build: BuildStatus | None = None,
    labels: Mapping[str, str] | None = None,
) -> Group:
    """The live view in at most ``height`` lines (each one line at any width: long ones end in an ellipsis).

    Priority when lines run short: the head line, the counts, the build line, the running jobs (all of them,
    or as many as fit and ``… N more running``), then the last finished jobs. ``labels``: a finished job's state
    as shown (job key → e.g. ``succeeded, 2/3 invalid outputs``)."""
    room = max(1, height)
    c = model.counts()  # once per frame: the head line and the counts line show the same numbers
    lines: list[Any] = [head_line(model, now, started, c)]
    room -= 1
    counts = counts_line(model, c) if room > 0 else None
    room -= counts is not None
    build_line = build.line(now) if build is not None and room > 0 else None
    room -= build_line is not None

    running = model.running(now)
    table: Table | None = None
    if running and room > 0:
        header = room >= 3  # a header, its rule and at least one row; else the rows alone
        rows = room - 2 * header
        shown = running if len(running) <= rows else running[: rows - 1]
        table = Table(show_edge=False, expand=False, pad_edge=False, show_header=header)
        for col, justify in (("site", "left"), ("running", "left"), ("for", "right"), ("expected", "right")):
            table.add_column(col, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
        for job, elapsed in shown:
            expected = model.expected(job)
            table.add_row(
                job.site, job.name, duration_text(elapsed), "?" if expected is None else duration_text(expected)
            )
        if len(shown) < len(running):
            more = f"… {len(running) - len(shown)} more running" if shown else f"{len(running)} running"
            table.add_row("", Text(more, style="dim"), "", "")
        room -= 2 * header + len(shown) + (len(shown) < len(running))
    if build_line is not None:
        lines.append(build_line)
    if table is not None:
        lines.append(table)
    if counts is not None:
        lines.append(counts)
    for job, res in model.recent()[: max(0, min(room, RECENT_MAX))]:
        label = (labels or {}).get(job.key) or res.status.value
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"  {job.site} {job.name} ")
        text.append(label, style=_status_style(res.status))
        text.append(f" {res.duration_s:.1f}s" + (f" ({res.reason})" if res.reason else ""), style="dim")
        lines.append(text)
    return Group(*lines)


__all__ = ["BuildStatus", "build_event_line", "build_summary_line", "counts_line", "head_line", "render_live"]
