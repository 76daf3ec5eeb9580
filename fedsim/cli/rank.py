"""``fedsim rank DIR``: rank algorithms over institutions' result files, as the FeTS organisers did."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedsim.cli.output import out

__all__ = ["register"]


def rank_cmd(
    directory: Annotated[Path, typer.Argument(help="directory with one <institution>.yaml per site")],
    method: Annotated[str, typer.Option("--method", help="ranking method")] = "rankThenMean",
    output: Annotated[Path | None, typer.Option("--out", help="CSV output directory (default: DIR/ranking)")] = None,
) -> None:
    """Rank algorithms over institutions with challengeR's semantics (as FeTS did) and write CSVs."""
    from fedsim.ranking import METHODS, load_institutions, rank, write_csvs
    from fedsim.report.console import ranking_table

    if method not in METHODS:
        raise typer.BadParameter(f"choose one of {', '.join(METHODS)}", param_hint="--method")
    result = rank(load_institutions(directory), method=method)
    out.print(ranking_table(result))
    for path in write_csvs(result, output or directory / "ranking"):
        out.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("rank")(rank_cmd)
