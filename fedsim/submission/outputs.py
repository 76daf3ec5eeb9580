"""Validate what ``infer`` wrote: one ``<case>.nii.gz`` per case and nothing else, each a readable NIfTI on the
input's grid with integer labels in {0, 1, 2, 4}; and that nothing was written outside ``output_path``.

The per-case validation is :mod:`fedsim.metrics.predictions`, the same code every benchmark run applies after
each successful ``infer``; this module turns its findings into ``check-submission``'s named checks.
"""

from __future__ import annotations

import os
from pathlib import Path

from fedsim.metrics.predictions import LABELS, PRED_SUFFIX, check_case, scan_files
from fedsim.metrics.predictions import walk as _walk
from fedsim.submission.report import Check, failed, passed, skipped, warning

__all__ = ["LABELS", "PRED_SUFFIX", "check_containment", "check_files", "check_volumes", "snapshot"]

_SHOWN = 4
_MEANING = {LABELS: ": 1 necrosis, 2 oedema, 4 enhancing tumour", (0, 1, 2, 3, 4): ": 1 NETC, 2 SNFH, 3 ET, 4 RC"}


def _short(items: list[str]) -> str:
    return ", ".join(items[:_SHOWN]) + (f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def check_files(output_dir: Path, cases: tuple[str, ...]) -> tuple[Check, list[str]]:
    """Exactly one regular ``<case>.nii.gz`` per case and nothing else; returns the check and the cases present."""
    scan = scan_files(output_dir, cases)
    expected = [f"{c}{PRED_SUFFIX}" for c in cases]
    details = (
        [f"missing {m}" for m in scan.missing]
        + [f"symlink {s}" for s in scan.links]
        + [f"unexpected {e}" for e in scan.extra]
    )
    if scan.empty:
        return failed(
            "output_files",
            f"wrote no prediction (expected {_short(expected)})",
            "write <output_path>/<case>.nii.gz for every case directory under data_path",
            details,
        ), []
    problems = []
    if scan.missing:
        problems.append(f"missing {_short(scan.missing)}")
    if scan.links:
        problems.append(f"symlinks {_short(scan.links)}")
    if problems:  # a case the metrics cube scores as missing: FAIL (extra entries listed as a hint: misnamed?)
        if scan.extra:
            problems.append(f"unexpected {_short(scan.extra)}")
        fix = "write exactly one regular file <output_path>/<case>.nii.gz per case (the case folder's name), no other"
        if scan.links:
            fix += "; write files, not symlinks"
        return failed("output_files", "; ".join(problems), fix, details), scan.present
    if scan.extra:  # every case is there; the federation's metrics cube ignores other files: WARN, not FAIL
        return warning(
            "output_files",
            f"one <case>.nii.gz per case ({len(scan.present)}), and also unexpected {_short(scan.extra)} "
            "(ignored by the metrics cube, counted in the output size limit)",
            "write only the predictions to output_path: progress and heartbeats to stdout, scratch data to /tmp",
            details,
        ), scan.present
    return passed("output_files", f"one <case>.nii.gz per case ({len(scan.present)})"), scan.present


def check_volumes(
    output_dir: Path, data_dir: Path, cases: list[str], labels: tuple[int, ...] = LABELS
) -> list[Check]:
    """The ``output_geometry`` and ``output_labels`` checks over the predictions that exist (``labels``: the
    benchmark's label values)."""
    if not cases:
        why = "no prediction with the expected name to inspect"
        return [skipped("output_geometry", why), skipped("output_labels", why)]
    shown = "{" + ", ".join(str(v) for v in sorted(labels)) + "}"
    geometry: list[str] = []
    bad_labels: list[str] = []
    float_storage: list[str] = []
    for case in cases:
        for f in check_case(output_dir, data_dir, case, labels):
            line = f"{f.name}: {f.text}"
            (float_storage if f.warning else geometry if f.check == "output_geometry" else bad_labels).append(line)
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
    if bad_labels:
        checks.append(
            failed(
                "output_labels",
                _short(bad_labels),
                f"write integer labels (uint8) in {shown}"
                + _MEANING.get(tuple(labels), ""),
                bad_labels,
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
        checks.append(passed("output_labels", f"integer labels within {shown}"))
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
