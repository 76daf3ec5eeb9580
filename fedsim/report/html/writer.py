"""The one writer of a run's report files: ``report.html``, ``results_long.csv`` and ``summary_report.json``,
from one load of the run and one bootstrap."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from fedsim.report.exports import write_results_long, write_summary_json
from fedsim.report.html.page import html_parts
from fedsim.report.loader import load_run
from fedsim.report.runview import RunView
from fedsim.report.stability import DEFAULT_RESAMPLES, DEFAULT_SEED, RankStability, rank_stability
from fedsim.store.atomic import open_atomic

__all__ = ["REPORT_NAME", "RESULTS_LONG_NAME", "SUMMARY_NAME", "ReportFiles", "build_report", "write_report"]

REPORT_NAME = "report.html"
RESULTS_LONG_NAME = "results_long.csv"
SUMMARY_NAME = "summary_report.json"


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    results_long: Path
    summary: Path
    seconds: float
    """Time to build everything (load, bootstrap, plots, files)."""
    bootstrap_seconds: float | None


def write_report(
    run_dir: Path,
    out: Path | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> ReportFiles:
    """Write ``report.html``, ``results_long.csv`` and ``summary_report.json`` for a finished run.

    The files go into ``run_dir``, or beside ``out`` (the HTML file's path) when it is given.
    """
    started = time.perf_counter()
    data = load_run(Path(run_dir))
    stability = _stability(data, resamples, seed)
    html_path = Path(out) if out is not None else data.root / REPORT_NAME
    html_path.parent.mkdir(parents=True, exist_ok=True)
    with open_atomic(html_path) as fh:  # streamed: a large run's page is tens of MB of figures
        for part in html_parts(data, stability):
            fh.write(part.encode("utf-8"))
    csv_path = write_results_long(data, html_path.parent / RESULTS_LONG_NAME)
    json_path = write_summary_json(data, stability, html_path.parent / SUMMARY_NAME)
    return ReportFiles(
        html=html_path,
        results_long=csv_path,
        summary=json_path,
        seconds=time.perf_counter() - started,
        bootstrap_seconds=stability.seconds if stability is not None else None,
    )


def build_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the HTML report of ``run_dir`` (default ``run_dir/report.html``) and its exports; return its path."""
    return write_report(run_dir, out).html


def _stability(data: RunView, resamples: int, seed: int) -> RankStability | None:
    if not data.institutions or data.ranking is None or resamples < 1:
        return None
    return rank_stability(data.institutions, data.method, resamples=resamples, seed=seed)
