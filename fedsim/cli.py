"""The ``fedsim`` command line. Errors of type :class:`FedsimError` become one line and an exit code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedsim import __version__
from fedsim.errors import FedsimError

app = typer.Typer(
    help="Simulate a FeTS-style federated evaluation of segmentation containers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
run_app = typer.Typer(help="Run a benchmark over simulated sites.", no_args_is_help=True)
sites_app = typer.Typer(help="Inspect and synthesise simulated institutions.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(sites_app, name="sites")

# Off a terminal (CI logs, pipes) rich would assume 80 columns and squeeze the tables.
out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)

DEFAULT_BENCHMARK = Path("benchmarks/fets2022-task2")
RuntimeOpt = Annotated[
    str | None,
    typer.Option("--runtime", help="override every site's runtime: auto, local, docker or singularity"),
]
AllowUnsandboxedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unsandboxed",
        help="where neither Docker nor the bubblewrap sandbox can run, run submissions as plain host processes "
        "(no containment: for your own cubes only)",
    ),
]


def _version(value: bool) -> None:
    if value:
        out.print(f"fedsim {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """fedsim: will your container survive the federation?"""


@run_app.command("benchmark")
def run_benchmark_cmd(
    benchmark: Annotated[Path, typer.Argument(help="benchmark directory or benchmark.yaml")] = DEFAULT_BENCHMARK,
    sites: Annotated[
        list[Path] | None,
        typer.Option("--sites", help="site file or directory (repeatable); default: the benchmark's"),
    ] = None,
    runtime: RuntimeOpt = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="where run directories are created")] = Path("runs"),
    run_id: Annotated[str | None, typer.Option("--run-id", help="name of the run directory")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="only run these models (repeatable)")] = None,
    max_sites: Annotated[
        int | None,
        typer.Option(
            "--max-sites",
            help="jobs running at once over all sites (default: the executor's capacity: CPU slots here, the "
            "cluster's CPUs on Ray); each site also runs at most its hardware.slots",
        ),
    ] = None,
    executor_name: Annotated[
        str, typer.Option("--executor", help="where jobs run: local (this machine) or ray (a Ray cluster)")
    ] = "local",
    ray_address: Annotated[
        str, typer.Option("--ray-address", help="Ray head HOST:PORT, 'auto', or 'local' (with --executor ray)")
    ] = "auto",
    ray_shared_dir: Annotated[
        Path | None,
        typer.Option("--ray-shared-dir", help="directory every Ray node mounts at the same path (holds --runs-dir)"),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="continue an interrupted run (its id in --runs-dir); finished jobs are kept"),
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="with --resume: also rerun the jobs that failed, timed out or broke a limit, and their dependants",
        ),
    ] = False,
    allow_unsandboxed: AllowUnsandboxedOpt = False,
) -> None:
    """Run every site's data prep, every model's inference and the metrics, then rank the models."""
    from fedsim.pipeline.run import (
        RunOptions,
        check_containment,
        check_run_ids,
        prepare_run,
        resume_options,
        run_benchmark,
    )
    from fedsim.report.console import RunProgress, final_table, ranking_table, stop_on_interrupt

    if runtime is not None and runtime not in {"auto", "local", "docker", "singularity"}:
        raise typer.BadParameter("choose auto, local, docker or singularity", param_hint="--runtime")
    if executor_name not in {"local", "ray"}:
        raise typer.BadParameter("choose local or ray", param_hint="--executor")
    if retry_failed and not resume:
        raise typer.BadParameter("only together with --resume RUN_ID", param_hint="--retry-failed")
    options = RunOptions(
        benchmark=benchmark,
        sites=tuple(sites or ()),
        runtime=runtime,
        runs_dir=runs_dir,
        run_id=run_id,
        models=tuple(model or ()),
        max_sites=max_sites,
        resume=resume,
        allow_unsandboxed=allow_unsandboxed,
        retry_failed=retry_failed,
        report_writer=_write_html_report,
    )
    check_run_ids(options)  # a run id is a plain name in --runs-dir (exit 2)
    bench, site_specs, cubes = prepare_run(resume_options(options) if resume else options)  # validate first
    check_containment(site_specs, cubes, options)  # refuse unsandboxed submissions before any output
    out.print(
        f"benchmark [bold]{bench.name}[/]: {len(site_specs)} sites × {len(bench.models)} models "
        f"({', '.join(m.name for m in bench.models)})"
    )
    from fedsim.executors import Executor, make_executor

    executor: Executor | None = None
    if executor_name == "ray":
        executor = make_executor("ray", address=ray_address, shared_dir=ray_shared_dir)
    with stop_on_interrupt(err) as stop, RunProgress(out) as progress:
        report = run_benchmark(
            options,
            on_event=progress,
            on_message=lambda msg: out.print(msg, markup=False, highlight=False),
            executor=executor,
            stop_event=stop,
        )
    out.print(final_table(report))
    if report.ranking is not None:
        out.print(ranking_table(report.ranking))
    failed = [r for rs in report.results.values() for r in rs if not r.status.finished_ok]
    for r in failed:
        out.print(
            f"[yellow]{r.site}/{r.name}[/]: {r.status.value} — {escape(r.reason)}", highlight=False, soft_wrap=True
        )
    plain = [r for rs in report.results.values() for r in rs if r.kind == "infer" and r.containment == "none"]
    if plain:
        out.print(
            f"[yellow]warning[/]: {len(plain)} submission job(s) ran UNSANDBOXED as plain host processes "
            "(--allow-unsandboxed); summary.json and the report record each job's containment",
            highlight=False,
        )
    out.print(f"results: {report.run.root}  ({report.duration_s:.1f}s)")
    if report.report_html is not None:
        out.print(f"report: {report.report_html}")
    if report.interrupted:
        err.print(
            f"run interrupted; finished work is kept in {report.run.root}. Resume with: "
            f"fedsim run benchmark --resume {report.run.run_id} --runs-dir {runs_dir}",
            soft_wrap=True,
        )
        raise typer.Exit(130)


@sites_app.command("list")
def sites_list(
    sites: Annotated[list[Path] | None, typer.Argument(help="site files or directories")] = None,
) -> None:
    """Show the simulated institutions: data, runtime and hardware."""
    from fedsim.pipeline.sitedata import needs_synthesis, site_data_dir
    from fedsim.spec import load_sites

    specs = load_sites(list(sites or [Path("sites")]))
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


@sites_app.command("synthesize")
def sites_synthesize(
    sites: Annotated[list[Path] | None, typer.Argument(help="site files or directories")] = None,
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

    for s in load_sites(list(sites or [Path("sites")])):
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


@app.command("rank")
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


# Command groups that live beside their feature: each module exposes ``register(app)`` and imports its heavy
# dependencies inside the command functions, so ``fedsim --help`` stays fast. One line per feature below.
# --- feature commands ---
def _register_features() -> None:
    from fedsim.report.cli import register as register_report
    from fedsim.stress.cli import register as register_stress
    from fedsim.submission.cli import register as register_submission

    for register in (register_submission, register_report, register_stress):
        register(app)


_register_features()
# --- end feature commands ---


def _usage_error_types() -> tuple[type[Exception], ...]:
    """click's usage errors: recent typer versions vendor their own click, so accept both families."""
    import click

    vendored = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    return tuple({click.ClickException, vendored})


_USAGE_ERRORS = _usage_error_types()


def _write_html_report(run_dir: Path) -> Path:
    """The end of every run: ``report.html`` and its exports (the pipeline calls it; it never imports report)."""
    from fedsim.report.html import write_report

    return write_report(run_dir).html


def main(argv: list[str] | None = None) -> None:
    """Console entry point: turn fedsim's own errors into one line and a non-zero exit."""
    try:
        rc = app(args=argv, standalone_mode=False)  # click returns an Exit's code instead of raising it
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except FedsimError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except _USAGE_ERRORS as exc:
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
