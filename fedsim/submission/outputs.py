"""Validate what ``infer`` wrote: one ``<case>.nii.gz`` per case and nothing else, each a readable NIfTI on the
input's grid with integer labels in {0, 1, 2, 4}; and that nothing was written outside ``output_path``.

Predictions are untrusted: they are decoded with the metrics' bounded reader (no decompression bombs, no
symlinks followed, a voxel budget from the input's own header).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from fedsim.submission.report import Check, failed, passed, skipped, warning

LABELS = (0, 1, 2, 4)
PRED_SUFFIX = ".nii.gz"
_SHOWN = 4


def _short(items: list[str]) -> str:
    return ", ".join(items[:_SHOWN]) + (f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def _walk(root: Path) -> list[Path]:
    """Every entry below ``root`` (symlinks not followed)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        found += [Path(dirpath) / n for n in dirnames + filenames]
    return sorted(found)


def check_files(output_dir: Path, cases: tuple[str, ...]) -> tuple[Check, list[str]]:
    """Exactly one regular ``<case>.nii.gz`` per case and nothing else; returns the check and the cases present."""
    expected = {f"{c}{PRED_SUFFIX}": c for c in cases}
    entries = _walk(output_dir) if output_dir.is_dir() else []
    present: list[str] = []
    links: list[str] = []
    extra: list[str] = []
    for path in entries:
        rel = str(path.relative_to(output_dir))
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            links.append(rel)
        elif rel in expected and stat.S_ISREG(mode):
            present.append(expected[rel])
        else:
            extra.append(rel + ("/" if stat.S_ISDIR(mode) else ""))
    missing = [name for name, case in expected.items() if case not in present]
    details = [f"missing {m}" for m in missing] + [f"symlink {s}" for s in links] + [f"unexpected {e}" for e in extra]
    if not entries:
        return failed(
            "output_files",
            f"wrote no prediction (expected {_short(list(expected))})",
            "write <output_path>/<case>.nii.gz for every case directory under data_path",
            details,
        ), []
    problems = []
    if missing:
        problems.append(f"missing {_short(missing)}")
    if links:
        problems.append(f"symlinks {_short(links)}")
    if extra:
        problems.append(f"unexpected {_short(extra)}")
    if problems:
        fix = "write exactly one regular file <output_path>/<case>.nii.gz per case (the case folder's name), no other"
        if links:
            fix += "; write files, not symlinks"
        return failed("output_files", "; ".join(problems), fix, details), present
    return passed("output_files", f"one <case>.nii.gz per case ({len(present)})"), present


def _input_grid(case_dir: Path) -> tuple[tuple[int, ...], np.ndarray] | None:
    """Shape and affine of the case's first input volume (header only)."""
    import nibabel as nib

    for path in sorted(case_dir.glob("*.nii*")):
        try:
            img: Any = nib.load(str(path))
            return tuple(int(s) for s in img.shape[:3]), np.asarray(img.affine, dtype=np.float64)
        except Exception:  # inputs are ours; an unreadable one just is not the reference
            continue
    return None


def _stored_dtype(path: Path) -> np.dtype | None:
    """The on-disk data type from the header (the bounded reader already accepted the file)."""
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
        dtype: np.dtype = np.dtype(img.header.get_data_dtype())
        return dtype
    except Exception:  # a nicety only: never fail the check on it
        return None


def check_volumes(output_dir: Path, data_dir: Path, cases: list[str]) -> list[Check]:
    """The ``output_geometry`` and ``output_labels`` checks over the predictions that exist."""
    from fedsim.metrics.nifti import Geometry, UnreadableVolume, load_label

    if not cases:
        why = "no prediction with the expected name to inspect"
        return [skipped("output_geometry", why), skipped("output_labels", why)]
    geometry: list[str] = []
    labels: list[str] = []
    float_storage: list[str] = []
    for case in cases:
        name = f"{case}{PRED_SUFFIX}"
        grid = _input_grid(data_dir / case)
        budget = int(np.prod(grid[0])) if grid else None
        try:
            data, pred = load_label(output_dir / name, max_voxels=budget)
        except UnreadableVolume as exc:
            geometry.append(f"{name}: unreadable NIfTI: {str(exc).replace(str(output_dir / name) + ': ', '')}")
            continue
        if grid is not None:
            mismatch = Geometry.from_affine(grid[0], grid[1]).mismatch(pred)
            if mismatch is not None:
                geometry.append(f"{name}: {mismatch} (input)")
        if data.dtype.kind == "f":
            sample = data[(data != np.round(data)) & np.isfinite(data)][:1]
            shown = f"{float(sample[0]):.4g}" if sample.size else "NaN/inf"
            labels.append(f"{name}: non-integer values (stored as {data.dtype}, e.g. {shown})")
            continue
        values = {int(v) for v in np.unique(data)}
        bad = sorted(values - set(LABELS))
        if bad:
            labels.append(f"{name}: labels {bad} outside {{0, 1, 2, 4}}")
        dtype = _stored_dtype(output_dir / name)
        if dtype is not None and dtype.kind == "f":
            float_storage.append(f"{name}: stored as {dtype}")
    checks: list[Check] = []
    if geometry:
        checks.append(
            failed(
                "output_geometry",
                _short(geometry),
                "save on the input's grid: nib.Nifti1Image(seg, t1.affine, t1.header) with seg.shape == t1.shape",
                geometry,
            )
        )
    else:
        checks.append(passed("output_geometry", "readable NIfTI with the input's shape and affine"))
    if labels:
        checks.append(
            failed(
                "output_labels",
                _short(labels),
                "write integer labels (uint8) in {0, 1, 2, 4}: 1 necrosis, 2 oedema, 4 enhancing tumour",
                labels,
            )
        )
    elif float_storage:
        checks.append(
            warning(
                "output_labels",
                f"integer labels stored as floats ({_short(float_storage)})",
                "store labels as uint8",
                float_storage,
            )
        )
    else:
        checks.append(passed("output_labels", "integer labels within {0, 1, 2, 4}"))
    return checks


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """``relative path -> (mode, size, mtime_ns)`` of everything below ``root``."""
    out: dict[str, tuple[int, int, int]] = {}
    for path in _walk(root):
        st = os.lstat(path)
        out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def check_containment(
    sandbox: Path, allowed: set[str], data_dir: Path, data_before: dict[str, tuple[int, int, int]], isolated: bool
) -> Check:
    """Nothing written beside ``output_path`` (its parent ``sandbox`` holds only ``allowed``) or into the inputs.

    On the local runtime this is how writes outside ``output_path`` are caught; in a container the image and the
    inputs are read-only and such writes fail the run itself.
    """
    details: list[str] = []
    after = snapshot(data_dir)
    changed = sorted(k for k in set(after) | set(data_before) if after.get(k) != data_before.get(k))
    details += [f"changed input {c}" for c in changed]
    for entry in sorted(sandbox.iterdir()) if sandbox.is_dir() else []:
        if entry.name in allowed:
            if entry.is_dir() and not entry.is_symlink() and entry.name != "predictions":
                details += [f"wrote {p.relative_to(sandbox)} (working directory)" for p in _walk(entry)]
            continue
        details.append(f"wrote {entry.name} beside output_path")
    if details:
        return failed(
            "containment",
            f"wrote outside output_path: {_short(details)}",
            "write predictions to output_path and scratch data nowhere else (sites mount only output_path writable)",
            details,
        )
    note = "inputs unchanged" + ("; image read-only, writes outside output_path fail the run" if isolated else "")
    return passed("containment", note)
