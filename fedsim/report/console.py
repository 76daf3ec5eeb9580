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
from fedsim.pipeline.builds import BuildEvent
from fedsim.pipeline.progress import ProgressModel, RunPlan
from fedsim.report.progress_view import BuildStatus, build_event_line, render_live

STYLE = {
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.TIMEOUT: "red",
    JobStatus.RAM_EXCEEDED: "red",
    JobStatus.GPU_MEMORY_EXCEEDED: "red",
    JobStatus.OUTPUT_EXCEEDED: "red",
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
    """The console's observer of a run (:class:`fedsim.pipeline.observer.RunObserver`): the plan, the build phase,
    job events from the scheduler's threads and messages, rendered as the live view of
    :mod:`fedsim.report.progress_view` on a terminal, plain lines otherwise."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live_mode = console.is_terminal
        self._lock = threading.Lock()
        self._flagged: dict[str, str] = {}  # job key -> state label of an infer with invalid predictions
        self._started = time.monotonic()
        self.model = ProgressModel()
        self.builds = BuildStatus()
        self._live: Live | None = None

    def plan(self, plan: RunPlan) -> None:
        """The run's plan, before anything runs: the total, what was done earlier, the known durations."""
        with self._lock:
            self.model.set_plan(plan)
            c = self.model.counts()
            if not self.live_mode:
                earlier = f" ({c.earlier} done earlier)" if c.earlier else ""
                self.console.print(f"[{self._clock()}] {c.total} jobs to run{earlier}", highlight=False)
            self._refresh()

    def build(self, event: BuildEvent) -> None:
        """An event of the build phase: the status line on a terminal, a plain line otherwise."""
        with self._lock:
            self.builds.update(event)
            if not self.live_mode:
                line = build_event_line(event, self._clock())
                if line:
                    self.console.print(line, markup=False, highlight=False, soft_wrap=True)
            self._refresh()

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def message(self, line: str) -> None:
        """A line for the person running fedsim, above the live table (as printed, no markup)."""
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def job(self, kind: str, job: Job, result: JobResult | None) -> None:
        with self._lock:
            now = time.monotonic()
            if kind == "started":
                self.model.started(job, now)
                if not self.live_mode:
                    self.console.print(f"[{self._clock()}] {job.site:<12} {job.name:<28} started", highlight=False)
            elif kind == "finished" and result is not None:
                self.model.finished(job, result)
                if not self.live_mode:
                    reason = f" ({result.reason})" if result.reason else ""
                    c = self.model.counts()
                    self.console.print(
                        f"[{self._clock()}] {job.site:<12} {job.name:<28} {result.status.value} "
                        f"in {result.duration_s:.1f}s{reason}  [{c.finished}/{c.total}]",
                        highlight=False,
                        soft_wrap=True,
                    )
                warning = job_warning(result)
                if warning:  # printed above the live table too: it must not pass unseen
                    self._flagged[job.key] = flagged_label(result)
                    self.console.print(Text(warning, style="yellow"), soft_wrap=True)
            if self._live is not None:
                self._live.update(self._render())

    def _clock(self) -> str:
        return f"{time.monotonic() - self._started:7.1f}s"

    def _render(self) -> Group:
        # one line short of the terminal: Live's cursor line, so nothing scrolls off
        height = max(1, self.console.size.height - 1)
        now = time.monotonic()
        return render_live(
            self.model, now=now, started=self._started, height=height, build=self.builds, labels=self._flagged
        )


def job_warning(result: JobResult, shown: int = 3) -> str | None:
    """One line for a succeeded infer with predictions the federation would reject: how many, which, why."""
    problems = result.output_problems
    if not problems:
        return None
    cases = [f"{case}: {'; '.join(found)}" for case, found in problems.items()]
    more = f" (+{len(cases) - shown} more)" if len(cases) > shown else ""
    return (
        f"warning: {result.site}/{result.name}: {len(cases)}/{result.num_cases or len(cases)} invalid predictions, "
        f"scored as is — {' | '.join(cases[:shown])}{more}"
    )


def flagged_label(result: JobResult) -> str:
    """``succeeded, 2/3 invalid outputs`` for a flagged infer; its status otherwise."""
    n = len(result.output_problems)
    if not n:
        return result.status.value
    return f"{result.status.value}, {n}/{result.num_cases or n} invalid outputs"


def model_warnings(results: dict[str, list[JobResult]]) -> list[str]:
    """One line per model whose predictions were invalid at some site: how many cases, where, and the first why."""
    from fedsim.report.exports import flagged_models

    lines = []
    for model, (cases, total, flagged) in flagged_models(r for rs in results.values() for r in rs).items():
        sites = ", ".join(r.site for r in flagged)
        first = flagged[0]
        case, found = next(iter(first.output_problems.items()))
        lines.append(
            f"warning: model {model} wrote invalid predictions for {cases}/{total} cases (sites {sites}), "
            f"scored as is; e.g. {first.site}/{case}: {'; '.join(found)}"
        )
    return lines


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, int | float) and v == v]
    return sum(nums) / len(nums) if nums else None


def final_table(report: Any) -> Table:
    """Site × model: infer status, mean Dice per region (lesion-wise Dice and NSD for BraTS 2025), inference
    duration."""
    from fedsim.report.metricview import view_for_metrics

    view = view_for_metrics(report.site_metrics)
    table = Table(title=f"run {report.run.run_id}")
    for col in ("site", "model", "status"):
        table.add_column(col, justify="left")
    for header, _, _ in view.columns:
        table.add_column(header, justify="right")
    table.add_column("infer time", justify="right")
    for site in report.sites:
        results = {r.name: r for r in report.results.get(site.name, [])}
        metrics = report.site_metrics.get(site.name, {})
        for model in report.benchmark.models:
            infer = results.get(f"infer.{model.name}")
            evaluate = results.get(f"evaluate.{model.name}")
            status = infer.status if infer else JobStatus.PENDING
            label, style = status.value, STYLE.get(status, "")
            if infer and infer.output_problems:
                label, style = flagged_label(infer), "yellow"
            if infer and infer.status.finished_ok and evaluate and not evaluate.status.finished_ok:
                status, label = evaluate.status, f"evaluate {evaluate.status.value}"
                style = STYLE.get(status, "")
            cells = []
            for _, key, fmt in view.columns:
                m = _mean([c.get(model.name, {}).get(key) for c in metrics.values()])
                cells.append("-" if m is None else fmt.format(m))
            table.add_row(
                site.name,
                model.name,
                Text(label, style=style),
                *cells,
                f"{infer.duration_s:.1f}s" if infer and infer.duration_s else "-",
            )
    return table


def ranking_table(result: Any) -> Table | Group:
    """The ranking; with tied models (rank 1.5, two models at 3) followed by a line saying why (averaged ranks)."""
    from fedsim.report.ties import ties_note

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
    note = ties_note(result.final_rank)
    return table if note is None else Group(table, Text(f"ties: {note}", style="dim"))


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
