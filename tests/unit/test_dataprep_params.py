"""DataPrepParams: defaults, YAML loading and the errors that name the file and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fedsim.dataprep import DataPrepParams
from fedsim.errors import SpecError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "parameters.yaml"
    path.write_text(text)
    return path


def test_defaults_are_fets() -> None:
    p = DataPrepParams()
    assert p.max_val_size is None
    assert p.seed == 0
    assert p.split_file is None
    assert p.expected_shape == (240, 240, 155)
    assert p.expected_spacing == (1.0, 1.0, 1.0)
    assert p.labels == (0, 1, 2, 4)
    assert p.modalities == ("t1", "t1ce", "t2", "flair")


def test_from_yaml_reads_every_key_as_tuples(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "max_val_size: 3\nseed: 7\nsplit_file: splits/val.csv\nexpected_shape: [8, 8, 6]\n"
        "expected_spacing: [1, 1, 1.5]\nlabels: [0, 1]\nmodalities: [t1, flair]\n",
    )
    p = DataPrepParams.from_yaml(path)
    assert p == DataPrepParams(3, 7, "splits/val.csv", (8, 8, 6), (1, 1, 1.5), (0, 1), ("t1", "flair"))
    assert isinstance(p.expected_shape, tuple)
    hash(p)  # frozen and hashable
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.seed = 1  # type: ignore[misc]


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert DataPrepParams.from_yaml(write(tmp_path, "# nothing\n")) == DataPrepParams()


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "seed: 1\nmax_val_sise: 3\n")
    with pytest.raises(SpecError) as info:
        DataPrepParams.from_yaml(path)
    assert info.value.file == str(path)
    assert info.value.field == "max_val_sise"
    assert str(path) in str(info.value) and "max_val_sise" in str(info.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("max_val_size: 0", "max_val_size"),
        ("max_val_size: true", "max_val_size"),
        ("seed: abc", "seed"),
        ("split_file: /etc/split.csv", "split_file"),
        ("split_file: ../split.csv", "split_file"),
        ("expected_shape: [8, 8]", "expected_shape"),
        ("expected_shape: 8", "expected_shape"),
        ("expected_spacing: [1, 0, 1]", "expected_spacing"),
        ("labels: [0, 1, 1]", "labels"),
        ("labels: []", "labels"),
        ("modalities: [t1, '../x']", "modalities"),
    ],
)
def test_invalid_values_name_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(SpecError) as info:
        DataPrepParams.from_yaml(path)
    assert info.value.file == str(path)
    assert info.value.field == field


@pytest.mark.parametrize("text", ["- a\n- b\n", "seed: [1\n"])
def test_malformed_yaml(tmp_path: Path, text: str) -> None:
    with pytest.raises(SpecError, match=r"parameters\.yaml"):
        DataPrepParams.from_yaml(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        DataPrepParams.from_yaml(tmp_path / "absent.yaml")


def test_direct_construction_validates() -> None:
    with pytest.raises(SpecError) as info:
        DataPrepParams(max_val_size=-1)
    assert info.value.field == "max_val_size"
    assert DataPrepParams(labels=[0, 1]).labels == (0, 1)  # type: ignore[arg-type]


def test_to_dict_round_trips() -> None:
    p = DataPrepParams(max_val_size=2, seed=5, expected_shape=(8, 8, 6))
    assert DataPrepParams.from_mapping(p.to_dict()) == p
