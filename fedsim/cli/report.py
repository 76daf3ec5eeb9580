"""``fedsim report RUN_DIR``: (re)build the HTML report and exports of a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory (runs/<run-id>)")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="HTML file to write (default: RUN_DIR/report.html); exports go beside it"),
    ] = None,
    resamples: Annotated[int, typer.Option("--resamples", min=0, help="bootstrap resamples (0: none)")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="seed of the bootstrap")] = 0,
) -> None:
    """Write report.html (ranking, stability, heatmaps, distributions, jobs, configuration) and the exports."""
    from rich.console import Console

    from fedsim.report.html import write_report

    console = Console(highlight=False, soft_wrap=True)
    files = write_report(run_dir, out, resamples=resamples, seed=seed)
    for path in (files.html, files.results_long, files.summary):
        console.print(f"wrote {path}")
    boot = f", bootstrap {files.bootstrap_seconds:.2f}s" if files.bootstrap_seconds is not None else ""
    console.print(f"report built in {files.seconds:.2f}s{boot}")
