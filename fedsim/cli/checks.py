"""``fedsim check-submission`` and ``fedsim dry-run``: one submission checked, or many at once.

Heavy imports live inside the command functions so ``fedsim --help`` stays fast. Exit codes of
check-submission: 0 PASS and PASS with warnings (WARN: the federation would accept it), 1 FAIL (it would fail
the cube or score cases as missing), 2 fedsim itself could not run the check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from fedsim.cli.options import (
    AllowUnsandboxedOpt,
    GpusOpt,
    JobsOpt,
    OfflineOpt,
    RuntimeOpt,
    ServeOpt,
    containment_options,
    select_gpus,
    use_offline,
)
from fedsim.cli.output import consoles
from fedsim.report.console import stop_on_interrupt
from fedsim.report.jsonout import emit_json, json_on_stdout, to_stdout
from fedsim.submission.options import (
    MAX_IMAGE_GB,
    OFFICIAL_GPU_MEMORY_GB,
    OFFICIAL_RAM_GB,
    OFFICIAL_TIMEOUT_PER_CASE_S,
    OUTPUT_MB_PER_CASE,
)

TimeoutOpt = Annotated[float, typer.Option("--timeout-per-case-s", min=0.1, help="wall clock per case (official: 180)")]
RamOpt = Annotated[float, typer.Option("--ram-gb", min=0.01, help="RAM limit in GB (official: 40)")]
GpuOpt = Annotated[float, typer.Option("--gpu-memory-gb", min=0.01, help="GPU memory limit in GB (official: 11)")]
OutputOpt = Annotated[float, typer.Option("--output-mb-per-case", min=0.01, help="what infer may write per case")]
ImageOpt = Annotated[float, typer.Option("--max-image-gb", min=0.01, help="largest acceptable image")]
DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="prepared FeTS data (with --labels) or raw cases; default: synthetic toy cases"),
]
LabelsOpt = Annotated[Path | None, typer.Option("--labels", help="labels of prepared --data (<case>_final_seg...)")]
CasesOpt = Annotated[int, typer.Option("--cases", min=1, max=50, help="number of synthetic toy cases")]
WorkOpt = Annotated[Path | None, typer.Option("--work-dir", help="where data copies, outputs and logs go")]
BaseOpt = Annotated[str | None, typer.Option("--base-image", help="BASE_IMAGE build argument (a site's mirror)")]
BenchmarkOpt = Annotated[
    Path | None,
    typer.Option(
        "--benchmark",
        help="benchmark dir (or benchmark.yaml) whose sites the time-budget forecast covers (default: the bundled one)",
    ),
]


def _site_budgets(benchmark: Path | None, out: Any) -> tuple[Any, ...]:
    """The sites (cases, limits) of ``--benchmark`` or the bundled benchmark for the forecast; a broken
    ``--benchmark`` is a configuration error (exit 2), a missing bundled one only skips the forecast."""
    from fedsim.submission.forecast import load_site_budgets

    if benchmark is None:
        try:
            from fedsim.bundled import BENCHMARK as bundled
        except ImportError:  # a checkout without the packaged benchmark
            bundled = Path("benchmarks/fets2022-task2")
        if not (bundled / "benchmark.yaml").is_file():
            out.print("note: no bundled benchmark found: no time-budget forecast (give --benchmark DIR)")
            return ()
        benchmark = bundled
    return tuple(load_site_budgets(benchmark))


def _labels(benchmark: Path | None) -> tuple[int, ...]:
    """The label values a prediction may hold: ``--benchmark``'s ``data.labels``, else FeTS's."""
    from fedsim.spec import load_benchmark

    return tuple(load_benchmark(benchmark).data.labels) if benchmark is not None else (0, 1, 2, 4)


def _max_pids(benchmark: Path | None) -> int:
    """Processes and threads the submission may have at once: ``--benchmark``'s ``limits.max_pids``, else the
    official default (no option sets it)."""
    from fedsim.spec import load_benchmark
    from fedsim.spec.models import DEFAULT_MAX_PIDS

    return load_benchmark(benchmark).limits.max_pids if benchmark is not None else DEFAULT_MAX_PIDS


def _key_file(path: Path | None) -> Path | None:
    """``--decryption-key FILE``: a file that exists (its content is read by gpg only, never here)."""
    if path is None:
        return None
    found = path.expanduser()
    if not found.is_file():
        raise typer.BadParameter(f"no key file {found}", param_hint="--decryption-key")
    return found.resolve()


def _as_exit_2(err: Any) -> Any:
    """fedsim's own errors exit with 2 here (1 means FAIL); the message stays one line."""
    from fedsim.errors import FedsimError

    @contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except FedsimError as exc:
            if exc.exit_code == 2:
                raise
            err.print(f"error: {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from exc

    return guard()


def refuse_unsandboxed(options: Any) -> None:
    """dry-run: refuse before anything runs when submissions would run as plain host processes."""
    from fedsim.runtimes.policy import refuse_unsandboxed_checks

    refuse_unsandboxed_checks(options.runtime, options.containment)


def register(app: typer.Typer) -> None:
    @app.command("check-submission")
    @json_on_stdout("json_out")
    def check_submission_cmd(
        submission: Annotated[
            str,
            typer.Argument(
                help="a cube folder (MLCube or MedPerf container), its mlcube.yaml or container_config.yaml, or a "
                "docker image"
            ),
        ],
        data: DataOpt = None,
        labels: LabelsOpt = None,
        runtime: RuntimeOpt = "auto",
        timeout_per_case_s: TimeoutOpt = OFFICIAL_TIMEOUT_PER_CASE_S,
        ram_gb: RamOpt = OFFICIAL_RAM_GB,
        gpu_memory_gb: GpuOpt = OFFICIAL_GPU_MEMORY_GB,
        output_mb_per_case: OutputOpt = OUTPUT_MB_PER_CASE,
        max_image_gb: ImageOpt = MAX_IMAGE_GB,
        cases: CasesOpt = 2,
        json_out: Annotated[
            Path | None,
            typer.Option(
                "--json", metavar="FILE", help="write the full report as JSON ('-': on stdout, the rest on stderr)"
            ),
        ] = None,
        work_dir: WorkOpt = None,
        base_image: BaseOpt = None,
        keep: Annotated[bool, typer.Option("--keep", help="keep the work directory of a passing check")] = False,
        gpus: GpusOpt = None,
        benchmark: BenchmarkOpt = None,
        offline: OfflineOpt = False,
        decryption_key: Annotated[
            Path | None,
            typer.Option(
                "--decryption-key",
                metavar="FILE",
                help="the gpg passphrase file of an encrypted image (EncryptedDockerArchive, EncryptedSingularityFile)",
            ),
        ] = None,
    ) -> None:
        """Will the federation accept this submission? Static checks, a run on toy cases, output validation,
        and each site's time and memory headroom. Exit 0: PASS or PASS with warnings; 1: FAIL; 2: fedsim could
        not run the check."""
        from fedsim.executors.local import LocalExecutor
        from fedsim.store import write_json_atomic
        from fedsim.submission.check import check_submission, resolve_target
        from fedsim.submission.options import CheckOptions
        from fedsim.submission.render import report_view
        from fedsim.submission.toydata import toy_data, user_data

        out, err = consoles()
        options = CheckOptions(
            runtime=runtime or "auto",
            timeout_per_case_s=timeout_per_case_s,
            ram_gb=ram_gb,
            gpu_memory_gb=gpu_memory_gb,
            output_mb_per_case=output_mb_per_case,
            max_image_gb=max_image_gb,
            base_image=base_image,
            work_dir=work_dir,
            keep=keep,
            decryption_key=_key_file(decryption_key),
            # one's own cube: without docker or bubblewrap it runs plainly, and says so
            containment=containment_options(True, as_sites=True),
        )
        use_offline(offline)
        with _as_exit_2(err):
            select_gpus(gpus)
            target = resolve_target(submission)
            options = replace(
                options, sites=_site_budgets(benchmark, out), labels=_labels(benchmark), max_pids=_max_pids(benchmark)
            )
            if data is not None:
                check_data = user_data(data, labels, (work_dir or Path.cwd()).resolve() / ".fedsim-check-data")
            else:
                out.print(f"preparing {cases} toy cases (cached) ...", highlight=False)
                check_data = toy_data(cases)
            out.print(f"checking [bold]{target.name}[/] on {check_data.description} ...", highlight=False)
            with LocalExecutor() as executor, stop_on_interrupt(err, "checks") as stop:
                report = check_submission(
                    target,
                    options,
                    check_data,
                    executor,
                    on_phase=lambda _n, p: out.print(f"  {p} ...", highlight=False),
                    stop_event=stop,
                )
        out.print(report_view(report))
        if to_stdout(json_out):
            emit_json(report.to_dict())
        elif json_out is not None:
            write_json_atomic(json_out, report.to_dict())
            out.print(f"wrote {json_out}", highlight=False)
        if not report.accepted:
            raise typer.Exit(1)

    @app.command("dry-run")
    @json_on_stdout("json_out")
    def dry_run_cmd(
        submissions: Annotated[
            Path,
            typer.Argument(
                help="a folder of cube folders (MLCube or MedPerf container), or a YAML list of cubes/images"
            ),
        ],
        out_dir: Annotated[Path, typer.Option("--out", help="where dry_run.csv and dry_run.json go")] = Path("dry-run"),
        data: DataOpt = None,
        labels: LabelsOpt = None,
        runtime: RuntimeOpt = "auto",
        timeout_per_case_s: TimeoutOpt = OFFICIAL_TIMEOUT_PER_CASE_S,
        ram_gb: RamOpt = OFFICIAL_RAM_GB,
        gpu_memory_gb: GpuOpt = OFFICIAL_GPU_MEMORY_GB,
        output_mb_per_case: OutputOpt = OUTPUT_MB_PER_CASE,
        max_image_gb: ImageOpt = MAX_IMAGE_GB,
        cases: CasesOpt = 2,
        work_dir: WorkOpt = None,
        base_image: BaseOpt = None,
        jobs: JobsOpt = None,
        max_parallel: Annotated[
            int | None, typer.Option("--max-parallel", min=1, hidden=True, help="old name of --jobs")
        ] = None,
        gpus: GpusOpt = None,
        json_out: Annotated[
            Path | None,
            typer.Option(
                "--json", metavar="FILE", help="also write every report as JSON ('-': on stdout, the rest on stderr)"
            ),
        ] = None,
        unsandboxed: AllowUnsandboxedOpt = False,
        benchmark: BenchmarkOpt = None,
        serve: ServeOpt = None,
    ) -> None:
        """Check every submission concurrently (as GPUs, RAM and CPUs allow); a table plus CSV/JSON exports."""
        from fedsim.submission.dryrun import DryRunProgress, dry_run, load_submissions, write_exports
        from fedsim.submission.options import CheckOptions
        from fedsim.submission.render import dry_run_table, forecast_table
        from fedsim.submission.toydata import toy_data, user_data

        out, err = consoles()
        options = CheckOptions(
            runtime=runtime or "auto",
            timeout_per_case_s=timeout_per_case_s,
            ram_gb=ram_gb,
            gpu_memory_gb=gpu_memory_gb,
            output_mb_per_case=output_mb_per_case,
            max_image_gb=max_image_gb,
            base_image=base_image,
            work_dir=(work_dir or out_dir / "work").resolve(),
            containment=containment_options(unsandboxed, as_sites=True),
        )
        with _as_exit_2(err):
            select_gpus(gpus)
            targets = load_submissions(submissions)
            refuse_unsandboxed(options)
            options = replace(
                options, sites=_site_budgets(benchmark, out), labels=_labels(benchmark), max_pids=_max_pids(benchmark)
            )
            check_data = toy_data(cases) if data is None else user_data(data, labels, out_dir.resolve() / "data")
            out.print(
                f"dry run of {len(targets)} submissions on {check_data.description} "
                f"(limits: {timeout_per_case_s:g} s/case, {ram_gb:g} GB RAM, {gpu_memory_gb:g} GB GPU)",
                highlight=False,
            )
            from fedsim.serve.during import keep_serving, serve_during
            from fedsim.serve.live import LiveBoard

            board = LiveBoard("dry-run", out_dir.name, [t.name for t in targets], result=out_dir.name)
            served = serve_during(serve, out_dir.resolve().parent, out.print, {out_dir.name: board})
            with stop_on_interrupt(err, "checks") as stop, DryRunProgress(out, [t.name for t in targets]) as progress:

                def phase(name: str, what: str) -> None:
                    progress(name, what)
                    board.update(name, what)

                reports = dry_run(
                    targets, options, check_data, on_phase=phase, stop_event=stop, max_parallel=jobs or max_parallel
                )
            out.print(dry_run_table(reports))
            # the forecast of the submissions the federation would accept (the JSON has every one's)
            forecasts = [r for r in reports if r.accepted and r.forecast is not None and r.forecast.sites]
            if forecasts:
                out.print(forecast_table(forecasts))
                out.print(f"forecast: {forecasts[0].forecast.method}", highlight=False, soft_wrap=True)
            for path in write_exports(reports, out_dir):
                out.print(f"wrote {path}", highlight=False)
            board.end()
            if json_out is not None:
                document = json.loads((out_dir / "dry_run.json").read_text(encoding="utf-8"))
                if to_stdout(json_out):
                    emit_json(document)
                else:
                    from fedsim.store import write_json_atomic

                    write_json_atomic(json_out, document)
                    out.print(f"wrote {json_out}", highlight=False)
        keep_serving(served, out.print, interrupted=stop.is_set())
        if stop.is_set():
            raise typer.Exit(130)
