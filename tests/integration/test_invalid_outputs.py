"""Invalid predictions in a benchmark run (issue 15): a model that writes float labels and one that writes
nothing both succeed, and are flagged in the console, ``summary.json``, ``summary_report.json`` and the report —
one ``fedsim run`` on the local runtime, then a headless-Chromium screenshot of its report."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CUBES, FIXTURES, ROOT, browser, small_benchmark

SUBMISSIONS = FIXTURES / "submissions"
MODELS = {
    "baseline": CUBES / "baseline",
    "float_labels": SUBMISSIONS / "float_labels",
    "no_output": SUBMISSIONS / "no_output",
    "crashes": SUBMISSIONS / "crashes",
}
FLAGGED = ("float_labels", "no_output")
SITES = ("s0", "s1")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One CLI run of the benchmark: (run directory, stdout)."""
    tmp = tmp_path_factory.mktemp("invalid-outputs")
    bench = small_benchmark(tmp, models=MODELS, sites=2, cases=2)
    run_dir = ["--runs-dir", str(tmp / "runs"), "--run-id", "r1"]
    env = {**os.environ, "FEDSIM_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "fedsim-cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "run", "benchmark", str(bench), "--runtime", "local", *run_dir],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp / "runs" / "r1", proc.stdout


@pytest.mark.e2e
def test_console_flags_both_models(run: tuple[Path, str]) -> None:
    _, out = run
    for site in SITES:
        assert f"warning: {site}/infer.float_labels: 2/2 invalid predictions" in out
        assert f"warning: {site}/infer.no_output: 2/2 invalid predictions" in out
    assert "non-integer values (stored as float32, e.g. 0.05)" in out and "no prediction written" in out
    assert "infer.baseline: " not in out and "infer.crashes: 2/2" not in out
    table = [ln for ln in out.splitlines() if ln.startswith("│ s")]  # the final table's site × model rows
    for model in FLAGGED:
        rows = [ln for ln in table if f" {model} " in ln]
        assert len(rows) == 2 and all("succeeded, 2/2 invalid outputs" in r for r in rows), rows
    assert all("invalid" not in ln for ln in table if " baseline " in ln or " crashes " in ln)
    # fedsim run ends with one line per affected model
    last = [ln for ln in out.splitlines() if ln.strip()][-2:]
    assert sorted(ln.split(" wrote ")[0] for ln in last) == ["warning: model float_labels", "warning: model no_output"]
    assert all("for 4/4 cases (sites s0, s1), scored as is" in ln for ln in last)


@pytest.mark.e2e
def test_summary_and_exports_count_them(run: tuple[Path, str]) -> None:
    root, _ = run
    summary = json.loads((root / "summary.json").read_text())
    assert summary["output_problems"]["cases"] == 8
    assert summary["output_problems"]["by_model"] == {"float_labels": 4, "no_output": 4}
    jobs = {(j["site"], j["name"]): j for j in summary["jobs"]}
    for site in SITES:
        floats, empty = jobs[(site, "infer.float_labels")], jobs[(site, "infer.no_output")]
        assert floats["status"] == empty["status"] == "succeeded"
        assert len(floats["output_problems"]) == 2 and len(empty["output_problems"]) == 2
        assert all(
            p == ["non-integer values (stored as float32, e.g. 0.05)"] for p in floats["output_problems"].values()
        )
        assert all(p == ["no prediction written"] for p in empty["output_problems"].values())
        assert jobs[(site, "infer.baseline")]["output_problems"] == {}
        assert jobs[(site, "infer.crashes")]["status"] == "failed"
        assert jobs[(site, "infer.crashes")]["output_problems"] == {}
        # the metrics cube's log counts them too (it used to say 0 for the float labels)
        log = (root / "sites" / site / "logs" / "evaluate.float_labels.log").read_text()
        assert "2 missing or unusable predictions (0 scored with the penalty row, 2 as written)" in log
    exported = json.loads((root / "summary_report.json").read_text())["output_problems"]
    assert exported["cases"] == 8
    assert exported["by_model"] == {m: {"cases": 4, "sites": {"s0": 2, "s1": 2}} for m in FLAGGED}
    assert {(j["site"], j["model"]) for j in exported["jobs"]} == {(s, m) for s in SITES for m in FLAGGED}
    # the scores stay what the metrics cube computed: float labels still rank above the crash, flagged
    ranks = (root / "ranking" / "final_ranks_rankThenMean.csv").read_text()
    assert "float_labels" in ranks and "crashes" in ranks


@pytest.mark.e2e
def test_report_flags_them_next_to_the_scores(run: tuple[Path, str]) -> None:
    root, _ = run
    html = (root / "report.html").read_text(encoding="utf-8")
    ranking = html.split('<section id="ranking">', 1)[1].split("</table>", 1)[0]
    rows = {m: r for r in re.findall(r"<tr[^>]*>.*?</tr>", ranking) for m in MODELS if f"<b>{m}</b>" in r}
    for model in FLAGGED:
        assert 'class="flagged"' in rows[model] and "⚠ invalid outputs: 4/4 cases" in rows[model]
        assert re.search(r'<td class="num">\d\.\d{3}</td>', rows[model])  # the final score in the same row
    for model in ("baseline", "crashes"):
        assert "invalid outputs" not in rows[model]
    assert "Invalid predictions (8 cases)" in html


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.mark.e2e
@pytest.mark.browser
def test_report_screenshot_shows_the_flag(run: tuple[Path, str], tmp_path: Path) -> None:
    """Headless Chromium renders the report; the PNG is looked at: the flag's amber is on screen."""
    import numpy as np
    from PIL import Image

    root, _ = run
    chromium = browser()
    assert chromium is not None
    shot = root / "report-screenshot.png"  # beside the report, for a human to look at
    proc = subprocess.run(
        [
            *(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"),
            *(f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1600", f"--screenshot={shot}"),
            (root / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert _png_size(shot) == (1400, 1600)
    assert shot.stat().st_size > 30_000  # a rendered page, not a blank one
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB"))
    flag = np.all(pixels == (0xFF, 0xF1, 0xC2), axis=-1)  # the flag's amber (#fff1c2)
    navy = np.all(pixels == (0x1F, 0x3A, 0x5F), axis=-1)  # the page header (#1f3a5f)
    assert navy.sum() > 10_000, "no page header drawn"
    assert flag.sum() > 500, "no flag drawn"
    # flags in the first screenful, the ranking's included: beside the scores, not only at the end of the page
    assert np.flatnonzero(flag.any(axis=1)).min() < 1000
