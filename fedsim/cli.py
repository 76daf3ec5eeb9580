"""The ``fedsim`` command line. Errors of type :class:`FedsimError` become one line and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from fedsim import __version__
from fedsim.bundled import BENCHMARK as BUNDLED_BENCHMARK
from fedsim.bundled import SITES as BUNDLED_SITES
from fedsim.errors import FedsimError
from fedsim.report.jsonout import emit_json, json_on_stdout
from fedsim.serve.cli import ServeOpt
from fedsim.submission.cli import OfflineOpt, use_offline

if TYPE_CHECKING:
    from fedsim.runtimes.policy import ContainmentOptions

EXIT_CODES = (
    "Exit codes: 0 the command did its work (a run completed, even if some models failed: that is a result; a "
    "check passed) · 1 an error fedsim could not get past, a run that produced no result at all (every site's "
    "data prep failed), or a check that FAILed · 2 a configuration file, option or run id is wrong (one line "
    "naming the file, the field and the fix) · 130 interrupted (Ctrl-C; finished work stays on disk)."
)
# `fedsim --help` lists the commands in the order people use them (click would sort them: rank first)
COMMAND_ORDER = ("run", "sites", "check-submission", "dry-run", "report", "runs", "rank", "score", "stress", "serve")


class _UsageOrder(TyperGroup):
    """The top-level group: its commands in :data:`COMMAND_ORDER`, any other after them as registered."""

    def list_commands(self, ctx: Any) -> list[str]:  # typer's vendored click Context
        names = list(self.commands)
        return sorted(names, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else len(COMMAND_ORDER))


app = typer.Typer(
    cls=_UsageOrder,
    help="Simulate a FeTS-style federated evaluation of segmentation containers.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # subcommands inherit it
)
run_app = typer.Typer(help="Run a benchmark over simulated sites.", no_args_is_help=True)
sites_app = typer.Typer(help="Inspect and synthesise simulated institutions.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(sites_app, name="sites")


def _clean_help_types() -> None:
    """Plain metavars in every command's help: typer 0.2x prints a Python type beside each option (``<bool>``
    for flags, ``<list[Path]>`` for repeatable ones); show nothing for a flag and ``PATH``, ``TEXT``, ``N``,
    ``NUMBER`` (or the option's own metavar) for a value. Leaves any other typer as it is."""
    import re

    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:
        return
    names = {"path": "PATH", "str": "TEXT", "int": "N", "float": "NUMBER", "bool": "", "file": "FILE"}

    def clean(original: Any) -> Callable[[Any, Any], str | None]:
        def display(self: object, ctx: object) -> str | None:
            if getattr(self, "is_flag", False):
                return None
            shown = original(self, ctx)
            if not isinstance(shown, str):
                return None
            match = re.fullmatch(r"<(?:list\[)?([A-Za-z]+)(?: range)?\]?>(\.\.\.)?", shown)
            if match is None:
                return shown
            return names.get(match.group(1).lower(), match.group(1).upper()) + (match.group(2) or "")

        return display

    for cls in (TyperOption, TyperArgument):
        original = getattr(cls, "display_type_rich", None)
        if original is not None and not getattr(original, "_fedsim", False):
            patched = clean(original)
            patched._fedsim = True  # type: ignore[attr-defined]
            cls.display_type_rich = patched  # type: ignore[method-assign,assignment]  # a patch of typer's method


_clean_help_types()

# Off a terminal (CI logs, pipes) rich would assume 80 columns and squeeze the tables.
out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)

DEFAULT_BENCHMARK = BUNDLED_BENCHMARK  # package data: works from any directory after `pip install`
RuntimeOpt = Annotated[
    str | None,
    typer.Option("--runtime", help="override every site's runtime: auto, local, docker or singularity"),
]
JobsOpt = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        "-j",
        min=1,
        metavar="N",
        help="jobs running at once over all sites (default: the executor's capacity: CPU slots here, the "
        "cluster's CPUs on Ray); each site also runs at most its hardware.slots",
    ),
]
GpusOpt = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        metavar="LIST",
        help="the GPUs jobs may use, e.g. 0,1 (NVML indices or UUIDs; 'none' for none); default: "
        "CUDA_VISIBLE_DEVICES, else every GPU",
    ),
]
AllowUnsandboxedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unsandboxed",
        help="where neither Docker nor the bubblewrap sandbox can run, run submissions as plain host processes "
        "(no containment: for your own cubes only)",
    ),
]


def containment_options(allow_unsandboxed: bool, *, as_sites: bool = False) -> ContainmentOptions:
    """What ``--allow-unsandboxed`` (and the command: ``as_sites`` for the checks) tells the containment policy."""
    from fedsim.runtimes.policy import ContainmentOptions

    return ContainmentOptions(allow_unsandboxed=allow_unsandboxed, as_sites=as_sites)


