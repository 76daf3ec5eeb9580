"""``fedsim stress``: models under acquisition shifts of growing severity. Heavy imports live in the command."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from fedsim.bundled import BENCHMARK as DEFAULT_BENCHMARK  # package data: there after any `pip install`
from fedsim.cli.options import (
    AllowUnsandboxedOpt,
    GpusOpt,
    JobsOpt,
    RuntimeOpt,
    ServeOpt,
    check_runtime,
    containment_options,
    select_gpus,
)
from fedsim.cli.output import consoles


def _csv_list(value: str, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise typer.BadParameter(f"give a comma-separated list of {what}")
    return items


def _ints(value: str, what: str, n: int | None = None) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in _csv_list(value, what))
    except ValueError:
        raise typer.BadParameter(f"give comma-separated integers ({what}), got {value!r}") from None
    if n is not None and len(out) != n:
        raise typer.BadParameter(f"give {n} comma-separated integers ({what}), got {value!r}")
    return out


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def stress(
    models: Annotated[
        list[Path],
        typer.Argument(
            help="one or more cubes: MLCube or MedPerf container folders, or their mlcube.yaml / container_config.yaml "
            "(several are compared)"
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="prepared FeTS cases (labels from --labels or a sibling labels/) or raw cases; "
            "default: bundled synthetic toy cases",
        ),
    ] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="labels of prepared --data")] = None,
    shifts: Annotated[
        str,
        typer.Option(
            "--shifts",
            help="comma-separated: intensity, bias, noise, thick_slices, gamma, missing, swap, misregistration",
        ),
    ] = "intensity,bias,noise,thick_slices",
    levels: Annotated[str, typer.Option("--levels", help="severity levels (0 is always run)")] = "0,1,2,3",
    benchmark: Annotated[
        Path | None,
        typer.Option("--benchmark", help="benchmark dir: limits and metric set (default: the bundled one)"),
    ] = None,
    runtime: RuntimeOpt = "auto",
    out_dir: Annotated[Path | None, typer.Option("--out", help="output directory (default runs/stress-<time>)")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="also write the JSON results here")] = None,
    cases: Annotated[
        int | None, typer.Option("--cases", min=1, help="number of cases (default: 2 toy cases, all of --data)")
    ] = None,
    shape: Annotated[
        str, typer.Option("--shape", help="shape of the synthetic toy cases (240,240,155 for full size)")
    ] = "96,96,64",
    seed: Annotated[int, typer.Option("--seed", help="seed of the shifts (direction, fields, noise)")] = 0,
    jobs: JobsOpt = None,
    gpus: GpusOpt = None,
    unsandboxed: AllowUnsandboxedOpt = False,
    serve: ServeOpt = None,
) -> None:
    """Generalization stress test: models under controlled acquisition shifts of growing severity.

    Runs each model's infer on shifted copies of the cases under the federation's runtime and limits.
    """
    from rich.table import Table

    from fedsim.stress.plot import write_curves
    from fedsim.stress.results import write_exports
    from fedsim.stress.run import StressOptions, run_stress

    out, err = consoles()
    check_runtime(runtime)
    select_gpus(gpus)  # SpecError (exit 2) for a GPU NVML does not see
    if benchmark is None and (DEFAULT_BENCHMARK / "benchmark.yaml").is_file():
        benchmark = DEFAULT_BENCHMARK
    dims = _ints(shape, "shape", 3)
    options = StressOptions(
        models=tuple(models),
        out=out_dir or Path("runs") / time.strftime("stress-%Y%m%d-%H%M%S"),
        data=data,
        labels=labels,
        shifts=tuple(_csv_list(shifts, "shifts")),
        levels=_ints(levels, "levels"),
        benchmark=benchmark,
        runtime=runtime or "auto",
        cases=cases,
        shape=(dims[0], dims[1], dims[2]),
        seed=seed,
        jobs=jobs,
        containment=containment_options(unsandboxed),
    )

    from fedsim.serve.during import keep_serving, serve_during
    from fedsim.serve.live import LiveBoard

    board = LiveBoard("stress", options.out.name)
    served = serve_during(serve, options.out.resolve().parent, out.print, {options.out.name: board})

    def _event(kind: str, model: str, case_set: Any, result: Any) -> None:
        label = f"{model} on {case_set.label}"
        if kind == "finished" and result is not None:
            board.update(label, str(result.status), f"{result.duration_s:.1f}s")
        elif kind == "started":
            board.update(label, "running")
        if kind == "finished" and result is not None:
            wt = result.regions.get("WT")
            note = "" if result.status == "succeeded" else f" [yellow]{result.status}[/]"
            if result.invalid_cases:
                note += f" [yellow]{len(result.invalid_cases)} invalid output(s)[/]"
            out.print(
                f"  {model} on {case_set.label}: WT Dice {_f(wt.mean_dice if wt else None)} "
                f"({result.duration_s:.1f}s){note}",
                highlight=False,
            )

    from fedsim.report.console import stop_on_interrupt

    with stop_on_interrupt(err) as stop:
        results = run_stress(options, on_event=_event, on_message=out.print, stop_event=stop)

    table = Table(title="per shift and level: mean (worst) Dice, mean (worst) HD95")
    for col in ("model", "shift", "level", "parameter"):
        table.add_column(col)
    for r in results.regions:
        table.add_column(f"Dice {r}", justify="right")
    for r in results.regions:
        table.add_column(f"HD95 {r}", justify="right")
    table.add_column("failures")
    for s in results.sets:
        dice = [f"{_f(s.regions[r].mean_dice)} ({_f(s.regions[r].worst_dice)})" for r in results.regions]
        hd = [f"{_f(s.regions[r].mean_hd95, '.1f')} ({_f(s.regions[r].worst_hd95, '.1f')})" for r in results.regions]
        fail = "" if s.status == "succeeded" else f"{s.status}: {s.reason}"[:60]
        if s.invalid_cases:
            fail = f"{len(s.invalid_cases)} invalid: {', '.join(s.invalid_cases)}"[:60]
        table.add_row(s.model, s.shift, str(s.level), s.parameter, *dice, *hd, fail)
    out.print(table)

    summary = Table(title="robustness = mean shifted Dice / unshifted Dice; WT drop = first level with WT Dice -0.1")
    for col in ("model", "shifts", "unshifted Dice", "shifted Dice", "robustness", "WT drop level", "worst shift"):
        summary.add_column(col, justify="left" if col in ("model", "shifts", "worst shift") else "right")
    for m in results.summaries.values():
        summary.add_row(
            m.model,
            "all",
            _f(m.unshifted_dice),
            _f(m.shifted_dice),
            _f(m.robustness),
            "",
            m.worst_shift or "–",
            style="bold",
        )
        for name in results.shifts:
            ps = m.per_shift[name]
            drop = "–" if ps.wt_drop_level is None else str(ps.wt_drop_level)
            summary.add_row("", name, "", _f(ps.mean_dice), _f(ps.robustness), drop, "")
        if m.failures:
            summary.add_row("", f"[yellow]{m.failures} set(s) with failures[/]", "", "", "", "", "")
    out.print(summary)
    paths = write_exports(results, options.out, json_file)
    paths.append(write_curves(results, options.out / "curves.png"))
    for p in paths:
        out.print(f"wrote {p}", highlight=False)
    out.print(f"stress test done in {results.duration_s:.1f}s", highlight=False)
    board.end()
    keep_serving(served, out.print, interrupted=stop.is_set())
    if stop.is_set():
        err.print("stress test interrupted; the sets that did not run score the penalty row")
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    app.command("stress")(stress)
