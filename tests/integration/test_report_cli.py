"""`fedsim report RUN_DIR` on a real (small) run with a crashing model."""

from __future__ import annotations

import base64
import csv
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fedsim.pipeline.run import RunOptions, run_benchmark
from tests.conftest import CUBES, FIXTURES, small_benchmark

pytestmark = pytest.mark.e2e


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.failed_rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src") or "")
        if tag == "tr" and a.get("class") == "failed":
            self.failed_rows += 1


def test_report_of_a_real_run(tmp_path: Path) -> None:
    bench = small_benchmark(
        tmp_path,
        models={"baseline": CUBES / "baseline", "crasher": FIXTURES / "cubes" / "failing_model"},
        sites=2,
        cases=2,
    )
    report = run_benchmark(RunOptions(benchmark=bench, runs_dir=tmp_path / "runs", run_id="r"))
    run = report.run.root
    proc = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "report", str(run), "--resamples", "300"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {run / 'report.html'}" in proc.stdout and "bootstrap" in proc.stdout
    html = (run / "report.html").read_text()
    parser = _Images()
    parser.feed(html)
    assert parser.failed_rows == 2  # infer.crasher at both sites
    assert len(parser.srcs) == 7
    for src in parser.srcs:
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    for name in ("baseline", "crasher", "s0", "s1", "CUDA error", "small"):
        assert name in html
    with (run / "results_long.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["model"] for r in rows} == {"baseline", "crasher"} and {r["site"] for r in rows} == {"s0", "s1"}
    summary = json.loads((run / "summary_report.json").read_text())
    assert summary["ranking"]["final_rank"]["baseline"] == 1.0
    assert summary["stability"]["algorithms"]["baseline"]["keep_rate"] == 1.0
