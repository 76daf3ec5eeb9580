"""fedsim.dataprep on tiny raw datasets: discovery, prepare (selection, aliases, re-runs), checks, stats."""

from __future__ import annotations

import csv
import gzip
import random
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fedsim.dataprep import (
    DataPrepParams,
    find_raw_cases,
    prepare,
    sanity_check,
    select_cases,
    statistics,
)
from fedsim.errors import SpecError

SHAPE = (8, 8, 6)
MODS = ("t1", "t1ce", "t2", "flair")
PARAMS = DataPrepParams(expected_shape=SHAPE)


def write_nii(
    path: Path,
    data: np.ndarray | None = None,
    *,
    shape: Sequence[int] = SHAPE,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> Path:
    if data is None:
        data = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape)
    affine = np.diag([*spacing, 1.0])
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def label_volume(shape: Sequence[int] = SHAPE, *, values: Sequence[int] = (1, 2, 4)) -> np.ndarray:
    """Label 1 on 2 voxels, 2 on 3, 4 on 4 (or the given values in that pattern)."""
    seg = np.zeros(shape, dtype=np.uint8)
    flat = seg.reshape(-1)
    start = 0
    for n, value in zip((2, 3, 4), values, strict=False):
        flat[start : start + n] = value
        start += n
    return seg


def make_raw_case(
    root: Path,
    case: str,
    *,
    modalities: Sequence[str] = MODS,
    label: str | None = "seg",
    prefix: str = "_",
    ext: str = ".nii.gz",
) -> Path:
    directory = root / case
    directory.mkdir(parents=True, exist_ok=True)
    for m in modalities:
        write_nii(directory / f"{case}{prefix}{m}{ext}")
    if label:
        write_nii(directory / f"{case}_{label}{ext}", label_volume())
    return directory


def make_raw_dataset(root: Path, n: int, *, invalid: Sequence[str] = ()) -> list[str]:
    cases = [f"BraTS2021_{i:05d}" for i in range(n)]
    for case in cases:
        make_raw_case(root, case)
    for case in invalid:
        make_raw_case(root, case, modalities=("t1", "t2", "flair"))
    return cases


def run_prepare(tmp_path: Path, params: DataPrepParams = PARAMS, data: Path | None = None):
    out, labels, meta = tmp_path / "prepared", tmp_path / "labels", tmp_path / "metadata"
    report = prepare(data or tmp_path / "data", out, labels, meta, params)
    return report, out, labels, meta


# ---------------------------------------------------------------- discovery


