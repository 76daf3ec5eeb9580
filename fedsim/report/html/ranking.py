"""The Ranking section: the final ranking with each site's score, ties, invalid predictions, the significance
counts and, when bootstrapped, the ranking's stability (table and blob plot)."""

from __future__ import annotations

from html import escape

from fedsim.report.html.figures import metric_view
from fedsim.report.html.markup import NUM, flag, img, num, section, table
from fedsim.report.runview import RunView
from fedsim.report.stability import RankStability

__all__ = ["PROBLEM_ROWS", "output_problems", "ranking", "ties_footnote"]

PROBLEM_ROWS = 200
"""Invalid predictions listed in the HTML (``summary_report.json`` lists them all)."""


def output_problems(data: RunView) -> str:
    """Every invalid prediction of a succeeded infer (what check-submission would reject), scored as written."""
    rows = [
        [escape(j.model or j.name), escape(j.site), escape(case), escape("; ".join(found))]
        for j in data.jobs
        for case, found in j.output_problems.items()
    ]
    if not rows:
        return ""
    more = len(rows) - PROBLEM_ROWS
    note = f'<p class="muted">… and {more} more (summary_report.json lists them all).</p>' if more > 0 else ""
    return (
        f"<h3>Invalid predictions ({len(rows)} cases)</h3>"
        "<p>These models' jobs succeeded, but some predictions are not what the federation accepts (one "
        "<code>&lt;case&gt;.nii.gz</code> per case on the input's grid, integer labels in {0, 1, 2, 4}; "
        "<code>fedsim check-submission</code> runs the same checks). They are scored as the metrics cube "
        "computed them: a missing or unreadable one with the penalty row, non-label values matching no region.</p>"
        + table(["model", "site", "case", "problem"], rows[:PROBLEM_ROWS])
        + note
    )


def ties_footnote(final_rank: dict[str, float]) -> str:
    """A footnote under a ranking with tied models (rank 1.5, or two models at 3): averaged ranks, as challengeR."""
    from fedsim.report.ties import ties_note

    note = ties_note(final_rank)
    return f'<p class="muted ties">Ties: {escape(note)}.</p>' if note else ""


def ranking(data: RunView, stability: RankStability | None, flagged: dict[str, tuple[int, int]]) -> str:
    r = data.ranking
    problems = output_problems(data)
    if r is None:
        empty = '<p class="muted">No metrics were produced, nothing to rank.</p>'
        return section("ranking", "Ranking", empty + problems)
    flagged_at = {(j.model or j.name, j.site) for j in data.jobs if j.output_problems}
    header = ["rank", "model", "final score", *[f"score {i}" for i in r.institutions], "significant wins"]

    def site_score(i: str, a: str) -> str:
        cell = num(r.institution_scores[i][a])
        return cell + (
            ' <span class="flag" title="invalid outputs at this site">⚠</span>' if (a, i) in flagged_at else ""
        )

    rows = [
        [
            num(r.final_rank[a], "{:g}"),
            f"<b>{escape(a)}</b>"
            + (flag(*flagged[a], "invalid predictions, scored as written: see below") if a in flagged else ""),
            num(r.final_score[a]),
            *[site_score(i, a) for i in r.institutions],
            num(r.significant_wins[a], "{:d}"),
        ]
        for a in r.algorithms
    ]
    classes = ["flagged" if a in flagged else "" for a in r.algorithms]
    body = [
        f"<p>Method <b>{escape(r.method)}</b> (challengeR semantics): {escape(metric_view(data).ranking)}, the "
        "final score the mean over sites (lower is better). Significance: one-sided Wilcoxon signed-rank, "
        "Holm-adjusted, p ≤ 0.05, counted over sub-rankings and sites.</p>",
        table(header, rows, classes),
        ties_footnote(r.final_rank),
        problems,
        "<h3>Significance counts (row model significantly better than column model)</h3>",
        table(
            ["", *r.algorithms],
            [[f"<b>{escape(a)}</b>", *[num(r.significant[a][b], "{:d}") for b in r.algorithms]] for a in r.algorithms],
        ),
    ]
    if stability is not None:
        body += _stability(stability)
    return section("ranking", "Final ranking", "\n".join(body))


def _stability(stability: RankStability) -> list[str]:
    from fedsim.report import plots

    rows = []
    for a in stability.algorithms:
        keep = stability.keep_rate[a]
        low, high = stability.rank_interval[a]
        dist = ", ".join(
            f"{rank_value:g}: {count / stability.resamples:.1%}"
            for rank_value, count in sorted(stability.distribution[a].items())
        )
        rows.append(
            [
                f"<b>{escape(a)}</b>",
                num(stability.observed_rank[a], "{:g}"),
                NUM + f'<span class="bar" style="width:{round(keep * 80)}px"></span>{keep:.1%}',
                num(stability.mean_rank[a], "{:.2f}"),
                NUM + escape(f"{low:g} – {high:g}"),
                escape(dist),
            ]
        )
    return [
        f"<h3>Ranking stability ({stability.resamples} bootstrap resamples of the cases within each site, "
        f"seed {stability.seed}, {stability.seconds:.2f} s)</h3>",
        table(["model", "observed rank", "keeps its rank", "mean rank", "95% interval", "distribution"], rows),
        img(plots.stability_png(stability), "rank stability blob plot",
            "Circle area: share of resamples in which the model got that rank."),
    ]  # fmt: skip
