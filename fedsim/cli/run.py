"""``fedsim run benchmark``: every site's data prep, every model's inference and the metrics, then the ranking.

The command checks its options, lets :func:`fedsim.pipeline.run.prepare` make every other check before any
output, runs the prepared benchmark with the console and the live view as its observers, and prints the result
tables and the one-line failures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fedsim.bundled import BENCHMARK as BUNDLED_BENCHMARK
from fedsim.cli.options import (
    AllowUnsandboxedOpt,
    GpusOpt,
    JobsOpt,
    OfflineOpt,
    RuntimeOpt,
    ServeOpt,
    check_runtime,
    containment_options,
    select_gpus,
    use_offline,
)
from fedsim.cli.output import EXIT_CODES, err, out
from fedsim.report.jsonout import emit_json, json_on_stdout

DEFAULT_BENCHMARK = BUNDLED_BENCHMARK  # package data: works from any directory after `pip install`

__all__ = ["DEFAULT_BENCHMARK", "decryption_keys", "register", "summary_json", "write_html_report"]


def decryption_keys(values: list[str]) -> tuple[tuple[str, Path], ...]:
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


def summary_json(report: object, exit_code: int) -> dict[str, object]:
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


def write_html_report(run_dir: Path) -> Path:
    """The end of every run: ``report.html`` and its exports (the pipeline calls it; it never imports report)."""
    from fedsim.report.html import write_report

    return write_report(run_dir).html


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

    check_runtime(runtime)
    if executor_name not in {"local", "ray"}:
        raise typer.BadParameter("choose local or ray", param_hint="--executor")
    if retry_failed and not resume:
        raise typer.BadParameter("only together with --resume RUN_ID", param_hint="--retry-failed")
    if gpus is not None and executor_name == "ray":
        raise typer.BadParameter(
            "Ray places jobs on its nodes' GPUs; --gpus is for --executor local", param_hint="--gpus"
        )
    select_gpus(gpus)
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
        report_writer=write_html_report,
        decryption_keys=decryption_keys(decryption_key or []),
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
    from fedsim.serve.during import keep_serving, serve_during
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
        emit_json(summary_json(report, 130 if report.interrupted else 1 if no_result else 0))
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


def register(app: typer.Typer) -> None:
    run_app = typer.Typer(help="Run a benchmark over simulated sites.", no_args_is_help=True)
    run_app.command("benchmark", epilog=EXIT_CODES)(run_benchmark_cmd)
    app.add_typer(run_app, name="run")
