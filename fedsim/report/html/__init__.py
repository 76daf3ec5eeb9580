"""The run report: one self-contained HTML file (inline CSS, plots as base64 PNG, no script, no network).

``build_report(run_dir)`` writes ``report.html``; ``write_report(run_dir)`` also writes the exports beside it
(``results_long.csv``, ``summary_report.json``) and is what ``fedsim run`` calls at the end of a run.
Every string that comes from the run (names, reasons, logs, YAML) is HTML-escaped.

One module per part of the page: :mod:`.markup` (tables, numbers, figures), :mod:`.css`, the sections
(:mod:`.overview`, :mod:`.ranking`, :mod:`.figures`, :mod:`.jobs`, :mod:`.configuration`), :mod:`.page` (the
page around them) and :mod:`.writer` (the three files).
"""

from __future__ import annotations

from fedsim.report.html.page import render_html
from fedsim.report.html.ranking import ties_footnote
from fedsim.report.html.writer import REPORT_NAME, ReportFiles, build_report, write_report

__all__ = ["REPORT_NAME", "ReportFiles", "build_report", "render_html", "ties_footnote", "write_report"]