def test_find_raw_cases_accepts_spellings_and_records_invalid(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_raw_case(data, "A")
    make_raw_case(data, "B", prefix="_brain_", label="final_seg")
    make_raw_case(data, "C", ext=".nii")
    make_raw_case(data, "D", modalities=("t1", "t2", "flair"))
    make_raw_case(data, "E", label=None)
    (data / "split.csv").write_text("subject_id\nA\n")  # files at the top are not cases
    (data / ".hidden").mkdir()

    cases = find_raw_cases(data)
    assert list(cases) == ["A", "B", "C", "D", "E"]
    assert all(cases[c].valid for c in "ABC")
    assert cases["B"].modalities["t1ce"].name == "B_brain_t1ce.nii.gz"
    assert cases["B"].label is not None and cases["B"].label.name == "B_final_seg.nii.gz"
    assert cases["C"].modalities["flair"].name == "C_flair.nii"
    assert not cases["D"].valid and any("t1ce" in p for p in cases["D"].problems)
    assert "t1" in cases["D"].modalities and "t1ce" not in cases["D"].modalities
    assert not cases["E"].valid and any("label" in p for p in cases["E"].problems)


def test_t1_is_not_confused_with_t1ce(tmp_path: Path) -> None:
    make_raw_case(tmp_path, "A", modalities=("t1ce", "t2", "flair"))
    case = find_raw_cases(tmp_path)["A"]
    assert case.problems == ("missing t1 (A_t1.nii.gz)",)


# ---------------------------------------------------------------- selection


def test_selection_is_seeded_sample_of_sorted_valid_cases(tmp_path: Path) -> None:
    cases = make_raw_dataset(tmp_path, 10, invalid=["Broken"])
    found = find_raw_cases(tmp_path)
    params = DataPrepParams(max_val_size=4, seed=42, expected_shape=SHAPE)
    selection, skipped = select_cases(found, params)
    assert selection == random.Random(42).sample(sorted(cases), 4)
    assert select_cases(found, params) == (selection, skipped)
    assert skipped == {}
    assert "Broken" not in selection
    others = {tuple(select_cases(found, DataPrepParams(max_val_size=4, seed=s))[0]) for s in range(5)}
    assert len(others) > 1  # the seed matters


def test_no_limit_selects_every_valid_case(tmp_path: Path) -> None:
    cases = make_raw_dataset(tmp_path, 5, invalid=["Broken"])
    selection, _ = select_cases(find_raw_cases(tmp_path), DataPrepParams())
    assert sorted(selection) == cases


def test_prepare_is_deterministic(tmp_path: Path) -> None:
    make_raw_dataset(tmp_path / "data", 6)
    params = DataPrepParams(max_val_size=3, seed=3, expected_shape=SHAPE)
    first, *_ = run_prepare(tmp_path / "one", params, data=tmp_path / "data")
    second, *_ = run_prepare(tmp_path / "two", params, data=tmp_path / "data")
    assert first.selected == second.selected
    assert first.num_selected == 3


@pytest.mark.parametrize(
    "csv_text",
    [
        "subject_id,fold\nBraTS2021_00007,1\nBraTS2021_00002,1\n",
        "fold,subject_id\n1,BraTS2021_00007\n1,BraTS2021_00002\n1,BraTS2021_00007\n",
        "case\nBraTS2021_00007\nBraTS2021_00002\n",
        "BraTS2021_00007\nBraTS2021_00002\n",
    ],
)
def test_split_file_leads_the_selection(tmp_path: Path, csv_text: str) -> None:
    data = tmp_path / "data"
    cases = make_raw_dataset(data, 10)
    (data / "splits").mkdir()
    (data / "splits" / "val.csv").write_text(csv_text)
    params = DataPrepParams(max_val_size=5, seed=1, split_file="splits/val.csv", expected_shape=SHAPE)
    report, *_ = run_prepare(tmp_path, params)
    originals = [o for _, o in report.selected]
    assert originals[:2] == ["BraTS2021_00007", "BraTS2021_00002"]
    rest = sorted(set(cases) - {"BraTS2021_00007", "BraTS2021_00002"})
    assert originals[2:] == random.Random(1).sample(rest, 3)
    assert report.selected[0] == ("FeTS22_Patient0001", "BraTS2021_00007")


def test_split_file_longer_than_limit_and_unusable_entries(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_raw_dataset(data, 4, invalid=["Broken"])
    (data / "split.csv").write_text("subject_id\nNope\nBroken\nBraTS2021_00003\nBraTS2021_00001\nBraTS2021_00000\n")
    params = DataPrepParams(max_val_size=2, split_file="split.csv", expected_shape=SHAPE)
    report, *_ = run_prepare(tmp_path, params)
    assert [o for _, o in report.selected] == ["BraTS2021_00003", "BraTS2021_00001"]
    assert set(report.split_skipped) == {"Nope", "Broken"}
    assert "t1ce" in report.split_skipped["Broken"]


def test_missing_split_file(tmp_path: Path) -> None:
    make_raw_dataset(tmp_path / "data", 2)
    with pytest.raises(SpecError) as info:
        run_prepare(tmp_path, DataPrepParams(split_file="nope.csv", expected_shape=SHAPE))
    assert info.value.field == "split_file"


# ---------------------------------------------------------------- outputs


def test_aliases_layout_and_alias_map(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_raw_dataset(data, 3)
    make_raw_case(data, "Uncompressed", ext=".nii", prefix="_brain_", label="final_seg")
    report, out, labels, meta = run_prepare(tmp_path)

    aliases = [f"FeTS22_Patient{i:04d}" for i in range(1, 5)]
    assert [a for a, _ in report.selected] == aliases
    assert sorted(p.name for p in out.iterdir()) == aliases
    for alias, original in report.selected:
        assert sorted(p.name for p in (out / alias).iterdir()) == sorted(f"{alias}_brain_{m}.nii.gz" for m in MODS)
        raw_dir = data / original
        for m in MODS:
            target = out / alias / f"{alias}_brain_{m}.nii.gz"
            with gzip.open(target) as handle:  # really gzip, whatever the source was
                handle.read(10)
            src = next(raw_dir.glob(f"{original}*_{m}.nii*"))
            if src.name.endswith(".gz"):
                assert target.read_bytes() == src.read_bytes()  # bytes copied, not re-encoded
            expected = np.asanyarray(nib.load(str(src)).dataobj)
            np.testing.assert_array_equal(np.asanyarray(nib.load(str(target)).dataobj), expected)
        label = labels / f"{alias}_final_seg.nii.gz"
        np.testing.assert_array_equal(np.asanyarray(nib.load(str(label)).dataobj), label_volume())

    with (meta / "alias_map.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["alias"], r["original"]) for r in rows] == list(report.selected)
    assert (meta / "prepare_report.yaml").is_file()
    assert sanity_check(out, labels, PARAMS) == []


def test_nothing_identifying_or_label_in_prepared_data(tmp_path: Path) -> None:
    cases = make_raw_dataset(tmp_path / "data", 3)
    _, out, labels, _ = run_prepare(tmp_path)
    names = [str(p.relative_to(out)) for p in out.rglob("*")]
    assert names
    assert not [n for n in names if any(c in n for c in cases)]
    assert not [n for n in names if "seg" in n or n.endswith((".csv", ".yaml"))]
    label_names = [p.name for p in labels.iterdir()]
    assert all(n.startswith("FeTS22_Patient") and n.endswith("_final_seg.nii.gz") for n in label_names)


@pytest.mark.parametrize(
    ("out", "labels", "meta"),
    [
        ("prepared", "prepared/labels", "metadata"),  # labels visible to the model
        ("prepared", "labels", "prepared/meta"),  # alias map visible to the model
        ("data/prepared", "labels", "metadata"),  # output inside the raw data
        ("prepared", "prepared", "metadata"),
    ],
)
def test_overlapping_directories_are_refused(tmp_path: Path, out: str, labels: str, meta: str) -> None:
    make_raw_dataset(tmp_path / "data", 2)
    with pytest.raises(SpecError, match="must not overlap"):
        prepare(tmp_path / "data", tmp_path / out, tmp_path / labels, tmp_path / meta, PARAMS)


def test_no_valid_case_is_an_error(tmp_path: Path) -> None:
    make_raw_case(tmp_path / "data", "A", label=None)
    with pytest.raises(SpecError, match="no valid case"):
        run_prepare(tmp_path)
    assert not (tmp_path / "prepared").exists()  # nothing written


def test_rerun_over_half_written_output(tmp_path: Path) -> None:
    make_raw_dataset(tmp_path / "data", 6)
    big = DataPrepParams(max_val_size=5, expected_shape=SHAPE)
    _, out, labels, meta = run_prepare(tmp_path, big)
    # Simulate a crash of a later attempt: a partial case dir, a partial label and a partial alias map.
    (out / ".FeTS22_Patient0006.partial").mkdir()
    (out / ".FeTS22_Patient0006.partial" / "junk.nii.gz").write_bytes(b"x")
    (labels / "FeTS22_Patient0006_final_seg.nii.gz.partial").write_bytes(b"x")
    (meta / "alias_map.csv.partial").write_text("half")
    (meta / "site_notes.txt").write_text("keep me")
    (out / ".gitkeep").touch()

    small = DataPrepParams(max_val_size=2, seed=9, expected_shape=SHAPE)
    report, *_ = run_prepare(tmp_path, small)
    assert sorted(p.name for p in out.iterdir()) == [".gitkeep", "FeTS22_Patient0001", "FeTS22_Patient0002"]
    assert sorted(p.name for p in labels.iterdir()) == [
        "FeTS22_Patient0001_final_seg.nii.gz",
        "FeTS22_Patient0002_final_seg.nii.gz",
    ]
    assert sorted(p.name for p in meta.iterdir()) == [
        "alias_map.csv",
        "prepare_report.yaml",
        "site_notes.txt",
    ]
    assert report.num_selected == 2
    assert sanity_check(out, labels, PARAMS) == []


def test_foreign_files_in_output_stop_prepare_before_deleting(tmp_path: Path) -> None:
    make_raw_dataset(tmp_path / "data", 2)
    _, out, labels, _ = run_prepare(tmp_path)
    (out / "someone_elses_dir").mkdir()
    with pytest.raises(SpecError, match="someone_elses_dir"):
        run_prepare(tmp_path)
    assert (out / "FeTS22_Patient0001").is_dir()
    assert (labels / "FeTS22_Patient0001_final_seg.nii.gz").is_file()


# ---------------------------------------------------------------- sanity_check


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[Path, Path]:
    make_raw_dataset(tmp_path / "data", 3)
    _, out, labels, _ = run_prepare(tmp_path)
    assert sanity_check(out, labels, PARAMS) == []
    return out, labels


P1 = "FeTS22_Patient0001"


def only_problem(out: Path, labels: Path, params: DataPrepParams = PARAMS) -> str:
    problems = sanity_check(out, labels, params)
    assert len(problems) == 1, problems
    return problems[0]


def test_sanity_missing_modality(prepared: tuple[Path, Path]) -> None:
    out, labels = prepared
    (out / P1 / f"{P1}_brain_t2.nii.gz").unlink()
    problem = only_problem(out, labels)
    assert problem.startswith(f"{P1}: missing t2")


def test_sanity_missing_label_and_orphan_label(prepared: tuple[Path, Path]) -> None:
    out, labels = prepared
    (labels / f"{P1}_final_seg.nii.gz").rename(labels / "FeTS22_Patient0099_final_seg.nii.gz")
    problems = sanity_check(out, labels, PARAMS)
    assert any(p.startswith(f"{P1}: missing label") for p in problems)
    assert "FeTS22_Patient0099: label without a case directory in data_path" in problems
    assert len(problems) == 2


def test_sanity_wrong_shape(prepared: tuple[Path, Path]) -> None:
    out, labels = prepared
    for m in MODS:
        write_nii(out / P1 / f"{P1}_brain_{m}.nii.gz", shape=(8, 8, 5))
    write_nii(labels / f"{P1}_final_seg.nii.gz", label_volume((8, 8, 5)))
    problems = sanity_check(out, labels, PARAMS)
    assert len(problems) == 5
    assert f"{P1}: t1 shape [8, 8, 5] != expected [8, 8, 6]" in problems


def test_sanity_wrong_spacing(prepared: tuple[Path, Path]) -> None:
    out, labels = prepared
    write_nii(out / P1 / f"{P1}_brain_flair.nii.gz", spacing=(1.0, 1.0, 1.2))
    problems = sanity_check(out, labels, PARAMS)
    assert any("flair spacing" in p for p in problems)
    assert all(p.startswith(P1) for p in problems)
    # within tolerance is fine
    write_nii(out / P1 / f"{P1}_brain_flair.nii.gz", spacing=(1.0, 1.0, 1.0005))
    assert sanity_check(out, labels, PARAMS) == []


def test_sanity_label_values(prepared: tuple[Path, Path]) -> None:
    out, labels = prepared
    write_nii(labels / f"{P1}_final_seg.nii.gz", label_volume(values=(1, 3, 4)))
    assert only_problem(out, labels) == f"{P1}: label values [3] outside [0, 1, 2, 4]"


def test_sanity_modalities_not_matching(prepared: tuple[Path, Path]) -> None:
    out, labels = prepared
    path = out / P1 / f"{P1}_brain_t1ce.nii.gz"
    data = np.zeros(SHAPE, dtype=np.int16)
    affine = np.eye(4)
    affine[:3, 3] = [5.0, 0.0, 0.0]  # same grid size, shifted origin
    nib.save(nib.Nifti1Image(data, affine), str(path))
    assert only_problem(out, labels) == f"{P1}: t1ce affine does not match t1"


def test_sanity_unreadable_file(prepared: tuple[Path, Path]) -> None:
    out, labels = prepared
    (out / P1 / f"{P1}_brain_t1.nii.gz").write_bytes(b"not a nifti")
    assert only_problem(out, labels).startswith(f"{P1}: cannot read t1")
    full = (labels / f"{P1}_final_seg.nii.gz").read_bytes()
    (labels / f"{P1}_final_seg.nii.gz").write_bytes(full[: len(full) // 2])  # truncated gzip
    assert any(p.startswith(f"{P1}: cannot read label") for p in sanity_check(out, labels, PARAMS))


def test_sanity_label_leaked_into_data(prepared: tuple[Path, Path]) -> None:
    out, labels = prepared
    (out / P1 / f"{P1}_final_seg.nii.gz").write_bytes((labels / f"{P1}_final_seg.nii.gz").read_bytes())
    assert "visible to models" in only_problem(out, labels)


def test_sanity_missing_or_empty_directories(tmp_path: Path) -> None:
    problems = sanity_check(tmp_path / "nope", tmp_path / "nolabels", PARAMS)
    assert len(problems) == 2
    (tmp_path / "data").mkdir()
    (tmp_path / "labels").mkdir()
    assert sanity_check(tmp_path / "data", tmp_path / "labels", PARAMS) == [
        f"no case directories in data_path {tmp_path / 'data'}"
    ]


def test_sanity_default_shape_is_fets(prepared: tuple[Path, Path]) -> None:
    out, labels = prepared
    problems = sanity_check(out, labels, DataPrepParams())
    assert len(problems) == 3 * 5  # every volume of every case is 8x8x6, not 240x240x155


# ---------------------------------------------------------------- statistics


def test_statistics_counts(prepared: tuple[Path, Path]) -> None:
    out, labels = prepared
    stats = statistics(out, labels, PARAMS)
    assert stats == {
        "num_cases": 3,
        "num_valid_subjects": 3,
        "num_invalid_subjects": 0,
        "invalid": {},
        "label_voxels": {1: 2.0, 2: 3.0, 4: 4.0},
        "problems": [],
    }
    (out / P1 / f"{P1}_brain_t2.nii.gz").unlink()
    (labels / "FeTS22_Patient0003_final_seg.nii.gz").unlink()
    stats = statistics(out, labels, PARAMS)
    assert stats["num_cases"] == 3
    assert stats["num_valid_subjects"] == 1
    assert stats["num_invalid_subjects"] == 2
    assert set(stats["invalid"]) == {P1, "FeTS22_Patient0003"}
    assert stats["invalid"][P1] == [f"missing t2 ({P1}_brain_t2.nii.gz)"]
    assert stats["label_voxels"] == {1: 2.0, 2: 3.0, 4: 4.0}
