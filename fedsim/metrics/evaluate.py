"""Evaluate a directory of predictions against the FeTS labels (docs/fets-contract.md, docs/metrics.md).

Labels are trusted site data: one that cannot be read is an error. Predictions are untrusted container
output: missing, unreadable (incl. decompression bombs) or misaligned ones score the penalty row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from fedsim.errors import SpecError
from fedsim.metrics.brats import case_metrics
from fedsim.metrics.brats2025 import brats2025_label_values, brats2025_metrics
from fedsim.metrics.lesionwise import lesionwise_metrics
from fedsim.metrics.nifti import UnreadableVolume, load_label
from fedsim.metrics.predictions import LABELS, label_problem

LABEL_SUFFIX = "_final_seg.nii.gz"
PRED_SUFFIX = ".nii.gz"

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Compute = Callable[
        [NDArray[np.generic] | None, NDArray[np.generic], Mapping[str, Any] | None, tuple[float, ...]], dict[str, Any]
    ]


class MetricSet(NamedTuple):
    """A named way of scoring one case; ``compute(None, truth, params, spacing)`` gives its penalty row.

    ``labels(params)``: the label values a valid prediction may hold (the others are reported, and match no
    region). ``spacing`` is the label's voxel spacing (x, y, z); the voxel-unit sets ignore it."""

    compute: Compute
    description: str
    labels: Callable[[Mapping[str, Any] | None], tuple[int, ...]] = lambda params: LABELS


def _brats2021(
    pred: NDArray[np.generic] | None,
    truth: NDArray[np.generic],
    params: Mapping[str, Any] | None,
    spacing: tuple[float, ...],
) -> dict[str, Any]:
    return case_metrics(pred, truth)


def _lesionwise(
    pred: NDArray[np.generic] | None,
    truth: NDArray[np.generic],
    params: Mapping[str, Any] | None,
    spacing: tuple[float, ...],
) -> dict[str, Any]:
    return lesionwise_metrics(pred, truth, params)


METRIC_SETS: dict[str, MetricSet] = {
    "brats2021": MetricSet(_brats2021, "FeTS 2022 / BraTS 2021 voxel-wise metrics, CaPTk semantics"),
    "lesionwise": MetricSet(_lesionwise, "BraTS 2023 lesion-wise metrics"),
    "brats2025": MetricSet(
        brats2025_metrics, "BraTS 2025 metrics (brats-evaluation / panoptica)", brats2025_label_values
    ),
}


def list_cases(labels_dir: Path) -> list[str]:
    """Case ids of every ``<case>_final_seg.nii.gz`` in ``labels_dir``, sorted."""
    return sorted(
        p.name[: -len(LABEL_SUFFIX)]
        for p in labels_dir.iterdir()
        if p.name.endswith(LABEL_SUFFIX) and len(p.name) > len(LABEL_SUFFIX)
    )


def evaluate_case(
    pred_path: Path,
    label_path: Path,
    metric_set: str = "brats2021",
    params: Mapping[str, Any] | None = None,
    problems: list[str] | None = None,
) -> dict[str, Any]:
    """Metrics of one case; the prediction is scored as missing when it cannot be used.

    ``problems``, when given, receives why the prediction is not a valid one (missing, unreadable, misaligned,
    or labels outside the set's (e.g. {0, 1, 2, 4}): those are scored as they are, voxels of other values
    matching no region).
    """
    chosen = _metric_set(metric_set)
    compute = chosen.compute
    try:
        truth, geometry = load_label(label_path)
    except UnreadableVolume as exc:
        raise SpecError(str(exc), file=str(label_path)) from exc
    found: list[str] = []
    pred: NDArray[np.generic] | None = None
    if pred_path.exists() or pred_path.is_symlink():
        try:
            data, pred_geometry = load_label(pred_path, max_voxels=int(truth.size))
            mismatch = geometry.mismatch(pred_geometry)
            if mismatch is None:
                pred = data
                found += [p for p in [label_problem(data, chosen.labels(params))] if p is not None]
            else:
                found.append(f"{mismatch} (labels)")
        except UnreadableVolume as exc:
            found.append(f"unreadable NIfTI: {str(exc).replace(f'{pred_path}: ', '')}")
    else:
        found.append("missing")
    if problems is not None:
        problems += found
    return _plain(compute(pred, truth, params, geometry.spacing))


def evaluate_dir(
    predictions_dir: Path,
    labels_dir: Path,
    metric_set: str = "brats2021",
    params: Mapping[str, Any] | None = None,
    problems: dict[str, list[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{case: metrics}`` for every labelled case, sorted by case id; ``problems`` (when given) receives
    ``{case: [why its prediction is invalid]}`` for the cases with one (see :func:`evaluate_case`)."""
    predictions_dir, labels_dir = Path(predictions_dir), Path(labels_dir)
    _metric_set(metric_set)
    if not labels_dir.is_dir():
        raise SpecError("labels directory not found", file=str(labels_dir))
    out: dict[str, dict[str, Any]] = {}
    for case in list_cases(labels_dir):
        found: list[str] = []
        out[case] = evaluate_case(
            predictions_dir / f"{case}{PRED_SUFFIX}", labels_dir / f"{case}{LABEL_SUFFIX}", metric_set, params, found
        )
        if found and problems is not None:
            problems[case] = found
    return out


def _metric_set(name: str) -> MetricSet:
    try:
        return METRIC_SETS[name]
    except KeyError:
        raise SpecError(
            f"unknown metric set {name!r}; choose one of {sorted(METRIC_SETS)}", field="metric_set"
        ) from None


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """Python bool/int/float values only (NaN stays a float), so YAML and JSON write them plainly."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, (bool, np.bool_)):
            out[key] = bool(value)
        elif isinstance(value, (int, np.integer)):
            out[key] = int(value)
        else:
            v = float(value)
            out[key] = math.nan if math.isnan(v) else v
    return out
