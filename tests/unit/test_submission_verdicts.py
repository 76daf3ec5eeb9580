"""Verdicts as the federation would give them (PASS / PASS with warnings / FAIL) and the time-budget forecast.

Pure: the forecast arithmetic, the verdict and exit-code logic, the extra-files rule, the log scan for refused
writes and network access, site budgets from a benchmark, and the exports and console rendering.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from rich.console import Console

from fedsim.submission.attempts import attempt_checks, scan_lines
from fedsim.submission.dryrun import csv_text
from fedsim.submission.forecast import (
    HEADROOM_PCT,
    Measured,
    SiteBudget,
    forecast,
    forecast_check,
    forecast_site,
    load_site_budgets,
    margin_pct,
)
from fedsim.submission.outputs import check_files
from fedsim.submission.render import dry_run_table, forecast_table, report_view
from fedsim.submission.report import CheckStatus, SubmissionReport, failed, passed, skipped, warning
from tests.conftest import small_benchmark, write_yaml

FULL = (240, 240, 155)
TOY = (96, 96, 64)


def site(name: str = "a", cases: int = 10, timeout: float = 180.0, ram: float = 40.0, gpu: float | None = 11.0,
         shape: tuple[int, int, int] | None = FULL) -> SiteBudget:  # fmt: skip
    return SiteBudget(name, cases, timeout, ram, gpu, shape)


# ---------------------------------------------------------------- forecast arithmetic


def test_margin_pct() -> None:
    assert margin_pct(30.0, 40.0) == pytest.approx(25.0)
    assert margin_pct(50.0, 40.0) == pytest.approx(-25.0)
    assert margin_pct(None, 40.0) is None and margin_pct(1.0, None) is None and margin_pct(1.0, 0.0) is None


def test_forecast_scales_the_mean_by_voxels_and_cases_with_the_spread_from_the_cases() -> None:
    # 2 toy cases in 4 s: 2 s/case; the first case took 3 s (start-up), the second 1 s
    measured = Measured(4.0, 2, (3.0, 1.0), voxels=float(np.prod(TOY)), shape="96x96x64")
    f = forecast_site(measured, site(cases=10))
    scale = np.prod(FULL) / np.prod(TOY)
    assert f.scale == pytest.approx(scale)
    assert f.predicted_s == pytest.approx(2.0 * scale * 10)
    assert (f.low_s, f.high_s) == (pytest.approx(1.0 * scale * 10), pytest.approx(3.0 * scale * 10))
    assert f.budget_s == 1800.0
    assert f.time_margin_pct == pytest.approx((1800 - 2.0 * scale * 10) / 1800 * 100)


def test_forecast_on_full_size_cases_is_not_scaled_and_one_case_has_no_spread() -> None:
    measured = Measured(60.0, 1, (60.0,), voxels=float(np.prod(FULL)))
    f = forecast_site(measured, site(cases=3, timeout=100.0))
    assert f.scale == 1.0 and f.predicted_s == 180.0 and f.low_s == f.high_s == 180.0
    assert f.time_margin_pct == pytest.approx(40.0) and f.warnings() == []
    # the spread always brackets the mean (a slow exit after the last prediction is not a case)
    g = forecast_site(Measured(10.0, 2, (2.0, 3.0), voxels=float(np.prod(FULL))), site(cases=1))
    assert g.low_s == 2.0 and g.high_s == 5.0 and g.predicted_s == 5.0


def test_forecast_warns_below_the_headroom_threshold_for_time_ram_and_gpu() -> None:
    gib = 1024**3
    measured = Measured(
        140.0, 1, voxels=float(np.prod(FULL)), peak_ram_bytes=int(31 * gib), peak_gpu_bytes=int(9 * gib)
    )
    tight = forecast_site(measured, site("tight", cases=2, timeout=180.0, ram=40.0, gpu=11.0))
    assert tight.time_margin_pct == pytest.approx((360 - 280) / 360 * 100)  # 22 %: a warning
    assert tight.ram_margin_pct == pytest.approx(22.5) and tight.gpu_margin_pct == pytest.approx(200 / 11)
    lines = tight.warnings()
    assert len(lines) == 3
    assert lines[0].startswith("tight: predicted 280 s of a 360 s budget (2 cases): 22 % headroom")
    assert "peak RAM 31.00 of 40 GB: 22 % headroom" in lines[1] and "peak GPU memory 9.00 of 11 GB" in lines[2]
    roomy = forecast_site(measured, site("roomy", cases=2, timeout=400.0, ram=64.0, gpu=24.0))
    assert roomy.warnings() == []
    # exactly at the threshold is enough headroom; a site without a GPU warns about a model that used one
    edge = forecast_site(Measured(75.0, 1, voxels=float(np.prod(FULL))), site(cases=1, timeout=100.0))
    assert edge.time_margin_pct == HEADROOM_PCT and edge.warnings() == []
    cpu_only = forecast_site(measured, site("clinic", cases=2, timeout=400.0, ram=64.0, gpu=None))
    assert cpu_only.gpu_margin_pct is None and cpu_only.warnings() == [
        "clinic: has no GPU, and this model used 9.00 GB of GPU memory here (there it runs on the CPU: slower "
        "than forecast)"
    ]


def test_forecast_check_and_json() -> None:
    measured = Measured(4.0, 2, (3.0, 1.0), voxels=float(np.prod(TOY)), shape="96x96x64")
    ok = forecast(measured, [site("a", cases=3), site("b", cases=30)])
    check = forecast_check(ok)
    assert check.status is CheckStatus.PASSED and "2 site(s)" in check.cause and "time" in check.cause
    assert "×15.14 by voxel count from 96x96x64 to 240x240x155" in ok.basis
    assert ok.basis.startswith("2.00 s/case measured over 2 cases") and "fastest to slowest case" in ok.basis
    d = json.loads(json.dumps(ok.to_dict()))
    assert d["headroom_warning_pct"] == 25.0 and [s["site"] for s in d["sites"]] == ["a", "b"]
    assert d["sites"][0]["budget_s"] == 540.0 and d["sites"][0]["warnings"] == []
    slow = forecast(measured, [site("a", cases=3, timeout=20.0)])  # 30 s/case at full size against 20
    check = forecast_check(slow)
    assert check.status is CheckStatus.WARNING and check.cause.startswith("a: predicted 91 s of a 60 s budget")
    assert "-51 % headroom" in check.cause and check.fix


def test_site_budgets_from_a_benchmark(tmp_path: Path) -> None:
    """Cases from data.synthesize.cases or the case folders of data.path; limits narrowed to the hardware."""
    bench = small_benchmark(tmp_path, shape=FULL, sites=2, cases=4, timeout_per_case_s=90)
    raw = tmp_path / "raw"
    for case in ("c1", "c2", "c3", "c4", "c5", ".hidden"):
        (raw / case).mkdir(parents=True)
    write_yaml(
        bench / "sites" / "s9.yaml",
        {"name": "s9", "data": {"path": str(raw)}, "hardware": {"gpus": 1, "gpu_memory_gb": 8, "ram_gb": 64}},
    )
    budgets = {b.site: b for b in load_site_budgets(bench)}
    assert set(budgets) == {"s0", "s1", "s9"}
    assert budgets["s0"].cases == 4 and budgets["s0"].budget_s == 360.0 and budgets["s0"].shape == FULL
    assert budgets["s0"].ram_gb == 8 and budgets["s0"].gpu_memory_gb is None  # the small sites have no GPU
    assert budgets["s9"].cases == 5 and budgets["s9"].ram_gb == 40 and budgets["s9"].gpu_memory_gb == 8


# ---------------------------------------------------------------- verdicts


def test_verdicts_pass_warn_fail_error() -> None:
    r = SubmissionReport("m", "path", num_cases=2, duration_s=3.0)
    r.checks = [passed("run"), skipped("image_size", "local")]
    assert (r.verdict, r.verdict_text, r.accepted, r.reason) == ("PASS", "PASS", True, "")
    r.checks.append(warning("output_files", "also unexpected heartbeat.txt", "write only predictions"))
    assert (r.verdict, r.verdict_text, r.accepted) == ("WARN", "PASS with warnings", True)
    assert r.reason == "output_files: also unexpected heartbeat.txt"
    d = json.loads(json.dumps(r.to_dict()))
    assert d["verdict"] == "WARN" and d["accepted"] is True
    assert d["warnings"] == ["output_files: also unexpected heartbeat.txt"] and d["forecast"] is None
    r.checks.append(failed("output_labels", "labels [3]", "fix"))
    assert (r.verdict, r.accepted, r.reason) == ("FAIL", False, "output_labels: labels [3]")
    r.error = "no engine"
    assert (r.verdict, r.accepted) == ("ERROR", False)


def _case_dirs(tmp_path: Path, cases: tuple[str, ...]) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    for case in cases:
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), str(out / f"{case}.nii.gz"))
    return out


def test_extra_files_are_a_warning_but_a_missing_case_stays_a_failure(tmp_path: Path) -> None:
    out = _case_dirs(tmp_path, ("c1", "c2"))
    (out / "heartbeat.txt").write_text("alive")
    (out / "bin").mkdir()
    (out / "bin" / "model.so").write_bytes(b"\x7fELF")
    check, present = check_files(out, ("c1", "c2"))
    assert check.status is CheckStatus.WARNING and present == ["c1", "c2"]
    assert "unexpected bin/, bin/model.so, heartbeat.txt (ignored by the metrics cube" in check.cause
    assert "unexpected heartbeat.txt" in check.details and check.fix
    # a missing case: the metrics cube scores it as missing, extra files or not
    check, present = check_files(out, ("c1", "c2", "c3"))
    assert check.status is CheckStatus.FAILED and "missing c3.nii.gz" in check.cause and "heartbeat.txt" in check.cause
    # a case written as a symlink is not a readable prediction
    (out / "c3.nii.gz").symlink_to(out / "c1.nii.gz")
    assert check_files(out, ("c1", "c2", "c3"))[0].status is CheckStatus.FAILED


# ---------------------------------------------------------------- refused writes and network access in the log


LOG = """$ python3 /mlcube_project/mlcube.py infer --data_path=/x --output_path=/y
loading weights
could not fetch weights: [Errno -3] Temporary failure in name resolution
urllib.error.URLError: <urlopen error [Errno 101] Network is unreachable>
no cache: [Errno 30] Read-only file system: '/mlcube_project/cache'
Matplotlib created a temporary cache directory at /tmp/matplotlib-x because the default path (/home/.config/matplotlib) is not a writable directory
Traceback (most recent call last):
  File "/mlcube_project/mlcube.py", line 3, in <module>
    open("/opt/state.json", "w")
