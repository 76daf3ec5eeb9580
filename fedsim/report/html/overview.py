"""The Overview section: the run in cards (sites, models, cases, jobs, failures, time, the winner) and one line."""

from __future__ import annotations

from html import escape

from fedsim.report.html.markup import section
from fedsim.report.runview import RunView

__all__ = ["overview"]


def overview(data: RunView, flagged: dict[str, tuple[int, int]]) -> str:
    failed = [j for j in data.jobs if not j.status.finished_ok]
    cases = sum(len(i.cases) for i in data.institutions.values())
    winner = data.ranking.algorithms[0] if data.ranking is not None and data.ranking.algorithms else "–"
    summary = data.summary
    cards = [
        ("benchmark", data.benchmark_name, False),
        ("sites", str(len(data.sites)), False),
        ("models", str(len(data.models)), False),
        ("cases scored", str(cases), False),
        ("jobs", str(len(data.jobs)), False),
        ("jobs not succeeded", str(len(failed)), bool(failed)),
        ("models with invalid outputs", str(len(flagged)), bool(flagged)),
        ("run time", f"{summary.duration_s or 0.0:.1f} s", False),
        ("rank 1", winner, False),
    ]
    if summary.builds:  # before "rank 1": the time images took, outside every job's duration
        broken = any(b.error for b in summary.builds)
        cards.insert(-1, ("image builds", f"{summary.build_s or 0.0:.1f} s", broken))
    html = (
        '<div class="cards">'
        + "".join(
            f'<div class="card{(" warn" if k.startswith("models with") else " bad") if bad else ""}">'
            f'<div class="v">{escape(v)}</div><div class="k">{escape(k)}</div>'
            "</div>"
            for k, v, bad in cards
        )
        + "</div>"
    )
    meta = [
        f"run <b>{escape(data.run_id)}</b>",
        f"started {escape(summary.started_at or '?')}",
        f"fedsim {escape(summary.fedsim_version or '?')}",
        f"sites: {escape(', '.join(data.sites) or '–')}",
        f"models: {escape(', '.join(data.models) or '–')}",
    ]
    if summary.interrupted:
        meta.append('<span class="status-bad">interrupted: results are partial</span>')
    return section("overview", "Overview", html + "<p>" + " · ".join(meta) + "</p>")
