"""Robustness curves (Dice vs severity: one panel per shift, one line per region, a line style per model)
and the stress test's HTML fragment for the run report. matplotlib is imported lazily, with the Agg backend.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedsim.stress.results import StressResults, results_from_dict

REGION_COLOURS = {"ET": "#d62728", "TC": "#1f77b4", "WT": "#2ca02c"}
MODEL_STYLES = ("-", "--", ":", "-.")
MODEL_MARKERS = ("o", "s", "^", "D", "v", "P")


def _results(results: StressResults | Mapping[str, Any]) -> StressResults:
    return results if isinstance(results, StressResults) else results_from_dict(dict(results))


def curve_points(results: StressResults, model: str, shift: str, region: str) -> list[tuple[int, float]]:
    """``(level, mean Dice)`` of one curve; level 0 is the unshifted set."""
    points: list[tuple[int, float]] = []
    for level in results.levels:
        s = results.set_result(model, shift, level)
        if s is not None and region in s.regions:
            points.append((level, s.regions[region].mean_dice))
    return points


def render_png(results: StressResults | Mapping[str, Any], dpi: int = 110) -> bytes:
    """The curves as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    res = _results(results)
    n = max(1, len(res.shifts))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.1 * rows + 0.5), squeeze=False, sharey=True)
    try:
        for i, shift in enumerate(res.shifts):
            ax = axes[i // cols][i % cols]
            for m_i, model in enumerate(res.models):
                for region in res.regions:
                    pts = curve_points(res, model, shift, region)
                    if not pts:
                        continue
                    xs, ys = zip(*pts, strict=True)
                    label = region if len(res.models) == 1 else f"{model} {region}"
                    ax.plot(
                        xs,
                        ys,
                        MODEL_STYLES[m_i % len(MODEL_STYLES)],
                        marker=MODEL_MARKERS[m_i % len(MODEL_MARKERS)],
                        markersize=4,
                        color=REGION_COLOURS.get(region),
                        label=label,
                    )
                for level in res.levels:  # failed jobs / invalid outputs: a red cross on the axis
                    s = res.set_result(model, shift, level)
                    if s is not None and s.failed:
                        ax.plot([level], [0.0], "x", color="black", markersize=7, clip_on=False)
            ax.set_title(shift, fontsize=10)
            ax.set_xticks(res.levels)
            ax.set_xticklabels([str(lv) for lv in res.levels], fontsize=8)
            ax.set_xlabel("severity level", fontsize=8)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            if i % cols == 0:
                ax.set_ylabel("mean Dice", fontsize=9)
        for j in range(n, rows * cols):
            axes[j // cols][j % cols].axis("off")
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
        fig.suptitle(f"Robustness curves ({res.metric_set}; × = failed job or invalid output)", fontsize=10)
        fig.tight_layout(rect=(0, 0.08, 1, 0.95))
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
        return buf.getvalue()
    finally:
        plt.close(fig)


def write_curves(results: StressResults, path: Path) -> Path:
    from fedsim.store.atomic import write_bytes_atomic

    write_bytes_atomic(path, render_png(results))
    return path


def _num(v: float | None, fmt: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, fmt)


def stress_report_section(results: StressResults | Mapping[str, Any]) -> str:
    """An HTML fragment (``<section>``) with the summary table, the per-set table and the curves as base64 PNG.

    Takes the results or the parsed ``stress.json``; the HTML report can include it as is.
    """
    res = _results(results)
    e = html.escape
    png = base64.b64encode(render_png(res)).decode("ascii")
    parts = [
        '<section class="fedsim-stress">',
        "<h2>Stress test</h2>",
        f"<p>{e(res.data)}; shifts {e(', '.join(res.shifts))} at levels {e(', '.join(map(str, res.levels)))}; "
        f"metric set {e(res.metric_set)}; runtime {e(res.runtime)}. Robustness = mean Dice over all shifted sets "
        "/ unshifted mean Dice; WT drop = first level whose WT Dice falls more than 0.1 below unshifted.</p>",
        "<table><thead><tr><th>model</th><th>unshifted Dice</th><th>shifted Dice</th><th>robustness</th>"
        "<th>worst shift</th>"
        + "".join(f"<th>{e(s)}: robustness / WT drop</th>" for s in res.shifts)
        + "<th>failures</th></tr></thead><tbody>",
    ]
    for m in res.summaries.values():
        cells = "".join(
            f"<td>{_num(ps.robustness)} / {e(str(ps.wt_drop_level) if ps.wt_drop_level is not None else '–')}</td>"
            for ps in (m.per_shift[s] for s in res.shifts)
        )
        parts.append(
            f"<tr><td>{e(m.model)}</td><td>{_num(m.unshifted_dice)}</td><td>{_num(m.shifted_dice)}</td>"
            f"<td>{_num(m.robustness)}</td><td>{e(m.worst_shift or '–')}</td>{cells}<td>{m.failures}</td></tr>"
        )
    parts.append("</tbody></table>")
    parts.append(
        f'<img alt="Robustness curves: mean Dice per region versus severity, one panel per shift" '
        f'src="data:image/png;base64,{png}">'
    )
    parts.append(
        "<details><summary>per set</summary><table><thead><tr><th>model</th><th>shift</th><th>level</th>"
        "<th>parameter</th>"
        + "".join(f"<th>Dice {e(r)} mean (worst)</th>" for r in res.regions)
        + "".join(f"<th>HD95 {e(r)} mean (worst)</th>" for r in res.regions)
        + "<th>status</th></tr></thead><tbody>"
    )
    for s in res.sets:
        dice = "".join(
            f"<td>{_num(s.regions[r].mean_dice)} ({_num(s.regions[r].worst_dice)})</td>"
            if r in s.regions
            else "<td>–</td>"
            for r in res.regions
        )
        hd = "".join(
            f"<td>{_num(s.regions[r].mean_hd95, '.1f')} ({_num(s.regions[r].worst_hd95, '.1f')})</td>"
            if r in s.regions
            else "<td>–</td>"
            for r in res.regions
        )
        status = s.status if not s.invalid_cases else f"{len(s.invalid_cases)} invalid output(s)"
        title = f' title="{e(s.reason)}"' if s.reason else ""
        parts.append(
            f"<tr><td>{e(s.model)}</td><td>{e(s.shift)}</td><td>{s.level}</td><td>{e(s.parameter)}</td>"
            f"{dice}{hd}<td{title}>{e(status)}</td></tr>"
        )
    parts.append("</tbody></table></details></section>")
    return "\n".join(parts)
