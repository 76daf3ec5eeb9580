"""Console rendering of submission reports: one report in detail, many as the dry-run table."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from fedsim.submission.report import CheckStatus, SubmissionReport, gib

STATUS_STYLE = {
    CheckStatus.PASSED: "green",
    CheckStatus.FAILED: "red",
    CheckStatus.SKIPPED: "yellow",
    CheckStatus.WARNING: "yellow",
}
VERDICT_STYLE = {"PASS": "bold green", "WARN": "bold yellow", "FAIL": "bold red", "ERROR": "bold magenta"}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report_view(report: SubmissionReport) -> Group:
    """Every check with its cause and fix, then the verdict line with timings, peaks and metric means."""
    held = {"bwrap": ", bubblewrap sandbox", "none": ", UNSANDBOXED"}.get(report.containment, "")
    title = f"{report.submission} ({report.runtime or '-'}{held})"
    table = Table(show_edge=False, title=title, title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("details", overflow="fold")
    for c in report.checks:
        table.add_row(c.name, Text(c.status.value, style=STATUS_STYLE[c.status]), c.line or "")
    parts: list[Text | Table] = [table]
    if report.duration_s is not None:
        per_case = ", ".join(f"{k} {v:.1f}s" for k, v in report.case_seconds.items())
        parts.append(
            Text(
                f"timings: {report.duration_s:.1f} s for {report.num_cases} cases "
                f"({_seconds(report.seconds_per_case)} s/case{'; ' + per_case if per_case else ''}); "
                f"peaks: RAM {gib(report.peak_rss_bytes)}, GPU {gib(report.peak_gpu_memory_bytes)}"
            )
        )
    if report.metrics:
        parts.append(Text("metric means: " + ", ".join(f"{k} {v:.3f}" for k, v in report.metrics.items())))
    if report.forecast is not None and report.forecast.sites:
        parts += [forecast_table([report]), Text(f"forecast basis: {report.forecast.basis}", style="dim")]
        parts += [Text(f"warning: {w}", style="yellow") for w in report.forecast.warnings()]
    for note in report.notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    if report.work_dir:
        parts.append(Text(f"log: {report.log}  (work directory {report.work_dir})"))
    verdict = Text(report.verdict_text, style=VERDICT_STYLE[report.verdict])
    said = []
    if report.problems:
        said.append(f"{len(report.problems)} problem(s): " + "; ".join(c.name for c in report.problems))
    if report.warnings:
        said.append(f"{len(report.warnings)} warning(s): " + "; ".join(c.name for c in report.warnings))
    if said:
        verdict.append(" — " + ", ".join(said))
    parts.append(verdict)
    return Group(*parts)


def dry_run_table(reports: list[SubmissionReport]) -> Table:
    table = Table(show_edge=False)
    for col, justify in (
        ("submission", "left"),
        ("verdict", "left"),
        ("reason", "left"),
        ("time headroom", "right"),
        ("s/case", "right"),
        ("peak GPU", "right"),
        ("peak RAM", "right"),
    ):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in reports:
        table.add_row(
            r.submission,
            Text(r.verdict, style=VERDICT_STYLE[r.verdict]),
            r.reason or "-",
            _headroom(r),
            _seconds(r.seconds_per_case),
            gib(r.peak_gpu_memory_bytes),
            gib(r.peak_rss_bytes),
        )
    return table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} %"


def _margin(value: float | None) -> Text:
    """A headroom in %, yellow below the forecast's warning threshold."""
    from fedsim.submission.forecast import HEADROOM_PCT

    return Text(_pct(value), style="yellow" if value is not None and value < HEADROOM_PCT else "")


def _headroom(report: SubmissionReport) -> Text:
    """The tightest site's time headroom of a dry-run row (``-``: no forecast)."""
    sites = [s for s in (report.forecast.sites if report.forecast is not None else ()) if s.time_margin_pct is not None]
    if not sites:
        return Text("-")
    worst = min(sites, key=lambda s: s.time_margin_pct)
    text = _margin(worst.time_margin_pct)
    text.append(f" {worst.site}", style="dim")
    return text


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def forecast_table(reports: list[SubmissionReport]) -> Table:
    """Per site (and submission, for several): predicted time ± spread against the budget, peaks against limits."""
    many = len(reports) > 1
    table = Table(show_edge=False, title="time-budget forecast", title_justify="left")
    columns = (["submission"] if many else []) + [
        "site",
        "cases",
        "predicted s (spread)",
        "budget s",
        "headroom",
        "RAM GB (limit)",
        "headroom",
        "GPU GB (limit)",
        "headroom",
    ]
    for col in columns:
        table.add_column(col, justify="left" if col in ("submission", "site") else "right")
    for r in reports:
        for s in r.forecast.sites if r.forecast is not None else ():
            row: list[str | Text] = [r.submission] if many else []
            row += [
                s.site,
                str(s.cases),
                f"{s.predicted_s:,.0f} ({s.low_s:,.0f}–{s.high_s:,.0f})",
                f"{s.budget_s:,.0f}",
                _margin(s.time_margin_pct),
                f"{_gb(s.ram_peak_gb)} ({s.ram_limit_gb:g})",
                _margin(s.ram_margin_pct),
                f"{_gb(s.gpu_peak_gb)} ({'no GPU' if s.gpu_limit_gb is None else f'{s.gpu_limit_gb:g}'})",
                _margin(s.gpu_margin_pct),
            ]
            table.add_row(*row)
    return table