def _decryption_keys(values: list[str]) -> tuple[tuple[str, Path], ...]:
    """``--decryption-key MODEL=FILE`` pairs; the file must exist (its content is read by gpg only)."""
    pairs: list[tuple[str, Path]] = []
    for value in values:
        model, sep, file = value.partition("=")
        if not sep or not model or not file:
            raise typer.BadParameter(f"{value!r}: write MODEL=FILE", param_hint="--decryption-key")
        path = Path(file).expanduser()
        if not path.is_file():
            raise typer.BadParameter(f"{model}: no key file {path}", param_hint="--decryption-key")
        pairs.append((model, path.resolve()))
    return tuple(pairs)


def _select_gpus(spec: str | None) -> None:
    """``--gpus``: every local executor of this process then places and guards jobs on those GPUs only."""
    from fedsim.guard.nvml import select_gpus

    select_gpus(spec)  # a SpecError (exit 2) names an unknown GPU


def _summary_json(report: object, exit_code: int) -> dict[str, object]:
    """``run benchmark --json``: summary.json as written, with where the files are, the ranking and the exit code."""
    import json

    run = report.run  # type: ignore[attr-defined]
    try:
        summary: dict[str, object] = json.loads(run.summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {"run_id": run.run_id}
    ranking = report.ranking  # type: ignore[attr-defined]
    html = report.report_html  # type: ignore[attr-defined]
    summary.update(
        run_dir=str(run.root),
        report_html=str(html) if html is not None else None,
        exit_code=exit_code,
        ranking=None
        if ranking is None
        else {
            "method": ranking.method,
            "models": [
                {"model": a, "rank": ranking.final_rank[a], "score": ranking.final_score[a]}
                for a in sorted(ranking.algorithms, key=lambda a: (ranking.final_rank[a], a))
            ],
        },
    )
    return summary


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


@run_app.command("benchmark", epilog=EXIT_CODES)
@json_on_stdout("json_summary")
def run_benchmark_cmd(
    benchmark: Annotated[
        Path,
        typer.Argument(
            help="benchmark directory or benchmark.yaml; default: the bundled fets2022-task2", show_default=False
        ),
    ] = DEFAULT_BENCHMARK,
    sites: Annotated[
        list[Path] | None,
        typer.Option("--sites", help="site file or directory (repeatable); default: the benchmark's"),
    ] = None,
    runtime: RuntimeOpt = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="where run directories are created")] = Path("runs"),
    run_id: Annotated[str | None, typer.Option("--run-id", help="name of the run directory")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="only run these models (repeatable)")] = None,
    jobs: JobsOpt = None,
    max_sites: Annotated[int | None, typer.Option("--max-sites", min=1, hidden=True, help="old name of --jobs")] = None,
    gpus: GpusOpt = None,
    json_summary: Annotated[
        bool, typer.Option("--json", help="print the run's summary as JSON on stdout (everything else on stderr)")
    ] = False,
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
    unsandboxed: AllowUnsandboxedOpt = False,
    decryption_key: Annotated[
        list[str] | None,
        typer.Option(
            "--decryption-key",
            metavar="MODEL=FILE",
            help="the gpg passphrase file of an encrypted model image (repeatable); the benchmark's "
            "decryption_key wins",
        ),
    ] = None,
    serve: ServeOpt = None,
    offline: OfflineOpt = False,
) -> None:
    """Run every site's data prep, every model's inference and the metrics, then rank the models."""
    from fedsim.pipeline.observer import Fanout
    from fedsim.pipeline.run import RunOptions, prepare, run_benchmark
    from fedsim.report.console import RunProgress, final_table, model_warnings, ranking_table, stop_on_interrupt

    if runtime is not None and runtime not in {"auto", "local", "docker", "singularity"}:
        raise typer.BadParameter("choose auto, local, docker or singularity", param_hint="--runtime")
    if executor_name not in {"local", "ray"}:
        raise typer.BadParameter("choose local or ray", param_hint="--executor")
    if retry_failed and not resume:
        raise typer.BadParameter("only together with --resume RUN_ID", param_hint="--retry-failed")
    if gpus is not None and executor_name == "ray":
        raise typer.BadParameter(
            "Ray places jobs on its nodes' GPUs; --gpus is for --executor local", param_hint="--gpus"
        )
    _select_gpus(gpus)
    use_offline(offline)
    options = RunOptions(
        benchmark=benchmark,
        sites=tuple(sites or ()),
        runtime=runtime,
        runs_dir=runs_dir,
        run_id=run_id,
        models=tuple(model or ()),
        max_sites=jobs or max_sites,
        resume=resume,
        containment=containment_options(unsandboxed),
        retry_failed=retry_failed,
        report_writer=_write_html_report,
        decryption_keys=_decryption_keys(decryption_key or []),
    )
    # every check before any output (run id, resume, specs, cubes, unsandboxed submissions refused), once
    prepared = prepare(options)
    bench = prepared.benchmark
    if prepared.note is not None:  # fedsim's own bundled cubes, where no sandbox can start: said once
        out.print(f"[yellow]note[/]: {escape(prepared.note)}", highlight=False, soft_wrap=True)
    out.print(
        f"benchmark [bold]{bench.name}[/]: {len(prepared.sites)} sites × {len(bench.models)} models "
        f"({', '.join(m.name for m in bench.models)})"
    )
    from fedsim.executors import Executor, make_executor

    executor: Executor | None = None
    if executor_name == "ray":
        executor = make_executor("ray", address=ray_address, shared_dir=ray_shared_dir)
    from fedsim.serve.cli import keep_serving, serve_during
    from fedsim.serve.live import RunFeed

    feed = RunFeed()  # the build phase for the live view (--serve), which the ledger does not hold

    def say(line: str) -> None:
        out.print(line, markup=False, highlight=False)

    served = serve_during(serve, runs_dir, say, feed.boards)
    with stop_on_interrupt(err) as stop, RunProgress(out) as progress:
        report = run_benchmark(prepared, Fanout(progress, feed), executor=executor, stop_event=stop)
    out.print(final_table(report))
    if report.ranking is not None:
        out.print(ranking_table(report.ranking))
    failed = [r for rs in report.results.values() for r in rs if not r.status.finished_ok]
    from fedsim.pipeline.sanity import sanity_problems

    problems = sanity_problems(report.run, failed)  # with the site's own case names, as its operator sees them
    for r in failed:
        out.print(
            f"[yellow]{r.site}/{r.name}[/]: {r.status.value} — {escape(r.reason)}", highlight=False, soft_wrap=True
        )
        for problem in problems.get(r.site, []) if r.kind == "sanity_check" else []:
            out.print(f"  {r.site}: {problem}", markup=False, highlight=False, soft_wrap=True)
    plain = [r for rs in report.results.values() for r in rs if r.kind == "infer" and r.containment == "none"]
    if plain and unsandboxed:  # without it, only bundled cubes run so (the note above)
        out.print(
            f"[yellow]warning[/]: {len(plain)} submission job(s) ran UNSANDBOXED as plain host processes "
            "(--allow-unsandboxed); summary.json and the report record each job's containment",
            highlight=False,
        )
    from fedsim.report.progress_view import build_summary_line

    if (images := build_summary_line(report.builds)) is not None:
        out.print(images, markup=False, highlight=False)
    out.print(f"results: {report.run.root}  ({report.duration_s:.1f}s)")
    if report.report_html is not None:
        out.print(f"report: {report.report_html}")
    for line in model_warnings(report.results):  # last: a flagged model must not pass for a valid one
        out.print(f"[yellow]{escape(line)}[/]", highlight=False, soft_wrap=True)
    no_result = not report.interrupted and not any(report.site_metrics.values())
    if json_summary:
        emit_json(_summary_json(report, 130 if report.interrupted else 1 if no_result else 0))
    keep_serving(served, say, interrupted=report.interrupted)  # --serve: the final state stays on view
    if report.interrupted:
        err.print(
            f"run interrupted; finished work is kept in {report.run.root}. Resume with: "
            f"fedsim run benchmark --resume {report.run.run_id} --runs-dir {runs_dir}",
            soft_wrap=True,
        )
        raise typer.Exit(130)
    if no_result:  # every site's data prep failed (or no job scored a case): nothing to rank, not a result
        err.print(
            f"error: the run produced no result: no site scored any case (see the failures above and "
            f"{report.run.root}/summary.json)",
            soft_wrap=True,
        )
        raise typer.Exit(1)


@sites_app.command("list")
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


@sites_app.command("synthesize")
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
    from fedsim.report.runs_cli import register as register_runs
    from fedsim.score.cli import register as register_score
    from fedsim.serve.cli import register as register_serve
    from fedsim.stress.cli import register as register_stress
    from fedsim.submission.cli import register as register_submission

    for register in (
        register_submission,
        register_report,
        register_stress,
        register_runs,
        register_serve,
        register_score,
    ):
        register(app)


_register_features()
# --- end feature commands ---


def _usage_error_types() -> tuple[type[Exception], ...]:
    """click's usage errors: recent typer versions vendor their own click, so accept both families."""

    vendored = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    return tuple({click.ClickException, vendored})


_USAGE_ERRORS = _usage_error_types()


def _write_html_report(run_dir: Path) -> Path:
    """The end of every run: ``report.html`` and its exports (the pipeline calls it; it never imports report)."""
    from fedsim.report.html import write_report

    return write_report(run_dir).html


def main(argv: list[str] | None = None) -> None:
    """Console entry point: turn fedsim's own errors into one line and a non-zero exit."""
    from fedsim.serve.cli import expand_serve_flag

    argv = expand_serve_flag(sys.argv[1:] if argv is None else argv)  # a bare --serve: the default port
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
