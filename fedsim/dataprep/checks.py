"""FeTS ``sanity_check`` and ``statistics`` over prepared data.

Shapes, spacings and affines come from headers only (cheap even for 240×240×155 volumes); voxel data is read
only for labels, whose values must be checked anyway.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from fedsim.dataprep.layout import (
    case_directories,
    first_existing,
    label_candidates,
    label_case_id,
    modality_candidates,
)
from fedsim.dataprep.params import DataPrepParams

SPACING_TOLERANCE = 1e-3
AFFINE_TOLERANCE = 1e-3
_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile)


@dataclass
class CheckResult:
    """Problems per case (every case seen, valid ones with an empty list), problems of the whole dataset,
    and label voxel counts of the cases whose label could be read."""

    cases: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    label_voxels: dict[str, dict[int, int]] = field(default_factory=dict)

    @property
    def invalid(self) -> dict[str, list[str]]:
        return {case: problems for case, problems in self.cases.items() if problems}

    def problems(self) -> list[str]:
        return self.general + [f"{case}: {p}" for case, problems in self.cases.items() for p in problems]


def _load(path: Path) -> Any:
    return nib.load(str(path))


def _header_problems(name: str, img: Any, params: DataPrepParams) -> list[str]:
    problems = []
    shape = tuple(int(v) for v in img.shape)
    if shape != tuple(params.expected_shape):
        problems.append(f"{name} shape {list(shape)} != expected {list(params.expected_shape)}")
    else:
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
        if not np.allclose(zooms, params.expected_spacing, rtol=0, atol=SPACING_TOLERANCE):
            problems.append(
                f"{name} spacing {[round(z, 4) for z in zooms]} != expected {list(params.expected_spacing)}"
            )
    return problems


def _check_case(
    case_id: str, directory: Path, label: Path | None, params: DataPrepParams, result: CheckResult
) -> list[str]:
    problems: list[str] = []
    reference: tuple[str, Any] | None = None  # first readable volume: the others must match its grid

    def against_reference(name: str, img: Any) -> None:
        nonlocal reference
        if reference is None:
            reference = (name, img)
            return
        ref_name, ref = reference
        if tuple(img.shape) != tuple(ref.shape):
            problems.append(f"{name} shape {list(img.shape)} does not match {ref_name} {list(ref.shape)}")
        elif not np.allclose(img.affine, ref.affine, rtol=0, atol=AFFINE_TOLERANCE):
            problems.append(f"{name} affine does not match {ref_name}")

    for modality in params.modalities:
        path = first_existing(directory, modality_candidates(case_id, modality))
        if path is None:
            problems.append(f"missing {modality} ({case_id}_brain_{modality}.nii.gz)")
            continue
        try:
            img = _load(path)
        except _READ_ERRORS as exc:
            problems.append(f"cannot read {modality}: {exc}")
            continue
        problems.extend(_header_problems(modality, img, params))
        against_reference(modality, img)

    leaked = sorted(p.name for p in directory.iterdir() if label_case_id(p.name) is not None)
    if leaked:
        problems.append(f"label file in the data directory, visible to models: {', '.join(leaked)}")

    if label is None:
        problems.append(f"missing label ({case_id}_final_seg.nii.gz in labels_path)")
        return problems
    try:
        img = _load(label)
        problems.extend(_header_problems("label", img, params))
        against_reference("label", img)
        values, counts = np.unique(np.asanyarray(img.dataobj), return_counts=True)
    except _READ_ERRORS as exc:
        problems.append(f"cannot read label: {exc}")
        return problems
    allowed = np.isin(values, np.asarray(params.labels))
    if not allowed.all():
        bad = [v.item() for v in values[~allowed][:10]]
        problems.append(f"label values {bad} outside {list(params.labels)}")
    result.label_voxels[case_id] = {
        int(v): int(n) for v, n, ok in zip(values, counts, allowed, strict=True) if ok and v != 0
    }
    return problems


def check_cases(data_path: str | Path, labels_path: str | Path, params: DataPrepParams) -> CheckResult:
    """Check every case in ``data_path`` against its label in ``labels_path`` (the prepared layout)."""
    data, labels = Path(data_path), Path(labels_path)
    result = CheckResult()
    if not data.is_dir():
        result.general.append(f"data_path {data} is not a directory")
    if not labels.is_dir():
        result.general.append(f"labels_path {labels} is not a directory")
    if result.general:
        return result

    directories = {d.name: d for d in case_directories(data)}
    label_ids = sorted({cid for p in labels.iterdir() if (cid := label_case_id(p.name)) and p.is_file()})
    if not directories:
        result.general.append(f"no case directories in data_path {data}")
    for case_id, directory in directories.items():
        label = first_existing(labels, label_candidates(case_id))
        result.cases[case_id] = _check_case(case_id, directory, label, params, result)
    for case_id in label_ids:
        if case_id not in directories:
            result.cases[case_id] = ["label without a case directory in data_path"]
    result.cases = dict(sorted(result.cases.items()))
    return result


def sanity_check(data_path: str | Path, labels_path: str | Path, params: DataPrepParams) -> list[str]:
    """Every problem found, one line each (``<case>: <problem>``); empty means the data is fit to use."""
    return check_cases(data_path, labels_path, params).problems()


def statistics(data_path: str | Path, labels_path: str | Path, params: DataPrepParams) -> dict[str, Any]:
    """Counts the organisers may see: valid/invalid subjects and the mean label voxels per valid case."""
    result = check_cases(data_path, labels_path, params)
    invalid = result.invalid
    valid = [c for c in result.cases if c not in invalid]
    mean_voxels: dict[int, float] = {}
    for value in (v for v in params.labels if v != 0):
        counts = [result.label_voxels.get(c, {}).get(value, 0) for c in valid]
        mean_voxels[int(value)] = round(float(np.mean(counts)), 2) if counts else 0.0
    return {
        "num_cases": len(result.cases),
        "num_valid_subjects": len(valid),
        "num_invalid_subjects": len(invalid),
        "invalid": invalid,
        "label_voxels": mean_voxels,
        "problems": list(result.general),
    }
