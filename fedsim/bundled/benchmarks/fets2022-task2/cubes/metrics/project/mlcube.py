"""Metrics cube entry point: ``mlcube.py evaluate --predictions=D --labels=D --parameters_file=F
--output_path=F``.

Runs inside a bare Debian image (numpy, scipy, nibabel, pyyaml and fedsim only). Writes the results YAML
atomically so a killed run never leaves a half-written file for the organisers to rank.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import yaml

from fedsim.errors import FedsimError, SpecError
from fedsim.metrics import METRIC_SETS, evaluate_dir
from fedsim.store.atomic import write_yaml_atomic


def read_parameters(path: Path) -> tuple[str, dict[str, Any] | None]:
    """``metric_set`` (default brats2021) and the optional block of the same name (``lesionwise``: its
    parameters; ``brats2025``: ``{config: gli}`` or another configuration); no file means defaults."""
    if not path.is_file():
        return "brats2021", None
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=str(path)) from exc
    if not isinstance(doc, dict):
        raise SpecError("expected a mapping", file=str(path))
    metric_set = str(doc.get("metric_set", "brats2021"))
    if metric_set not in METRIC_SETS:
        raise SpecError(
            f"unknown metric set {metric_set!r}; choose one of {sorted(METRIC_SETS)}",
            file=str(path),
            field="metric_set",
        )
    params = doc.get(metric_set) if metric_set in ("lesionwise", "brats2025") else None
    if params is not None and not isinstance(params, dict):
        raise SpecError("expected a mapping", file=str(path), field=metric_set)
    return metric_set, params


def _yaml_value(value: Any) -> Any:
    return float("nan") if isinstance(value, float) and math.isnan(value) else value


def write_results(path: Path, results: dict[str, dict[str, Any]]) -> None:
    """Atomic (tmp + fsync + rename): a killed run never leaves a half-written file for the organisers."""
    write_yaml_atomic(path, {case: {k: _yaml_value(v) for k, v in row.items()} for case, row in results.items()})


def evaluate(args: argparse.Namespace) -> int:
    metric_set, params = read_parameters(Path(args.parameters_file))
    problems: dict[str, list[str]] = {}
    results = evaluate_dir(Path(args.predictions), Path(args.labels), metric_set, params, problems)
    write_results(Path(args.output_path), results)
    n_penalty = sum(1 for row in results.values() if row.get("missing_pred"))
    split = f" ({n_penalty} scored with the penalty row, {len(problems) - n_penalty} as written)" if problems else ""
    print(f"evaluated {len(results)} cases ({metric_set}), {len(problems)} missing or unusable predictions{split}")
    for case, found in problems.items():
        print(f"  {case}: {'; '.join(found)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlcube.py", description=__doc__)
    tasks = parser.add_subparsers(dest="task", required=True)
    ev = tasks.add_parser("evaluate", help="score predictions against labels")
    ev.add_argument("--predictions", required=True)
    ev.add_argument("--labels", required=True)
    ev.add_argument("--parameters_file", required=True)
    ev.add_argument("--output_path", required=True)
    args = parser.parse_args(argv)
    try:
        return evaluate(args)
    except FedsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
