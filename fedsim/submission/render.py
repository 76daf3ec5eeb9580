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
VERDICT_STYLE = {"PASS": "bold green", "FAIL": "bold red", "ERROR": "bold magenta"}


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
    for note in report.notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    if report.work_dir:
        parts.append(Text(f"log: {report.log}  (work directory {report.work_dir})"))
    verdict = Text(f"{report.verdict}", style=VERDICT_STYLE[report.verdict])
    if report.problems:
        verdict.append(f" — {len(report.problems)} problem(s): " + "; ".join(c.name for c in report.problems))
    parts.append(verdict)
    return Group(*parts)


def dry_run_table(reports: list[SubmissionReport]) -> Table:
    table = Table(show_edge=False)
    for col, justify in (
        ("submission", "left"),
        ("verdict", "left"),
        ("reason", "left"),
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
            _seconds(r.seconds_per_case),
            gib(r.peak_gpu_memory_bytes),
            gib(r.peak_rss_bytes),
        )
    return table
