"""``fedsim score PREDICTIONS LABELS``: a folder of predictions against a folder of labels."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("score")(score_cmd)


def _yaml_value(value: Any) -> Any:
    return float("nan") if isinstance(value, float) and math.isnan(value) else value


def score_cmd(
    predictions: Annotated[Path, typer.Argument(help="folder of <case>.nii.gz predictions")],
    labels: Annotated[
        Path, typer.Argument(help="folder of labels: <case>.nii.gz, <case>_seg.nii.gz or <case>_final_seg.nii.gz")
    ],
    metric_set: Annotated[
        str, typer.Option("--metric-set", "-m", help="brats2021 (FeTS), lesionwise (BraTS 2023) or brats2025")
    ] = "brats2021",
    config: Annotated[
        str | None,
        typer.Option("--config", help="brats2025 configuration: gli (default), mets, ped, MenRT, MenPre, GoAT"),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="results YAML to write (default: stdout)")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, metavar="N", help="cases scored at once")] = 1,
) -> None:
    """Score predictions against labels matched by case id; writes the metrics cube's YAML (case → keys)."""
    import yaml

    from fedsim.errors import SpecError
    from fedsim.score.folders import score_folders
    from fedsim.store.atomic import write_yaml_atomic

    if config is not None and metric_set != "brats2025":
        raise SpecError("--config applies to --metric-set brats2025 only", field="config")
    params = {"config": config} if config is not None else None
    results = score_folders(
        predictions, labels, metric_set, params, jobs, warn=lambda t: print(f"warning: {t}", file=sys.stderr)
    )
    doc = {case: {k: _yaml_value(v) for k, v in row.items()} for case, row in results.items()}
    if out is None:
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    else:
        write_yaml_atomic(out, doc)
        print(f"scored {len(doc)} cases ({metric_set}) -> {out}", file=sys.stderr)
