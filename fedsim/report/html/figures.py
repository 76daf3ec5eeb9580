"""The Heatmaps and Distributions sections: per-site means of every metric family, per-case values per region."""

from __future__ import annotations

from collections.abc import Iterator
from html import escape

from fedsim.report.exports import metric_keys
from fedsim.report.html.markup import SECTION_END, img, section, section_start
from fedsim.report.metricview import MetricView, view_for_keys
from fedsim.report.runview import RunView

__all__ = ["distributions", "heatmaps", "metric_view"]


def metric_view(data: RunView) -> MetricView:
    """What the run's metrics cube wrote decides the families and regions drawn (FeTS or BraTS 2025)."""
    return view_for_keys(metric_keys(data))


def heatmaps(data: RunView, flagged: dict[str, tuple[int, int]]) -> Iterator[str]:
    """The section in parts, one figure at a time: a run of 100 sites has 25 of them (a few MB each as text), so
    the writer never holds them all."""
    if not data.institutions:
        yield section("heatmaps", "Heatmaps", '<p class="muted">No metrics.</p>')
        return
    from fedsim.report import plots

    view = metric_view(data)
    intro = (
        "<p>Mean per site of each metric, models × sites. Failed models carry the penalty values "
        f"({escape(view.penalty)}); NA values (e.g. precision with an empty prediction) are left out of the mean; "
        "grey cells have no value at all.</p>"
    )
    if flagged:
        intro += (
            f'<p><span class="flag">⚠ invalid outputs</span> {escape(", ".join(flagged))}: some predictions are '
            'invalid and scored as written (see <a href="#ranking">Ranking</a>).</p>'
        )
    yield section_start("heatmaps", "Heatmaps per metric") + intro
    first_figure = True
    for family, label, higher in view.families:
        pngs = plots.heatmap_pngs(data, family, label, higher, view.regions)
        better = "higher" if higher else "lower"
        for part, png in enumerate(pngs):
            first = part * plots.HEATMAP_SITES
            sites = (
                f", sites {first + 1}–{min(first + plots.HEATMAP_SITES, len(data.sites))} of {len(data.sites)}"
                if len(pngs) > 1
                else ""
            )
            caption = f"{label}: mean over each site's cases ({better} is better{sites})."
            yield ("" if first_figure else "\n") + img(png, f"heatmap {label}", caption)
            first_figure = False
        del pngs
    yield SECTION_END


def distributions(data: RunView) -> str:
    from fedsim.report import plots

    view = metric_view(data)
    png = plots.distribution_png(data, view)
    if png is None:
        return section("distributions", "Distributions", '<p class="muted">No metrics.</p>')
    return section(
        "distributions",
        "Per-region distributions",
        img(png, " and ".join(label for _, label, _ in view.distribution) + " per region and model",
            "Each dot is one case, coloured by site; boxes show quartiles over all sites"
            + (" (HD95 on a symlog axis)." if view.name == "brats2021" else ".")),
    )  # fmt: skip
