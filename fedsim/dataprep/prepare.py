"""FeTS ``prepare``: select, rename and anonymise cases into the layout every model cube reads.

Only the alias map (kept in ``metadata_path``, never mounted into a model) links aliases back to the
original case ids; the prepared data and labels carry aliases only.
"""

from __future__ import annotations

import csv
import gzip
import os
import random
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedsim.dataprep.layout import RawCase, find_raw_cases
from fedsim.dataprep.params import DataPrepParams
from fedsim.errors import SpecError

ALIAS_FORMAT = "FeTS22_Patient%04d"
ALIAS_MAP_NAME = "alias_map.csv"
REPORT_NAME = "prepare_report.yaml"
_ALIAS_RE = re.compile(r"^\.?FeTS22_Patient\d{4,}(\.partial)?$")
_LABEL_RE = re.compile(r"^FeTS22_Patient\d{4,}_final_seg\.nii\.gz(\.partial)?$")


@dataclass(frozen=True)
class PrepareReport:
    """What prepare did; written to ``metadata_path/prepare_report.yaml`` (it names original ids)."""

    selected: tuple[tuple[str, str], ...]  # (alias, original) in selection order
    num_valid: int
    invalid: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    split_skipped: Mapping[str, str] = field(default_factory=dict)  # split-file case → why it was not used
    params: DataPrepParams = field(default_factory=DataPrepParams)

    @property
    def num_selected(self) -> int:
        return len(self.selected)

    @property
    def num_invalid(self) -> int:
        return len(self.invalid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_selected": self.num_selected,
            "num_valid": self.num_valid,
            "num_invalid": self.num_invalid,
            "selected": [{"alias": a, "original": o} for a, o in self.selected],
            "invalid": {case: list(problems) for case, problems in self.invalid.items()},
            "split_skipped": dict(self.split_skipped),
            "params": self.params.to_dict(),
        }


def read_split_file(path: Path, known_cases: Sequence[str]) -> list[str]:
    """Case ids listed in a split CSV, in order, without duplicates.

    The column is ``subject_id`` when the header has one; otherwise the first column, and the first row
    is taken as a header unless it names a known case.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read split file: {exc}", file=str(path), field="split_file") from exc
    if not rows:
        return []
    header = [cell.strip() for cell in rows[0]]
    if "subject_id" in header:
        column, body = header.index("subject_id"), rows[1:]
    else:
        column = 0
        body = rows if header[0] in set(known_cases) else rows[1:]
    ordered: list[str] = []
    for row in body:
        case = row[column].strip() if column < len(row) else ""
        if case and case not in ordered:
            ordered.append(case)
    return ordered


def select_cases(
    cases: Mapping[str, RawCase], params: DataPrepParams, split: Sequence[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """Selected case ids in order, and the split-file cases that could not be used (with why).

    Split cases lead; the rest is ``random.Random(seed).sample`` of the sorted remaining valid cases, so the
    same data and seed always give the same selection and aliases.
    """
    skipped: dict[str, str] = {}
    leading: list[str] = []
    for case in split:
        if case not in cases:
            skipped[case] = "not found in data_path"
        elif not cases[case].valid:
            skipped[case] = "invalid: " + "; ".join(cases[case].problems)
        else:
            leading.append(case)
    limit = params.max_val_size
    if limit is not None and len(leading) >= limit:
        return leading[:limit], skipped
    remaining = sorted(c for c, rc in cases.items() if rc.valid and c not in set(leading))
    want = len(remaining) if limit is None else min(limit - len(leading), len(remaining))
    return leading + random.Random(params.seed).sample(remaining, want), skipped


def _check_output_paths(data_path: Path, outputs: Mapping[str, Path]) -> None:
    """Refuse overlapping directories: labels or the alias map inside the model's data dir would leak."""
    named = {"data_path": data_path.resolve(), **{k: v.resolve() for k, v in outputs.items()}}
    items = list(named.items())
    for i, (name_a, a) in enumerate(items):
        for name_b, b in items[i + 1 :]:
            if a == b or a in b.parents or b in a.parents:
                raise SpecError(f"{name_a} ({a}) and {name_b} ({b}) must not overlap", field=name_b)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _clear_owned(output_path: Path, labels_path: Path, metadata_path: Path) -> None:
    """Remove what an earlier (possibly interrupted) prepare wrote; refuse to touch anything else.

    Foreign entries in the data or labels directory would be seen by every model and the metrics cube, so
    they stop the run; the metadata directory may hold other site files and only our own are removed.
    """
    meta_names = {n + s for n in (ALIAS_MAP_NAME, REPORT_NAME) for s in ("", ".partial")}
    plan: list[tuple[Path, Any, bool]] = [
        (output_path, _ALIAS_RE.match, True),
        (labels_path, _LABEL_RE.match, True),
        (metadata_path, meta_names.__contains__, False),
    ]
    doomed: list[Path] = []
    for directory, is_owned, strict in plan:
        directory.mkdir(parents=True, exist_ok=True)
        foreign = []
        for entry in sorted(directory.iterdir()):
            if is_owned(entry.name):
                doomed.append(entry)
            elif strict and entry.name != ".gitkeep":
                foreign.append(entry.name)
        if foreign:
            raise SpecError(
                f"contains entries prepare did not write ({', '.join(foreign[:5])}); "
                "empty it or choose another directory",
                file=str(directory),
            )
    for entry in doomed:
        _remove(entry)