PermissionError: [Errno 13] Permission denied: '/opt/state.json'
reading /mlcube_io0/case: ok
PermissionError: [Errno 13] Permission denied: '/mlcube_project/weights.pt'
FeTS22_Patient0001: done
"""  # noqa: E501


def test_log_scan_finds_refused_writes_and_network_access() -> None:
    found = scan_lines(LOG.splitlines())
    assert found.network == [
        "could not fetch weights: [Errno -3] Temporary failure in name resolution",
        "urllib.error.URLError: <urlopen error [Errno 101] Network is unreachable>",
    ]
    assert len(found.writes) == 3
    assert found.writes[0] == "no cache: [Errno 30] Read-only file system: '/mlcube_project/cache'"
    assert found.writes[1].startswith("Matplotlib created a temporary cache directory")
    assert found.writes[2] == "PermissionError: [Errno 13] Permission denied: '/opt/state.json'"
    assert all("weights.pt" not in w for w in found.writes)  # a denied *read* is not a write attempt
    assert scan_lines(["FeTS22_Patient0001: done", "$ curl: Could not resolve host"]).network == []


def test_attempt_checks(tmp_path: Path) -> None:
    log = tmp_path / "infer.log"
    log.write_text(LOG)
    writes, network = attempt_checks(str(log), ran=True, sandboxed=True)
    assert writes.name == "write_attempts" and writes.status is CheckStatus.WARNING
    assert "refused (the run went on)" in writes.cause and "/mlcube_project/cache" in writes.cause and writes.fix
    assert network.status is CheckStatus.WARNING and "Temporary failure in name resolution" in network.cause
    log.write_text("FeTS22_Patient0001: done\n")
    assert [c.status for c in attempt_checks(str(log), ran=True, sandboxed=True)] == [CheckStatus.PASSED] * 2
    assert [c.status for c in attempt_checks(str(log), ran=False, sandboxed=True)] == [CheckStatus.SKIPPED] * 2
    unsandboxed = attempt_checks(str(log), ran=True, sandboxed=False)
    assert [c.status for c in unsandboxed] == [CheckStatus.SKIPPED] * 2 and "not observable" in unsandboxed[1].cause


# ---------------------------------------------------------------- exports and console


def _warned_report() -> SubmissionReport:
    r = SubmissionReport("m", "path", num_cases=2, duration_s=4.0, case_seconds={"c1": 3.0, "c2": 1.0})
    r.checks = [passed("run"), warning("output_files", "also unexpected heartbeat.txt", "write only predictions")]
    measured = Measured(4.0, 2, (3.0, 1.0), voxels=float(np.prod(TOY)), shape="96x96x64")
    r.forecast = forecast(measured, [site("a", cases=3), site("b", cases=3, timeout=20.0)])
    r.checks.append(forecast_check(r.forecast))
    return r


def test_csv_and_json_carry_the_verdict_warnings_and_headroom() -> None:
    r = _warned_report()
    row = next(csv.DictReader(io.StringIO(csv_text([r]))))
    assert row["verdict"] == "WARN" and row["reason"] == "output_files: also unexpected heartbeat.txt"
    assert row["warnings"].startswith("output_files: also unexpected heartbeat.txt | forecast: b: predicted")
    assert row["tightest_site"] == "b" and float(row["time_headroom_pct"]) < 0
    d = json.loads(json.dumps(r.to_dict()))
    assert d["forecast"]["sites"][1]["warnings"] and len(d["warnings"]) == 2


def test_console_shows_the_verdict_the_forecast_and_its_warnings() -> None:
    console = Console(width=220, record=True)
    console.print(report_view(_warned_report()))
    text = console.export_text()
    assert "PASS with warnings — 2 warning(s): output_files; forecast" in text
    assert "time-budget forecast" in text and "predicted s (spread)" in text and "forecast basis:" in text
    assert "warning: b: predicted 91 s of a 60 s budget" in text
    console = Console(width=220, record=True)
    console.print(dry_run_table([_warned_report()]))
    console.print(forecast_table([_warned_report(), _warned_report()]))
    text = console.export_text()
    assert "WARN" in text and "time headroom" in text and "-51 % b" in text
