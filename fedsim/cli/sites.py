"""``fedsim sites list`` and ``fedsim sites synthesize``: the simulated institutions and their data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fedsim.bundled import SITES as BUNDLED_SITES
from fedsim.cli.output import out

__all__ = ["register"]


def sites_list(
    sites: Annotated[
        list[Path] | None, typer.Argument(help="site files or directories; default: the bundled sites")
    ] = None,
) -> None:
    """Show the simulated institutions: data, runtime and hardware."""
    from fedsim.pipeline.sitedata import needs_synthesis, site_data_dir
    from fedsim.spec import load_sites

    specs = load_sites(list(sites or [BUNDLED_SITES]))
    table = Table()
    for col in ("site", "runtime", "GPUs", "GPU mem", "RAM", "CPUs", "data", "shift"):
        table.add_column(col)
    for s in specs:
        hw = s.hardware
        synth = s.data.synthesize
        state = "to synthesise" if needs_synthesis(s) else "ready"
        shift = ""
        if synth is not None:
            d = synth.shift.model_dump()
            shift = ", ".join(f"{k}={v:g}" for k, v in d.items() if v != type(synth.shift)().model_dump()[k])
        table.add_row(
            s.name,
            s.runtime,
            str(hw.gpus),
            f"{hw.gpu_memory_gb:g} GB",
            f"{hw.ram_gb:g} GB",
            str(hw.cpus),
            f"{site_data_dir(s)} ({state})",
            shift or "-",
        )
    out.print(table)


def sites_synthesize(
    sites: Annotated[
        list[Path] | None, typer.Argument(help="site files or directories; default: the bundled sites")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="write raw cases here (one folder per site) instead of the cache"),
    ] = None,
    cases: Annotated[int | None, typer.Option("--cases", min=1, help="override the number of cases")] = None,
) -> None:
    """Create the synthetic raw data of sites (cached; rerunning reuses it)."""
    from fedsim.pipeline.sitedata import ensure_site_data
    from fedsim.spec import load_sites
    from fedsim.spec.models import SiteDataSpec

    for s in load_sites(list(sites or [BUNDLED_SITES])):
        if s.data.synthesize is None:
            out.print(f"{s.name}: real data at {s.data.path}, nothing to synthesise")
            continue
        synth = s.data.synthesize
        if cases is not None:
            synth = synth.model_copy(update={"cases": cases})
        path = (out_dir / s.name).resolve() if out_dir is not None else s.data.path
        s = s.model_copy(update={"data": SiteDataSpec(path=path, synthesize=synth)})
        out.print(f"{s.name}: {synth.cases} cases {tuple(synth.shape)} ...", end=" ")
        directory = ensure_site_data(s)
        out.print(f"{directory}")


def register(app: typer.Typer) -> None:
    sites_app = typer.Typer(help="Inspect and synthesise simulated institutions.", no_args_is_help=True)
    sites_app.command("list")(sites_list)
    sites_app.command("synthesize")(sites_synthesize)
    app.add_typer(sites_app, name="sites")
