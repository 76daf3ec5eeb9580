"""Loading per-institution results YAML: what is accepted, and one-line errors naming file and field."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fedsim.errors import SpecError
from fedsim.ranking import load_institutions

GOOD = """\
case_001:
  modelA: {Dice_ET: 0.8, Hausdorff95_ET: 3.5, Dice_TC: null, Sensitivity_ET: 0.9, TP_ET: 120,
           missing_pred: false, LesionWise_Dice_ET: 0.7}
  modelB: {Dice_ET: .nan, Hausdorff95_ET: 12}
2:
  modelA: {Dice_ET: 1, Hausdorff95_WT: 0}
"""


def test_loads_sorted_institutions_with_na_and_extra_keys(tmp_path: Path) -> None:
    (tmp_path / "siteB.yaml").write_text(GOOD)
    (tmp_path / "siteA.yml").write_text("c1:\n  modelC: {Dice_WT: 0.5}\n")
    (tmp_path / "notes.txt").write_text("ignored")
    loaded = load_institutions(tmp_path)
    assert list(loaded) == ["siteA", "siteB"]
    site_b = loaded["siteB"]
    assert site_b.source == str(tmp_path / "siteB.yaml")
    assert site_b.case_ids == ("2", "case_001")
    assert site_b.algorithms == ("modelA", "modelB")
    a = site_b.cases["case_001"]["modelA"]
    assert a["Dice_ET"] == 0.8 and a["TP_ET"] == 120.0 and a["missing_pred"] == 0.0
    assert math.isnan(a["Dice_TC"]) and math.isnan(site_b.cases["case_001"]["modelB"]["Dice_ET"])
    # Rows follow case_ids ("2", "case_001"); null/NaN → 0.
    assert site_b.values("Dice", "ET", ("modelA", "modelB")).tolist() == [[1.0, 0.0], [0.8, 0.0]]


def _assert_one_line_error(exc: SpecError, file: Path, field: str | None, fragment: str) -> None:
    message = str(exc)
    assert "\n" not in message
    assert exc.file == str(file)
    assert message.startswith(str(file))
    assert exc.field == field
    if field is not None:
        assert f": {field}: " in message
    assert fragment in message


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        pytest.param("- case_001\n- case_002\n", None, "top level must be a mapping", id="top-list"),
        pytest.param("", None, "is empty", id="empty-file"),
        pytest.param("{}\n", None, "no cases", id="no-cases"),
        pytest.param("case_001: {}\n", None, "no algorithm has a result", id="no-algorithms"),
        pytest.param("case_001: 0.8\n", "case_001", "must be a mapping algorithm -> metrics", id="case-scalar"),
        pytest.param(
            "case_001:\n  modelA: [0.8, 3.5]\n", "case_001.modelA", "must be a mapping metric", id="algo-list"
        ),
        pytest.param("case_001:\n  modelA:\n", "case_001.modelA", "got null", id="algo-null"),
        pytest.param(
            "case_001:\n  modelA: {Dice_ET: high}\n",
            "case_001.modelA.Dice_ET",
            "'high' is not a number",
            id="non-numeric",
        ),
        pytest.param(
            "case_001:\n  modelA: {Dice_ET: yes}\n",
            "case_001.modelA.Dice_ET",
            "True is not a number",
            id="bool",
        ),
        pytest.param(
            "case_001:\n  modelA: {Dice_ET: [0.8]}\n", "case_001.modelA.Dice_ET", "is not a number", id="list"
        ),
        pytest.param(
            "case_001:\n  modelA: {Dice_et: 0.8}\n",
            "case_001.modelA.Dice_et",
            "unknown metric key 'Dice_et'; did you mean 'Dice_ET'?",
            id="unknown-key",
        ),
        pytest.param(
            "case_001:\n  modelA: {Jaccard_ET: 0.8}\n",
            "case_001.modelA.Jaccard_ET",
            "known keys:",
            id="unknown-key-no-hint",
        ),
        pytest.param(
            "case_001:\n  modelA: {Dice_ET: 1.5}\n",
            "case_001.modelA.Dice_ET",
            "outside [0, 1]",
            id="dice-range",
        ),
        pytest.param(
            "case_001:\n  modelA: {Hausdorff95_WT: -2}\n",
            "case_001.modelA.Hausdorff95_WT",
            "outside [0, inf]",
            id="hd-negative",
        ),
        pytest.param("? 1.5\n: {modelA: {Dice_ET: 1}}\n", "1.5", "not a case or algorithm name", id="float-key"),
        pytest.param("? [a, b]\n: {modelA: {Dice_ET: 1}}\n", None, "found unhashable key", id="list-key"),
        pytest.param('"case\\n001": 3\n', "case 001", "must be a mapping", id="newline-in-key-stays-one-line"),
        pytest.param("case_001: [unclosed\n", None, "is not valid YAML at line 2", id="syntax"),
        pytest.param(
            "case_001:\n  modelA: {Dice_ET: 1}\ncase_001:\n  modelA: {Dice_ET: 0}\n",
            None,
            "duplicate key 'case_001'",
            id="duplicate-key",
        ),
        pytest.param(
            "1:\n  modelA: {Dice_ET: 1}\n'1':\n  modelA: {Dice_ET: 0}\n",
            "1",
            "appears twice",
            id="int-str-clash",
        ),
    ],
)
def test_bad_results_file(tmp_path: Path, text: str, field: str | None, fragment: str) -> None:
    path = tmp_path / "siteA.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_institutions(tmp_path)
    _assert_one_line_error(info.value, path, field, fragment)


def test_non_utf8_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "siteA.yaml"
    path.write_bytes(b"case_001:\n  modelA: {Dice_ET: \xff}\n")
    with pytest.raises(SpecError) as info:
        load_institutions(tmp_path)
    _assert_one_line_error(info.value, path, None, "cannot be read")


def test_empty_and_missing_directories(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_institutions(tmp_path)
    _assert_one_line_error(info.value, tmp_path, None, "holds no <institution>.yaml")
    missing = tmp_path / "nope"
    with pytest.raises(SpecError) as info:
        load_institutions(missing)
    _assert_one_line_error(info.value, missing, None, "is not a directory")


def test_same_institution_twice(tmp_path: Path) -> None:
    (tmp_path / "siteA.yaml").write_text("c:\n  m: {Dice_ET: 1}\n")
    (tmp_path / "siteA.yml").write_text("c:\n  m: {Dice_ET: 1}\n")
    with pytest.raises(SpecError) as info:
        load_institutions(tmp_path)
    _assert_one_line_error(info.value, tmp_path / "siteA.yml", None, "both .yaml and .yml")
