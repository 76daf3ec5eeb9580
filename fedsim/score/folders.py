"""Match predictions to labels by case id and score them with one of the metric sets.

Unlike the metrics cube, which scores a missing or unusable prediction with the penalty row (the federation
must rank whatever a container left), this is a participant's own check: every problem is an error, so
nothing is silently scored as a penalty. Label values outside the set's labels are scored as they are (they
match no region) and reported as warnings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from fedsim.errors import SpecError
from fedsim.metrics.brats2025 import brats2025_regions
from fedsim.metrics.evaluate import METRIC_SETS, evaluate_case

__all__ = ["LABEL_SUFFIXES", "PRED_SUFFIX", "match_cases", "score_folders"]

PRED_SUFFIX = ".nii.gz"
#: Label file names, longest first: ``<case>_final_seg.nii.gz`` (FeTS after prep), ``<case>_seg.nii.gz``
#: (BraTS releases), ``<case>.nii.gz`` (brats-evaluation's reference folder).
LABEL_SUFFIXES: tuple[str, ...] = ("_final_seg.nii.gz", "_seg.nii.gz", ".nii.gz")
_SHOWN = 5  # names listed in a one-line error before "and N more"


def _listing(names: list[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _case_of(name: str, suffixes: tuple[str, ...]) -> str | None:
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _files(directory: Path, what: str) -> list[Path]:
    if not directory.is_dir():
        raise SpecError(f"{what} directory not found", file=str(directory))
    return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def match_cases(predictions: Path, labels: Path) -> dict[str, tuple[Path, Path]]:
    """``{case: (prediction, label)}``; a SpecError names every file that has no partner or no case id."""
    preds: dict[str, Path] = {}
    stray: list[str] = []
    for p in _files(predictions, "predictions"):
        case = _case_of(p.name, (PRED_SUFFIX,))
        if case is None:
            stray.append(p.name)
        else:
            preds[case] = p
    truth: dict[str, Path] = {}
    for p in _files(labels, "labels"):
        case = _case_of(p.name, LABEL_SUFFIXES)
        if case is None:
            stray.append(p.name)
        elif case in truth:
            raise SpecError(
                f"two label files for case {case!r}: {truth[case].name} and {p.name}; keep one", file=str(labels)
            )
        else:
            truth[case] = p
    if stray:
        raise SpecError(
            f"{len(stray)} file(s) not named <case>.nii.gz (labels may also be <case>_seg.nii.gz or "
            f"<case>_final_seg.nii.gz): {_listing(stray)}"
        )
    # a prediction named after the label file (<case>_seg.nii.gz) still belongs to <case>
    for case in [c for c in preds if c not in truth]:
        for suffix in ("_final_seg", "_seg"):
            if case.endswith(suffix) and case[: -len(suffix)] in truth and case[: -len(suffix)] not in preds:
                preds[case[: -len(suffix)]] = preds.pop(case)
                break
    no_label = sorted(set(preds) - set(truth))
    no_pred = sorted(set(truth) - set(preds))
    if no_label or no_pred:
        parts = []
        if no_pred:
            parts.append(f"{len(no_pred)} case(s) without a prediction: {_listing(no_pred)}")
        if no_label:
            parts.append(f"{len(no_label)} prediction(s) without a label: {_listing(no_label)}")
        raise SpecError("; ".join(parts) + f" (predictions: {predictions}, labels: {labels})")
    if not truth:
        raise SpecError("no cases: the labels directory holds no .nii.gz file", file=str(labels))
    return {case: (preds[case], truth[case]) for case in sorted(truth)}


def _score_one(args: tuple[str, Path, Path, str, Mapping[str, Any] | None]) -> tuple[str, dict[str, Any], list[str]]:
    case, pred, label, metric_set, params = args
    problems: list[str] = []
    row = evaluate_case(pred, label, metric_set, params, problems)
    return case, row, problems


def score_folders(
    predictions: Path,
    labels: Path,
    metric_set: str = "brats2021",
    params: Mapping[str, Any] | None = None,
    jobs: int = 1,
    warn: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{case: metrics}`` sorted by case id (the metrics cube's layout); ``jobs`` processes at once.

    Raises SpecError (one line) for unmatched files, an unknown set, an unreadable label, or any prediction
    that is unreadable or not on its label's grid. ``warn`` receives label-value findings.
    """
    if metric_set not in METRIC_SETS:
        raise SpecError(f"unknown metric set {metric_set!r}; choose one of {sorted(METRIC_SETS)}", field="metric_set")
    if jobs < 1:
        raise SpecError(f"-j must be at least 1, got {jobs}", field="jobs")
    if metric_set == "brats2025":
        brats2025_regions(params)  # an unknown configuration fails here, not once per case
    pairs = match_cases(Path(predictions), Path(labels))
    work = [(case, pred, label, metric_set, params) for case, (pred, label) in pairs.items()]
    if jobs == 1 or len(work) == 1:
        done = [_score_one(w) for w in work]
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
            done = list(pool.map(_score_one, work))
    unusable = [f"{case}: {'; '.join(found)}" for case, row, found in done if row.get("missing_pred")]
    if unusable:
        raise SpecError(f"{len(unusable)} prediction(s) cannot be scored: {_listing(unusable)}")
    if warn is not None:
        for case, _, found in done:
            for text in found:
                warn(f"{case}: {text} (scored as written)")
    return {case: row for case, row, _ in done}
