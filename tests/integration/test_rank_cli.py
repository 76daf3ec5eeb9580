"""``fedsim rank DIR`` as a real subprocess: table order, CSVs, methods, and one-line errors for bad YAML."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# Deliberately not alphabetical in quality, so a table sorted by name would fail the order check.
BEST, MIDDLE, WORST = "zeta_net", "alpha_net", "mu_net"
ALGOS = (BEST, MIDDLE, WORST)
CSV_NAMES = ("final_ranks_{m}.csv", "per_institute_ranks_{m}.csv", "significant_matrix_{m}.csv")


def _rank(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "rank", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _metrics(dice: float, hd: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, region in enumerate(("ET", "TC", "WT")):
        out[f"Dice_{region}"] = round(dice - 0.01 * i, 4)
        out[f"Hausdorff95_{region}"] = round(hd + 0.5 * i, 4)
    return out


def _institution(n_cases: int, offset: float) -> dict[str, dict[str, dict[str, float]]]:
    """Every case: BEST beats MIDDLE beats WORST on all six metrics."""
    data: dict[str, dict[str, dict[str, float]]] = {}
    for c in range(n_cases):
        jitter = 0.01 * ((c * 7) % 5) + offset
        data[f"FeTS22_Patient{c:04d}"] = {
            BEST: _metrics(0.90 - jitter, 2.0 + c),
            MIDDLE: _metrics(0.80 - jitter, 6.0 + c),
            WORST: _metrics(0.65 - jitter, 15.0 + c),
        }
    return data


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    d.mkdir()
    (d / "site_one.yaml").write_text(yaml.safe_dump(_institution(6, 0.0)))
    (d / "site_two.yaml").write_text(yaml.safe_dump(_institution(5, 0.02)))
    return d


def _table_order(stdout: str) -> list[str]:
    """Algorithms in the order their rows appear in the printed table."""
    rows = [line for line in stdout.splitlines() if any(a in line for a in ALGOS) and "wrote" not in line]
    order = []
    for line in rows:
        found = [a for a in ALGOS if a in line]
        assert len(found) == 1, line
        order.append(found[0])
    return order


def test_rank_then_mean_default(results_dir: Path) -> None:
    proc = _rank(results_dir)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _table_order(proc.stdout) == [BEST, MIDDLE, WORST]
    assert "rankThenMean" in proc.stdout
    out = results_dir / "ranking"
    for name in CSV_NAMES:
        path = out / name.format(m="rankThenMean")
        assert path.is_file(), path
        assert str(path.name) in proc.stdout
    with (out / "final_ranks_rankThenMean.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    ranks = {r["algorithm"]: float(r["final_rank"]) for r in rows}
    assert ranks == {BEST: 1.0, MIDDLE: 2.0, WORST: 3.0}
    assert set(rows[0]) >= {"algorithm", "final_rank", "final_score", "score_site_one", "score_site_two"}
    with (out / "per_institute_ranks_rankThenMean.csv").open(newline="") as fh:
        per_inst = list(csv.DictReader(fh))
    assert {(r["institution"], r["algorithm"]) for r in per_inst} == {
        (i, a) for i in ("site_one", "site_two") for a in ALGOS
    }
    with (out / "significant_matrix_rankThenMean.csv").open(newline="") as fh:
        matrix = list(csv.reader(fh))
    assert matrix[0][0] == "algorithm" and sorted(matrix[0][1:]) == sorted(ALGOS)


def test_out_option_and_aggregate_then_mean(results_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "csvs"
    proc = _rank(results_dir, "--method", "aggregateThenMean", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert _table_order(proc.stdout) == [BEST, MIDDLE, WORST]
    assert "aggregateThenMean" in proc.stdout
    for name in CSV_NAMES:
        assert (out / name.format(m="aggregateThenMean")).is_file()
    assert not (results_dir / "ranking").exists()


def test_unknown_method_is_a_usage_error(results_dir: Path) -> None:
    proc = _rank(results_dir, "--method", "bestOfThree")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--method" in proc.stderr


def test_missing_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = _rank(tmp_path / "nowhere")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nowhere" in lines[0], proc.stderr


def _good_case() -> dict[str, dict[str, float]]:
    return {a: _metrics(0.8, 5.0) for a in ALGOS}


@pytest.mark.parametrize(
    ("label", "document", "field"),
    [
        # metrics straight under the case: the algorithm level is missing
        ("wrong nesting", {"case1": _metrics(0.8, 5.0)}, "case1.Dice_ET"),
        (
            "non-numeric value",
            {"case1": {**_good_case(), MIDDLE: {**_metrics(0.8, 5.0), "Dice_TC": "high"}}},
            f"case1.{MIDDLE}.Dice_TC",
        ),
        (
            "unknown metric key",
            {"case1": {**_good_case(), WORST: {**_metrics(0.8, 5.0), "Dice_XT": 0.5}}},
            f"case1.{WORST}.Dice_XT",
        ),
    ],
)
def test_bad_yaml_is_one_line_exit_2(results_dir: Path, label: str, document: object, field: str) -> None:
    bad = results_dir / "site_bad.yaml"
    bad.write_text(yaml.safe_dump(document))
    proc = _rank(results_dir)
    assert proc.returncode == 2, (label, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, (label, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "site_bad.yaml" in lines[0], lines[0]
    assert field in lines[0], (field, lines[0])
    assert not (results_dir / "ranking").exists()
