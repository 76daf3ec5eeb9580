"""Where the files of a case live, in the raw BraTS layout and in the FeTS prepared layout.

Raw:       ``<data>/<case>/<case>_{t1,t1ce,t2,flair}.nii.gz`` (or ``_brain_``-prefixed, or ``.nii``)
           and the label ``<data>/<case>/<case>_seg.nii.gz`` (or ``_final_seg``).
Prepared:  ``<data>/<alias>/<alias>_brain_<mod>.nii.gz`` and ``<labels>/<alias>_final_seg.nii.gz``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fedsim.dataprep.params import DEFAULT_MODALITIES

NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")
# Preference order when several spellings exist: the FeTS (skull-stripped, "_brain_") name first.
_MODALITY_INFIXES: tuple[str, ...] = ("_brain_", "_")
_LABEL_SUFFIXES: tuple[str, ...] = ("_final_seg", "_seg")


@dataclass(frozen=True)
class RawCase:
    """One subject directory: the files found for it and, if it cannot be used, why."""

    case_id: str
    path: Path
    modalities: Mapping[str, Path] = field(default_factory=dict)
    label: Path | None = None
    problems: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems


def modality_candidates(case_id: str, modality: str) -> list[str]:
    """File names accepted for one modality, most preferred first."""
    return [f"{case_id}{infix}{modality}{ext}" for ext in NIFTI_EXTENSIONS for infix in _MODALITY_INFIXES]


def label_candidates(case_id: str) -> list[str]:
    """File names accepted for a case's label, most preferred first."""
    return [f"{case_id}{suffix}{ext}" for ext in NIFTI_EXTENSIONS for suffix in _LABEL_SUFFIXES]


def first_existing(directory: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def case_directories(data_path: Path) -> list[Path]:
    """Sub-directories that are cases, sorted; hidden entries (our own ``.partial`` dirs) are skipped."""
    return sorted(p for p in data_path.iterdir() if p.is_dir() and not p.name.startswith("."))


def label_case_id(file_name: str) -> str | None:
    """The case a label file belongs to, or None when the name is not a label name."""
    for ext in NIFTI_EXTENSIONS:
        for suffix in _LABEL_SUFFIXES:
            tail = suffix + ext
            if file_name.endswith(tail) and len(file_name) > len(tail):
                return file_name[: -len(tail)]
    return None


def find_raw_cases(data_path: str | Path, *, modalities: Iterable[str] = DEFAULT_MODALITIES) -> dict[str, RawCase]:
    """All case directories under ``data_path``, sorted by id; incomplete ones carry their problems.

    Files directly under ``data_path`` (a split CSV, a README) are not cases and are ignored.
    """
    data_path = Path(data_path)
    cases: dict[str, RawCase] = {}
    for directory in case_directories(data_path):
        case_id = directory.name
        found: dict[str, Path] = {}
        problems: list[str] = []
        for modality in modalities:
            path = first_existing(directory, modality_candidates(case_id, modality))
            if path is None:
                problems.append(f"missing {modality} ({case_id}_{modality}.nii.gz)")
            else:
                found[modality] = path
        label = first_existing(directory, label_candidates(case_id))
        if label is None:
            problems.append(f"missing label ({case_id}_seg.nii.gz)")
        cases[case_id] = RawCase(case_id, directory, found, label, tuple(problems))
    return cases
