"""``fedsim runs list`` and ``fedsim runs show ID``: the run history of a ``--runs-dir`` (fedsim.report.history)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from fedsim.report.ties import TIES_RULE

__all__ = ["register", "render_detail", "render_list"]

RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", metavar="DIR", help="where the run directories are")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON on stdout instead of tables")]

STATE_STYLE = {
    "completed": "green",
    "running": "cyan",
    "interrupted": "yellow",
    "aborted": "red",
    "no result": "red",
}


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _jobs(info: Any) -> str:
    text = f"{info.jobs_ok}/{info.jobs_failed}"
    if info.jobs_skipped:
        text += f" (+{info.jobs_skipped} skipped)"
    return text


def render_list(infos: list[Any], runs_dir: Path) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"runs in {runs_dir}")
    for col in ("run id", "benchmark", "start", "duration", "state", "jobs ok/failed"):
        table.add_column(col, justify="right" if col in ("duration", "jobs ok/failed") else "left")
    for i in infos:
        state = i.state + (f" ({i.segments} segments)" if i.segments > 1 else "")
        table.add_row(
            i.run_id,
            i.benchmark or "-",
            _when(i.started),
            _duration(i.duration_s),
            Text(state, style=STATE_STYLE.get(i.state, "")),
            _jobs(i),
        )
    return table


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render_detail(detail: Any) -> list[Any]:
    """The renderables of ``fedsim runs show``: a head line, the site table, the ranking, the failures."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    info = detail.info
    head = Text.assemble(
        ("run ", ""),
        (info.run_id, "bold"),
        f" · {info.benchmark or '?'} · started {_when(info.started)} · {_duration(info.duration_s)} · ",
        (info.state, STATE_STYLE.get(info.state, "")),
        f" · jobs ok/failed {_jobs(info)} of {info.jobs_total} · {info.path}",
    )
    parts: list[Any] = [head]
    sites = Table(title="per site and model (mean over the site's cases)")
    for col in ("site", "model", "status", "cases", "Dice ET", "Dice TC", "Dice WT", "HD95 WT", "infer time"):
        sites.add_column(col, justify="left" if col in ("site", "model", "status") else "right")
    for r in detail.rows:
        ok = r["status"] == "succeeded"
        sites.add_row(
            r["site"],
            r["model"],
            Text(r["status"], style="green" if ok else "red"),
            str(r["cases"]),
            _f(r["dice_et"], ".3f"),
            _f(r["dice_tc"], ".3f"),
            _f(r["dice_wt"], ".3f"),
            _f(r["hd95_wt"], ".1f"),
            _f(r["infer_s"], ".1f") + ("s" if r["infer_s"] is not None else ""),
        )
    parts.append(sites)
    ranking = detail.ranking
    if ranking is None:
        parts.append(Text("no ranking: the run produced no metrics to rank", style="yellow"))
    else:
        table = Table(title=f"ranking ({ranking['method']})")
        table.add_column("rank", justify="right")
        table.add_column("model")
        table.add_column("score", justify="right")
        site_names = list(ranking["models"][0]["site_scores"]) if ranking["models"] else []
        for name in site_names:
            table.add_column(name, justify="right")
        for m in ranking["models"]:
            table.add_row(
                _f(m["rank"], "g"),
                str(m["model"]),
                _f(m["score"], ".3f"),
                *[_f(m["site_scores"].get(n), ".2f") for n in site_names],
            )
        parts.append(table)
        if ranking["ties"]:
            parts.append(Text(f"ranks like 1.5: {TIES_RULE}", style="dim"))
    if detail.failures:
        parts.append(Text(f"failures ({len(detail.failures)}):", style="bold"))
        for f in detail.failures:
            parts.append(
                Text.from_markup(
                    f"  [yellow]{escape(str(f['site']))}/{escape(str(f['job']))}[/]: {escape(str(f['status']))} — "
                    f"{escape(str(f['reason']))}"
                )
            )
    return parts


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 150, highlight=False, soft_wrap=True)


def runs_list(runs_dir: RunsDirOpt = Path("runs"), json_out: JsonOpt = False) -> None:
    """List the runs in --runs-dir: id, benchmark, start, duration, state and jobs ok/failed."""
    from fedsim.report.history import list_runs
    from fedsim.report.jsonout import emit_json

    infos = list_runs(runs_dir)
    if json_out:
        emit_json({"runs_dir": str(runs_dir), "runs": [i.to_dict() for i in infos]})
        return
    console = _console()
    if not infos:
        console.print(f"no runs in {runs_dir} (fedsim run benchmark writes them there)")
        return
    console.print(render_list(infos, runs_dir))


def runs_show(
    run_id: Annotated[str, typer.Argument(metavar="ID", help="a run id in --runs-dir (see fedsim runs list)")],
    runs_dir: RunsDirOpt = Path("runs"),
    json_out: JsonOpt = False,
) -> None:
    """Show one run: per-site results, the ranking and the failures."""
    from fedsim.report.history import show_run
    from fedsim.report.jsonout import emit_json

    detail = show_run(runs_dir, run_id)
    if json_out:
        emit_json(detail.to_dict())
        return
    console = _console()
    for part in render_detail(detail):
        console.print(part)


def register(app: typer.Typer) -> None:
    runs_app = typer.Typer(help="List and show past runs (their directories and ledgers).", no_args_is_help=True)
    runs_app.command("list")(runs_list)
    runs_app.command("show")(runs_show)
    app.add_typer(runs_app, name="runs")
