"""Console output for ``fedsim run``: a live table on a terminal, plain log lines otherwise, a final table."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fedsim.jobs.job import Job, JobResult, JobStatus

STYLE = {
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.TIMEOUT: "red",
    JobStatus.RAM_EXCEEDED: "red",
    JobStatus.GPU_MEMORY_EXCEEDED: "red",
    JobStatus.SKIPPED: "yellow",
    JobStatus.INTERRUPTED: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.PENDING: "dim",
}


class LiveDisplay:
    """A rich ``Live`` view refreshed twice a second on a terminal; subclasses render and hold ``_lock``.

    Off a terminal nothing is drawn (the subclass prints plain lines instead).
    """

    console: Console
    live_mode: bool
    _lock: threading.Lock
    _live: Live | None = None

    def _render(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Any:
        if self.live_mode:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
            threading.Thread(target=self._tick, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.__exit__(*exc)

    def _tick(self) -> None:
        while self._live is not None:
            with self._lock:
                if self._live is not None:
                    self._live.update(self._render())
            time.sleep(0.5)


class RunProgress(LiveDisplay):
    """Receives job events from the scheduler's threads and renders them."""

    def __init__(self, console: Console, jobs: list[Job] | None = None) -> None:
        self.console = console
        self.live_mode = console.is_terminal
        self._lock = threading.Lock()
        self._state: dict[str, tuple[Job, JobStatus, float, float | None]] = {}
        self._order: list[str] = []
        self._started = time.monotonic()
        self._done = 0
        self._total = 0
        self._live: Live | None = None
        for j in jobs or []:
            self.add(j)

    def add(self, job: Job) -> None:
        self._state[job.key] = (job, JobStatus.PENDING, 0.0, None)
        self._order.append(job.key)
        self._total += 1

    def __call__(self, kind: str, job: Job, result: JobResult | None) -> None:
        with self._lock:
            if job.key not in self._state:
                self.add(job)
            now = time.monotonic()
            if kind == "started":
                self._state[job.key] = (job, JobStatus.RUNNING, now, None)
                if not self.live_mode:
                    self.console.print(f"[{self._clock()}] {job.site:<12} {job.name:<28} started", highlight=False)
            elif result is not None:
                _, _, started, _ = self._state[job.key]
                self._state[job.key] = (job, result.status, started, result.duration_s)
                self._done += 1
                if not self.live_mode:
                    reason = f" ({result.reason})" if result.reason else ""
                    self.console.print(
                        f"[{self._clock()}] {job.site:<12} {job.name:<28} {result.status.value} "
                        f"in {result.duration_s:.1f}s{reason}  [{self._done}/{self._total}]",
                        highlight=False,
                        soft_wrap=True,
                    )
            if self._live is not None:
                self._live.update(self._render())

    def _clock(self) -> str:
        return f"{time.monotonic() - self._started:7.1f}s"

    def _eta(self) -> str:
        finished = [d for (_, s, _, d) in self._state.values() if d is not None and s is not JobStatus.SKIPPED]
        if not finished or self._done >= self._total:
            return "-"
        per_job = (time.monotonic() - self._started) / max(1, self._done)
        return f"~{per_job * (self._total - self._done):.0f}s"

    def _render(self) -> Group:
        table = Table(title=None, expand=False, show_edge=False)
        table.add_column("site")
        table.add_column("job")
        table.add_column("state")
        table.add_column("time", justify="right")
        now = time.monotonic()
        for key in self._order:
            job, status, started, duration = self._state[key]
            if status is JobStatus.PENDING:
                continue
            elapsed = duration if duration is not None else now - started
            table.add_row(job.site, job.name, Text(status.value, style=STYLE[status]), f"{elapsed:.1f}s")
        head = Text(
            f"fedsim: {self._done}/{self._total} jobs done · elapsed {now - self._started:.0f}s · ETA {self._eta()}"
        )
        return Group(head, table)


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, int | float) and v == v]
    return sum(nums) / len(nums) if nums else None


def final_table(report: Any) -> Table:
    """Site × model: infer status, mean Dice per region, inference duration."""
    table = Table(title=f"run {report.run.run_id}")
    for col in ("site", "model", "status", "Dice ET", "Dice TC", "Dice WT", "HD95 WT", "infer time"):
        table.add_column(col, justify="right" if col.startswith(("Dice", "HD95", "infer")) else "left")
    for site in report.sites:
        results = {r.name: r for r in report.results.get(site.name, [])}
        metrics = report.site_metrics.get(site.name, {})
        for model in report.benchmark.models:
            infer = results.get(f"infer.{model.name}")
            evaluate = results.get(f"evaluate.{model.name}")
            status = infer.status if infer else JobStatus.PENDING
            label = status.value
            if infer and infer.status.finished_ok and evaluate and not evaluate.status.finished_ok:
                status, label = evaluate.status, f"evaluate {evaluate.status.value}"
            cells = []
            for key in ("Dice_ET", "Dice_TC", "Dice_WT", "Hausdorff95_WT"):
                m = _mean([c.get(model.name, {}).get(key) for c in metrics.values()])
                cells.append("-" if m is None else f"{m:.3f}" if key.startswith("Dice") else f"{m:.1f}")
            table.add_row(
                site.name,
                model.name,
                Text(label, style=STYLE.get(status, "")),
                *cells,
                f"{infer.duration_s:.1f}s" if infer and infer.duration_s else "-",
            )
    return table


def ranking_table(result: Any) -> Table:
    table = Table(title=f"ranking ({result.method})")
    table.add_column("rank", justify="right")
    table.add_column("model")
    table.add_column("score", justify="right")
    for inst in result.institutions:
        table.add_column(inst, justify="right")
    order = sorted(result.algorithms, key=lambda a: (result.final_rank[a], a))
    for algo in order:
        table.add_row(
            f"{result.final_rank[algo]:g}",
            algo,
            f"{result.final_score[algo]:.3f}",
            *[f"{result.institution_scores[i][algo]:.2f}" for i in result.institutions],
        )
    return table


@contextlib.contextmanager
def stop_on_interrupt(err: Console, what: str = "jobs") -> Iterator[threading.Event]:
    """Ctrl-C sets the yielded event (running jobs are stopped cleanly); a second Ctrl-C aborts at once."""
    stop = threading.Event()

    def _interrupt(_sig: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        err.print(f"interrupt: stopping running {what} (press Ctrl-C again to abort at once) ...")
        stop.set()

    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
