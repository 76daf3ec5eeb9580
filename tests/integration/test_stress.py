"""``fedsim stress`` end to end on small synthetic cases with the bundled baseline (local runtime)."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import pytest

from fedsim.cli import main
from fedsim.stress.plot import stress_report_section
from fedsim.stress.results import results_from_dict
from tests.conftest import BENCH, CUBES, FIXTURES

pytestmark = [pytest.mark.e2e]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHIFTS = ("noise", "missing", "thick_slices", "bias")  # the four shifts x four levels (0 is shared)
LEVELS = (1, 2, 3)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def stress_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, float]:
    tmp = tmp_path_factory.mktemp("stress")
    out = tmp / "out"
    extra_json = tmp / "export" / "results.json"
    argv = [
        "stress",
        str(CUBES / "baseline"),
        str(FIXTURES / "cubes" / "failing_model"),
        "--shifts",
        ",".join(SHIFTS),
        "--levels",
        "0,1,2,3",
        "--runtime",
        "local",
        "--cases",
        "2",
        "--shape",
        "64,64,48",
        "--benchmark",
        str(BENCH),
        "--out",
        str(out),
        "--json",
        str(extra_json),
    ]
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:  # the autouse cache isolation is per test; this runs before it
        mp.setenv("FEDSIM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fedsim-cache"))
        try:
            main(argv)
        except SystemExit as exc:  # main exits only on errors
            pytest.fail(f"fedsim stress exited with {exc.code}")
    return out, extra_json, "", time.monotonic() - started


def test_runs_quickly_and_writes_every_export(stress_run: tuple[Path, Path, str, float]) -> None:
    out, extra_json, _, seconds = stress_run
    assert seconds < 60
    for name in ("stress.json", "stress.csv", "stress_summary.csv", "curves.png"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes().startswith(PNG_MAGIC)
    assert json.loads(extra_json.read_text()) == json.loads((out / "stress.json").read_text())


def test_sets_and_failures(stress_run: tuple[Path, Path, str, float]) -> None:
    data = json.loads((stress_run[0] / "stress.json").read_text())
    assert data["models"] == ["baseline", "failing_model"]
    assert data["shifts"] == ["noise", "missing", "thick_slices", "bias"] and data["levels"] == [0, 1, 2, 3]
    assert data["runtime"] == "local" and data["metric_set"] == "brats2021"
    labels = {(s["model"], s["shift"], s["level"]) for s in data["sets"]}
    expected = {("none", 0)} | {(sh, lv) for sh in SHIFTS for lv in LEVELS}
    assert labels == {(m, s, lv) for m in ("baseline", "failing_model") for s, lv in expected}
    for s in data["sets"]:
        assert set(s["cases"]) and len(s["cases"]) == 2
        if s["model"] == "baseline":
            assert s["status"] == "succeeded", s["reason"]
            assert s["invalid_cases"] == []
        else:  # a crash is a result: every case scores the penalty row
            assert s["status"] == "failed" and "exited with code 1" in s["reason"]
            for row in s["cases"].values():
                assert row["missing_pred"] is True and row["Dice_WT"] == 0 and row["Hausdorff95_WT"] == 374
    fail = data["summaries"]["failing_model"]
    assert (
        fail["failures"] == 1 + len(SHIFTS) * len(LEVELS) and fail["robustness"] is None
    )  # unshifted Dice 0: no ratio


def test_summary_numbers_are_consistent(stress_run: tuple[Path, Path, str, float]) -> None:
    data = json.loads((stress_run[0] / "stress.json").read_text())
    sets = {(s["model"], s["shift"], s["level"]): s for s in data["sets"] if s["model"] == "baseline"}
    regions = data["regions"]
    assert regions == ["ET", "TC", "WT"]
    for s in sets.values():  # per-set stats recomputed from the per-case rows
        for r in regions:
            dice = [row[f"Dice_{r}"] for row in s["cases"].values()]
            hd = [row[f"Hausdorff95_{r}"] for row in s["cases"].values()]
            assert s["regions"][r]["mean_dice"] == pytest.approx(_mean(dice))
            assert s["regions"][r]["worst_dice"] == pytest.approx(min(dice))
            assert s["regions"][r]["mean_hd95"] == pytest.approx(_mean(hd))
            assert s["regions"][r]["worst_hd95"] == pytest.approx(max(hd))
        assert s["mean_dice"] == pytest.approx(_mean([s["regions"][r]["mean_dice"] for r in regions]))
    summary = data["summaries"]["baseline"]
    base = sets[("baseline", "none", 0)]["mean_dice"]
    assert base > 0.5  # the baseline segments the unshifted synthetic cases well
    shifted = [sets[("baseline", sh, lv)]["mean_dice"] for sh in SHIFTS for lv in LEVELS]
    assert summary["unshifted_dice"] == pytest.approx(base)
    assert summary["shifted_dice"] == pytest.approx(_mean(shifted))
    assert summary["robustness"] == pytest.approx(_mean(shifted) / base)
    for sh in SHIFTS:
        per = summary["per_shift"][sh]
        mean = _mean([sets[("baseline", sh, lv)]["mean_dice"] for lv in LEVELS])
        assert per["mean_dice"] == pytest.approx(mean) and per["robustness"] == pytest.approx(mean / base)
        wt0 = sets[("baseline", "none", 0)]["regions"]["WT"]["mean_dice"]
        drops = [lv for lv in LEVELS if sets[("baseline", sh, lv)]["regions"]["WT"]["mean_dice"] < wt0 - 0.1]
        assert per["wt_drop_level"] == (drops[0] if drops else None)
    # Noise is mild for a model that smooths; a missing modality breaks it.
    assert summary["per_shift"]["noise"]["robustness"] > 0.9
    assert summary["per_shift"]["missing"]["robustness"] < summary["per_shift"]["noise"]["robustness"]
    assert summary["worst_shift"] == "missing"
    assert summary["per_shift"]["missing"]["wt_drop_level"] in LEVELS


def test_csv_exports_match_the_json(stress_run: tuple[Path, Path, str, float]) -> None:
    out = stress_run[0]
    data = json.loads((out / "stress.json").read_text())
    rows = list(csv.DictReader((out / "stress.csv").read_text().splitlines()))
    assert len(rows) == len(data["sets"]) * 3
    for row in rows:
        s = next(
            x
            for x in data["sets"]
            if x["model"] == row["model"] and x["shift"] == row["shift"] and x["level"] == int(row["level"])
        )
        assert float(row["mean_dice"]) == pytest.approx(s["regions"][row["region"]]["mean_dice"], rel=1e-5)
        assert row["status"] == s["status"]
    summary = list(csv.DictReader((out / "stress_summary.csv").read_text().splitlines()))
    overall = next(r for r in summary if r["model"] == "baseline" and r["scope"] == "all")
    assert float(overall["robustness"]) == pytest.approx(data["summaries"]["baseline"]["robustness"], rel=1e-5)
    assert overall["worst_shift"] == "missing"
    failing = next(r for r in summary if r["model"] == "failing_model" and r["scope"] == "all")
    assert failing["robustness"] == ""


def test_html_section_embeds_the_curves(stress_run: tuple[Path, Path, str, float]) -> None:
    data = json.loads((stress_run[0] / "stress.json").read_text())
    html = stress_report_section(data)
    assert html.startswith('<section class="fedsim-stress">') and html.rstrip().endswith("</section>")
    assert 'src="data:image/png;base64,' in html
    assert "failing_model" in html and "missing" in html
    results = results_from_dict(data)
    assert results.summaries["baseline"].robustness == pytest.approx(data["summaries"]["baseline"]["robustness"])
    assert results.summaries["failing_model"].unshifted_dice == 0.0
    assert not math.isnan(results.summaries["baseline"].shifted_dice)


def test_shifted_sets_are_cached_by_content(stress_run: tuple[Path, Path, str, float], tmp_path: Path) -> None:
    from fedsim.stress.data import build_sets, resolve_source

    source = resolve_source(None, None, 2, (64, 64, 48), tmp_path)
    seen: list[bool] = []
    sets = build_sets(source, ["noise", "missing"], [0, 1, 2], on_set=lambda _s, cached: seen.append(cached))
    assert all(seen) and len(sets) == 5  # the run above built them
    other = build_sets(source, ["noise"], [1], seed=5)
    assert other[1].data_dir != sets[1].data_dir  # another seed is another set


def test_bad_selection_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv, needle in [
        (["stress", str(CUBES / "baseline"), "--shifts", "blur", "--out", str(tmp_path)], "unknown shift"),
        (
            ["stress", str(CUBES / "baseline"), "--shifts", "swap", "--levels", "0,4", "--out", str(tmp_path)],
            "levels 0..3",
        ),
        (["stress", str(tmp_path), "--out", str(tmp_path / "o")], "no mlcube.yaml"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert needle in capsys.readouterr().err
