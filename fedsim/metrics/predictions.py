"""Validate what a model's ``infer`` wrote, case by case: the one implementation behind ``check-submission``'s
output checks and the output validation of every benchmark run.

Expected: one regular ``<case>.nii.gz`` per case directory and nothing else, each a readable NIfTI on the
input's grid with integer labels in the benchmark's set (FeTS: {0, 1, 2, 4}; BraTS 2025: {0, 1, 2, 3, 4}).
Predictions are untrusted: they are decoded with the bounded reader of :mod:`fedsim.metrics.nifti` (no
decompression bombs, no symlinks followed, a voxel budget from the input's own header). Imports only numpy,
nibabel and the metrics package, so it also runs in the metrics cube.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsim.metrics.nifti import Geometry, UnreadableVolume, load_label

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from fedsim.metrics.nifti import Voxels

__all__ = [
    "LABELS",
    "PRED_SUFFIX",
    "CaseFinding",
    "FileScan",
    "case_problems",
    "check_case",
    "input_grid",
    "label_problem",
    "scan_files",
    "walk",
]

LABELS = (0, 1, 2, 4)
PRED_SUFFIX = ".nii.gz"

# What a finding is about: the check of ``check-submission`` it belongs to.
FILES, GEOMETRY, LABEL_VALUES = "output_files", "output_geometry", "output_labels"


@dataclass(frozen=True)
class CaseFinding:
    """One thing wrong with one case's prediction; ``warning``: worth fixing, but it scores as intended."""

    case: str
    check: str  # output_files | output_geometry | output_labels
    text: str  # without the file name: "labels [3] outside {0, 1, 2, 4}"
    warning: bool = False

    @property
    def name(self) -> str:
        return f"{self.case}{PRED_SUFFIX}"


@dataclass
class FileScan:
    """What ``output_path`` holds against the expected ``<case>.nii.gz`` names (paths relative to it)."""

    present: list[str] = field(default_factory=list)  # cases with a regular file of the expected name
    missing: list[str] = field(default_factory=list)  # expected file names absent (or not regular files)
    links: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # anything else; directories end with "/"
    empty: bool = True  # nothing at all below output_path


def walk(root: Path) -> list[Path]:
    """Every entry below ``root`` (symlinks not followed), sorted."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        found += [Path(dirpath) / n for n in dirnames + filenames]
    return sorted(found)


def scan_files(output_dir: Path, cases: tuple[str, ...] | list[str]) -> FileScan:
    """Sort everything below ``output_dir`` into expected predictions, symlinks and extras."""
    expected = {f"{c}{PRED_SUFFIX}": c for c in cases}
    entries = walk(output_dir) if output_dir.is_dir() else []
    scan = FileScan(empty=not entries)
    for path in entries:
        rel = str(path.relative_to(output_dir))
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            scan.links.append(rel)
        elif rel in expected and stat.S_ISREG(mode):
            scan.present.append(expected[rel])
        else:
            scan.extra.append(rel + ("/" if stat.S_ISDIR(mode) else ""))
    scan.missing = [name for name, case in expected.items() if case not in scan.present]
    return scan


def input_grid(case_dir: Path) -> tuple[tuple[int, ...], NDArray[np.float64]] | None:
    """Shape and affine of the case's first input volume (header only); None when it has none readable."""
    import nibabel as nib

    for path in sorted(case_dir.glob("*.nii*")):
        try:
            img: Any = nib.load(str(path))
            return tuple(int(s) for s in img.shape[:3]), np.asarray(img.affine, dtype=np.float64)
        except Exception:  # inputs are the site's; an unreadable one just is not the reference
            continue
    return None


def _stored_dtype(path: Path) -> np.dtype[np.generic] | None:
    """The on-disk data type from the header (the bounded reader already accepted the file)."""
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
        dtype: np.dtype[np.generic] = np.dtype(img.header.get_data_dtype())
        return dtype
    except Exception:  # a nicety only: never fail the check on it
        return None


def label_problem(data: Voxels, labels: tuple[int, ...] = LABELS) -> str | None:
    """Why decoded prediction voxels are not integer labels in ``labels`` (FeTS: {0, 1, 2, 4}), or None.

    ``data`` is what :func:`~fedsim.metrics.nifti.load_label` returns: uint8 whenever the values are integers
    in 0..255, so the common case is two byte-wise comparisons (~5 ms for 240×240×155).
    """
    if data.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            fraction = (data != np.round(data)) & np.isfinite(data)
        first = int(np.argmax(fraction))  # an example value without materialising every one
        shown = f"{float(data.flat[first]):.4g}" if fraction.flat[first] else "NaN/inf"
        return f"non-integer values (stored as {data.dtype}, e.g. {shown})"
    top = max(labels)
    outside = data > top
    for gap in sorted(set(range(top)) - set(labels)):  # FeTS: {0, 1, 2, 4} is everything in 0..4 but 3
        outside |= data == gap
    if data.dtype.kind == "i":
        outside |= data < 0
    if not outside.any():
        return None
    bad = sorted({int(v) for v in np.unique(data[outside])})
    return f"labels {bad} outside {{{', '.join(str(v) for v in sorted(labels))}}}"


def check_case(output_dir: Path, data_dir: Path, case: str, labels: tuple[int, ...] = LABELS) -> list[CaseFinding]:
    """Geometry and ``labels`` of one present prediction against the case's input (``data_dir/<case>/``)."""
    name = f"{case}{PRED_SUFFIX}"
    path = output_dir / name
    grid = input_grid(data_dir / case)
    budget = int(np.prod(grid[0])) if grid else None
    try:
        data, pred = load_label(path, max_voxels=budget)
    except UnreadableVolume as exc:
        why = str(exc).replace(f"{path}: ", "")
        return [CaseFinding(case, GEOMETRY, f"unreadable NIfTI: {why}")]
    found: list[CaseFinding] = []
    if grid is not None:
        mismatch = Geometry.from_affine(grid[0], grid[1]).mismatch(pred)
        if mismatch is not None:
            found.append(CaseFinding(case, GEOMETRY, f"{mismatch} (input)"))
    problem = label_problem(data, tuple(labels))
    if problem is not None:
        found.append(CaseFinding(case, LABEL_VALUES, problem))
    elif data.dtype.kind != "f":
        dtype = _stored_dtype(path)
        if dtype is not None and dtype.kind == "f":
            found.append(CaseFinding(case, LABEL_VALUES, f"integer labels stored as {dtype}", warning=True))
    return found


def case_problems(
    output_dir: Path, data_dir: Path, cases: list[str] | tuple[str, ...], labels: tuple[int, ...] = LABELS
) -> dict[str, list[str]]:
    """``{case: [problem, ...]}`` for every expected case whose prediction the federation would reject
    (missing, a symlink, unreadable, off the input's grid, not labels in ``labels``); warnings left out.

    What a benchmark run records after each successful ``infer``; the same findings as ``check-submission``.
    """
    scan = scan_files(output_dir, cases)
    links = set(scan.links)
    out: dict[str, list[str]] = {}
    for case in cases:
        name = f"{case}{PRED_SUFFIX}"
        if case in scan.present:
            problems = [f.text for f in check_case(output_dir, data_dir, case, labels) if not f.warning]
        elif name in links:
            problems = ["a symlink, not a file"]
        else:
            problems = ["no prediction written" if scan.empty else f"missing {name}"]
        if problems:
            out[case] = problems
    return out