def _copy_nifti(source: Path, target: Path) -> None:
    """Copy the bytes (no re-encoding); an uncompressed ``.nii`` is gzipped to match the ``.nii.gz`` name."""
    if source.name.endswith(".gz"):
        shutil.copyfile(source, target)
    else:
        with source.open("rb") as src, gzip.open(target, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def prepare(
    data_path: str | Path,
    output_path: str | Path,
    output_labels_path: str | Path,
    metadata_path: str | Path,
    params: DataPrepParams | None = None,
) -> PrepareReport:
    """Select at most ``max_val_size`` valid cases and write them under FeTS aliases.

    Re-running over a half-written output is safe: each case is written to a hidden ``.partial`` directory
    and renamed when complete, and everything an earlier run wrote is cleared first.
    """
    params = params or DataPrepParams()
    data = Path(data_path)
    out, labels, meta = Path(output_path), Path(output_labels_path), Path(metadata_path)
    if not data.is_dir():
        raise SpecError("data_path is not a directory", file=str(data), field="data_path")
    _check_output_paths(data, {"output_path": out, "output_labels_path": labels, "metadata_path": meta})

    cases = find_raw_cases(data, modalities=params.modalities)
    split: list[str] = []
    if params.split_file:
        split_path = data / params.split_file
        if not split_path.is_file():
            raise SpecError("split file not found under data_path", file=str(split_path), field="split_file")
        split = read_split_file(split_path, list(cases))
    selection, skipped = select_cases(cases, params, split)
    invalid = {c: rc.problems for c, rc in cases.items() if not rc.valid}
    if not selection:
        reasons = "; ".join(f"{c}: {', '.join(p)}" for c, p in list(invalid.items())[:5])
        raise SpecError(
            f"no valid case to prepare ({len(cases)} case directories{'; ' + reasons if reasons else ''})",
            file=str(data),
            field="data_path",
        )

    _clear_owned(out, labels, meta)
    selected: list[tuple[str, str]] = []
    for index, case_id in enumerate(selection, start=1):
        alias = ALIAS_FORMAT % index
        raw = cases[case_id]
        partial = out / f".{alias}.partial"
        partial.mkdir()
        for modality in params.modalities:
            _copy_nifti(raw.modalities[modality], partial / f"{alias}_brain_{modality}.nii.gz")
        assert raw.label is not None  # valid cases have a label
        label_tmp = labels / f"{alias}_final_seg.nii.gz.partial"
        _copy_nifti(raw.label, label_tmp)
        os.replace(label_tmp, labels / f"{alias}_final_seg.nii.gz")
        os.replace(partial, out / alias)
        selected.append((alias, case_id))

    report = PrepareReport(tuple(selected), len(cases) - len(invalid), invalid, skipped, params)
    tmp = meta / (ALIAS_MAP_NAME + ".partial")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["alias", "original"])
        writer.writerows(selected)
    os.replace(tmp, meta / ALIAS_MAP_NAME)
    _write_atomic(meta / REPORT_NAME, yaml.safe_dump(report.to_dict(), sort_keys=False))
    return report
