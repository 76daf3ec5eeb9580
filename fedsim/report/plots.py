"""The report's figures as PNG bytes. matplotlib is imported here, lazily, and only through its object API.

``Figure`` + ``savefig`` renders with the Agg canvas without touching pyplot's global state or backend, so
building a report is safe in a thread, in a headless CI job and inside a process that uses matplotlib itself.
"""

from __future__ import annotations

import gc
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from fedsim.report.exports import site_means
from fedsim.report.loader import REGION_SUFFIXES
from fedsim.report.metricview import MetricView
from fedsim.report.runview import RunView
from fedsim.report.stability import RankStability

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["HEATMAP_METRICS", "HEATMAP_SITES", "distribution_png", "heatmap_pngs", "stability_png"]

#: (metric family, label, higher is better)
HEATMAP_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("Dice", "Dice", True),
    ("Hausdorff95", "Hausdorff 95 (voxels)", False),
    ("Sensitivity", "Sensitivity", True),
    ("Specificity", "Specificity", True),
    ("Precision", "Precision", True),
)
DPI = 100
#: Sites in one heatmap figure: a wider run is drawn as several figures of this many sites (same colour scale),
#: so no canvas grows past ~5,000 pixels (100 sites in one would be 23,000 wide, and 250 MB to render).
HEATMAP_SITES = 20
_SITE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig: Figure) -> bytes:
    """Render and release: the figure's artists form reference cycles, so without ``clear`` and a collection
    each figure's canvas and texts would live on until the collector happened to run, next to the next figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    fig.clear()
    gc.collect()
    return buffer.getvalue()


def _short(name: str, width: int = 16) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def heatmap_pngs(
    data: RunView,
    family: str,
    label: str,
    higher_better: bool,
    regions: tuple[str, ...] = REGION_SUFFIXES,
    max_sites: int = HEATMAP_SITES,
) -> list[bytes]:
    """Models × sites, mean per site, one panel per region, cells annotated: one figure per ``max_sites`` sites,
    all on one colour scale; empty if the run has no such metric."""
    from matplotlib import colors

    panels = []
    for region in regions:
        means = site_means(data, f"{family}_{region}")
        matrix = np.array(
            [[math.nan if means[m][s] is None else means[m][s] for s in data.sites] for m in data.models],
            dtype=float,
        ).reshape(len(data.models), len(data.sites))
        panels.append((region, matrix))
    if all(np.isnan(m).all() for _, m in panels):
        return []
    hausdorff = family == "Hausdorff95" or "hd95" in family
    if hausdorff:
        finite = [v for _, m in panels for v in m[np.isfinite(m)].ravel()]
        norm: Any = colors.SymLogNorm(linthresh=1.0, vmin=0.0, vmax=max(max(finite, default=1.0), 1.0))
    else:
        norm = colors.Normalize(vmin=0.0, vmax=1.0)
    cmap = (_cmap() if higher_better else _cmap().reversed()).with_extremes(bad="#dddddd")
    step = max(1, max_sites)
    return [
        _heatmap(panels, data.models, data.sites, slice(start, start + step), label, hausdorff, cmap, norm)
        for start in range(0, max(1, len(data.sites)), step)
    ]


def _heatmap(
    panels: Sequence[tuple[str, npt.NDArray[Any]]],
    models: Sequence[str],
    all_sites: Sequence[str],
    columns: slice,
    label: str,
    hausdorff: bool,
    cmap: Any,
    norm: Any,
) -> bytes:
    sites = list(all_sites[columns])
    n_models, n_sites = len(models), len(sites)
    fig = _figure(1.6 + len(panels) * (0.9 + 0.75 * n_sites), 1.3 + 0.42 * n_models)
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    image = None
    for ax, (region, full) in zip(axes, panels, strict=True):
        matrix = full[:, columns]
        masked = np.ma.masked_invalid(matrix)  # type: ignore[no-untyped-call]  # numpy.ma is not annotated
        image = ax.imshow(masked, cmap=cmap, norm=norm, aspect="auto")
        ax.set_title(f"{label} {region.upper()}", fontsize=10)
        ax.set_xticks(range(n_sites), [_short(s) for s in sites], rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(n_models), [_short(m, 20) for m in models], fontsize=8)
        ax.tick_params(length=0)
        for i in range(n_models):
            for j in range(n_sites):
                value = matrix[i, j]
                if math.isnan(value):
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="#555555")
                    continue
                shade = cmap(norm(value))
                luminance = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2]
                text = f"{value:.1f}" if hausdorff else f"{value:.3f}"
                ax.text(
                    j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if luminance > 0.5 else "white",
                )  # fmt: skip
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.9, pad=0.02)
    return _png(fig)


def _cmap() -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"]


def distribution_png(data: RunView, view: MetricView | None = None) -> bytes | None:
    """Per region, Dice and HD95 of every case per model (the view's families: lesion-wise Dice and NSD for
    BraTS 2025): box plots with the cases on top, coloured by site."""
    if not data.institutions:
        return None
    from fedsim.report.metricview import BRATS2021_VIEW

    view = view or BRATS2021_VIEW
    regions = view.regions
    models = list(data.ranking.algorithms) if data.ranking is not None else list(data.models)
    fig = _figure(max(9.0, 2.2 + len(regions) * (0.65 * len(models) + 0.6)), 6.4)
    axes = np.atleast_2d(fig.subplots(len(view.distribution), len(regions)))
    rng = np.random.default_rng(0)  # jitter only; fixed so reports are reproducible
    for row, (family, label, _) in enumerate(view.distribution):
        for col, region in enumerate(regions):
            ax = axes[row][col]
            key = f"{family}_{region}"
            columns = []
            for model in models:
                values = []
                for site in data.sites:
                    inst = data.institutions.get(site)
                    if inst is None:
                        continue
                    for per_case in inst.cases.values():
                        v = per_case.get(model, {}).get(key, math.nan)
                        if math.isfinite(v):
                            values.append((site, v))
                columns.append(values)
            ax.boxplot(
                [[v for _, v in c] or [math.nan] for c in columns],
                positions=range(len(models)),
                widths=0.55,
                showfliers=False,
                medianprops={"color": "black"},
                boxprops={"color": "#555555"},
                whiskerprops={"color": "#555555"},
                capprops={"color": "#555555"},
            )
            # One collection per site (its points in every model's column; the columns never overlap), drawn in
            # the order and with the jitter of one collection per site and model: the same picture, 10× fewer
            # artists on a run of many models.
            points: dict[int, tuple[list[npt.NDArray[np.float64]], list[float]]] = {}
            for x, values in enumerate(columns):
                for s_index, site in enumerate(data.sites):
                    ys = [v for s, v in values if s == site]
                    if not ys:
                        continue
                    xs_site, ys_site = points.setdefault(s_index, ([], []))
                    xs_site.append(x + rng.uniform(-0.18, 0.18, size=len(ys)))
                    ys_site.extend(ys)
            for s_index, (xs_site, ys_site) in sorted(points.items()):
                ax.scatter(
                    np.concatenate(xs_site), ys_site, s=14, alpha=0.75,
                    color=_SITE_COLOURS[s_index % len(_SITE_COLOURS)], label=data.sites[s_index],
                    zorder=3, linewidths=0,
                )  # fmt: skip
            ax.set_title(f"{label} {region.upper()}", fontsize=10)
            ax.set_xticks(range(len(models)), [_short(m) for m in models], rotation=30, ha="right", fontsize=8)
            ax.tick_params(axis="y", labelsize=8)
            ax.grid(axis="y", color="#e5e5e5")
            ax.set_axisbelow(True)
            if family != "Hausdorff95" and "hd95" not in family:
                ax.set_ylim(-0.05, 1.05)
            else:
                ax.set_yscale("symlog", linthresh=1.0)
                ax.set_ylim(0, 600)  # the penalty (374) stays visible below the frame
    handles: dict[str, Any] = {}
    for ax_row in axes:
        for ax in ax_row:
            for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(name, handle)
    if handles:
        fig.legend(
            handles.values(), handles.keys(), loc="outside upper center", ncols=min(len(handles), 8),
            fontsize=8, title="site", title_fontsize=8, frameon=False,
        )  # fmt: skip
    return _png(fig)


def stability_png(stability: RankStability) -> bytes:
    """Blob plot: per model, the share of bootstrap resamples at each rank; the observed rank marked."""
    models = list(stability.algorithms)
    n = len(models)
    fig = _figure(max(5.0, 1.8 + 1.2 * n), 1.6 + 0.5 * n)
    ax = fig.subplots()
    for x, model in enumerate(models):
        dist = stability.distribution[model]
        for r, count in dist.items():
            share = count / stability.resamples
            ax.scatter([x], [r], s=20 + 900 * share, color="#3b6ea8", alpha=0.55, linewidths=0, zorder=2)
            if share >= 0.01:
                ax.annotate(
                    f"{share:.0%}" if share >= 0.1 else f"{share:.1%}", (x, r), xytext=(8 + 16 * share**0.5, 0),
                    textcoords="offset points", ha="left", va="center", fontsize=7, color="#333333", zorder=4,
                )  # fmt: skip
        ax.scatter([x], [stability.observed_rank[model]], marker="_", s=500, color="#c0392b", linewidths=2, zorder=3)
    ax.set_xticks(range(n), [_short(m, 20) for m in models], rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(n + 0.6, 0.4)
    ax.set_yticks(range(1, n + 1))
    ax.set_ylabel("rank", fontsize=9)
    ax.grid(axis="y", color="#eeeeee")
    ax.set_axisbelow(True)
    ax.set_title(f"rank over {stability.resamples} bootstrap resamples (red: observed rank)", fontsize=9)
    return _png(fig)
