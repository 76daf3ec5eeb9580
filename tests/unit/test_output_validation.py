"""The output validation every run applies after a successful ``infer`` (issue 15): the validator itself (one
implementation with check-submission), the job record, the evaluate log's count, the console lines, the counts
in ``summary.json`` / ``summary_report.json`` and the report's flags — on hand-made files, without a run."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from rich.console import Console

from fedsim.jobs.execute import validate_outputs
from fedsim.jobs.job import Job, JobKind, JobLimits, JobResult, JobStatus
from fedsim.metrics.evaluate import evaluate_dir
from fedsim.metrics.predictions import case_problems, check_case, label_problem, scan_files
from fedsim.report.console import flagged_label, job_warning, model_warnings
from fedsim.report.html import write_report
from fedsim.submission.outputs import check_files, check_volumes
from fedsim.submission.report import CheckStatus
from tests.unit.test_report_html import make_run

SHAPE = (8, 8, 4)


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))


def _inputs(data: Path, cases: list[str]) -> None:
    for case in cases:
        _save(data / case / f"{case}_brain_t1.nii.gz", np.zeros(SHAPE, np.float32))


def _label_volume() -> np.ndarray:
    seg = np.zeros(SHAPE, np.uint8)
    seg[2:5, 2:5, 1:3] = 2
    seg[3, 3, 2] = 4
    return seg


def test_every_kind_of_invalid_prediction(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    cases = ["ok", "floats", "float_storage", "bad_labels", "shape", "garbage", "link", "missing"]
    _inputs(data, cases)
    _save(out / "ok.nii.gz", _label_volume())
    _save(out / "floats.nii.gz", (_label_volume() > 0).astype(np.float32) * 0.9 + 0.05)
    _save(out / "float_storage.nii.gz", _label_volume().astype(np.float32))
    _save(out / "bad_labels.nii.gz", np.full(SHAPE, 3, np.uint8))
    _save(out / "shape.nii.gz", np.zeros((4, 8, 4), np.uint8))
    (out / "garbage.nii.gz").write_bytes(b"not a nifti at all" * 40)
    (out / "link.nii.gz").symlink_to(out / "ok.nii.gz")
    problems = case_problems(out, data, cases)
    assert set(problems) == {"floats", "bad_labels", "shape", "garbage", "link", "missing"}
    assert problems["floats"] == ["non-integer values (stored as float32, e.g. 0.05)"]
    assert problems["bad_labels"] == ["labels [3] outside {0, 1, 2, 4}"]
    assert problems["shape"] == ["shape (4, 8, 4) != (8, 8, 4) (input)"]
    assert problems["garbage"][0].startswith("unreadable NIfTI: ")
    assert problems["link"] == ["a symlink, not a file"]
    assert problems["missing"] == ["missing missing.nii.gz"]
    # integer labels stored as floats score as intended: a warning for check-submission, not a run problem
    assert [f.warning for f in check_case(out, data, "float_storage")] == [True]


def test_an_empty_output_directory(tmp_path: Path) -> None:
    _inputs(tmp_path / "data", ["c1", "c2"])
    (tmp_path / "out").mkdir()
    assert case_problems(tmp_path / "out", tmp_path / "data", ["c1", "c2"]) == {
        "c1": ["no prediction written"],
        "c2": ["no prediction written"],
    }
    assert scan_files(tmp_path / "nowhere", ["c1"]).empty


def test_check_submission_reports_the_same_findings(tmp_path: Path) -> None:
    """One implementation: check-submission's checks carry exactly the run's per-case texts."""
    data, out = tmp_path / "data", tmp_path / "out"
    cases = ["a", "b", "c"]
    _inputs(data, cases)
    _save(out / "a.nii.gz", (_label_volume() > 0).astype(np.float32) * 0.5)
    _save(out / "b.nii.gz", np.zeros((4, 8, 4), np.uint8))
    files, present = check_files(out, tuple(cases))
    assert files.status is CheckStatus.FAILED and "missing c.nii.gz" in files.cause
    geometry, labels = check_volumes(out, data, present)
    run = case_problems(out, data, cases)
    assert labels.details == [f"a.nii.gz: {p}" for p in run["a"]]
    assert geometry.details == [f"b.nii.gz: {p}" for p in run["b"]]


def test_label_problem_fast_path() -> None:
    assert label_problem(np.array([0, 1, 2, 4], np.uint8)) is None
    assert label_problem(np.array([0, 5, 200], np.uint8)) == "labels [5, 200] outside {0, 1, 2, 4}"
    assert label_problem(np.array([0, 300], np.int16)) == "labels [300] outside {0, 1, 2, 4}"
    assert label_problem(np.array([np.nan], np.float32)) == "non-integer values (stored as float32, e.g. NaN/inf)"
    # a full-size volume (240 x 240 x 155) is checked in a few milliseconds
    big = np.zeros((240, 240, 155), np.uint8)
    big[100:140, 100:140, 60:90] = 2
    started = time.perf_counter()
    assert label_problem(big) is None
    assert time.perf_counter() - started < 0.5


def test_evaluate_counts_float_labels_as_unusable(tmp_path: Path) -> None:
    """The metrics cube's log no longer says "0 missing or unusable" for float labels; scores are unchanged."""
    labels, preds = tmp_path / "labels", tmp_path / "preds"
    for case in ("c1", "c2", "c3"):
        _save(labels / f"{case}_final_seg.nii.gz", _label_volume())
    _save(preds / "c1.nii.gz", _label_volume())
    _save(preds / "c2.nii.gz", (_label_volume() > 0).astype(np.float32) * 0.9 + 0.05)
    problems: dict[str, list[str]] = {}
    results = evaluate_dir(preds, labels, problems=problems)
    assert problems == {"c2": ["non-integer values (stored as float32, e.g. 0.05)"], "c3": ["missing"]}
    assert results["c1"]["Dice_WT"] == 1.0 and results["c2"]["missing_pred"] is False
    assert results["c2"]["Dice_WT"] == 0.0 and results["c3"]["missing_pred"] is True
    assert evaluate_dir(preds, labels) == results  # the problems are an optional extra


def test_metrics_cube_log_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from tests.conftest import CUBES

    spec = importlib.util.spec_from_file_location("metrics_cube", CUBES / "metrics" / "project" / "mlcube.py")
    assert spec is not None and spec.loader is not None
    cube = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cube)
    labels, preds = tmp_path / "labels", tmp_path / "preds"
    for case in ("c1", "c2"):
        _save(labels / f"{case}_final_seg.nii.gz", _label_volume())
        _save(preds / f"{case}.nii.gz", _label_volume().astype(np.float32) * 0.3)
    argv = ["evaluate", f"--predictions={preds}", f"--labels={labels}", "--parameters_file=/nonexistent"]
    assert cube.main([*argv, f"--output_path={tmp_path / 'r.yaml'}"]) == 0
    log = capsys.readouterr().out
    assert "2 missing or unusable predictions (0 scored with the penalty row, 2 as written)" in log
    assert "c1: non-integer values" in log


def _infer_job(tmp_path: Path, data: Path, out: Path) -> Job:
    from fedsim.cube import load_cube
    from fedsim.runtimes.policy import resolve
    from tests.conftest import FIXTURES

    cube = load_cube(FIXTURES / "submissions" / "float_labels")
    return Job(
        site="s0",
        name="infer.m",
        kind=JobKind.INFER,
        cube=cube,
        task="infer",
        paths=(("data_path", data), ("output_path", out)),
        runtime="local",
        limits=JobLimits(),
        log_path=tmp_path / "infer.log",
        workdir=tmp_path / "work",
        model="m",
        policy=resolve("local", cube, untrusted=True),
        cases_dir=data,
    )


def test_validate_outputs_of_a_job(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    _inputs(data, ["c1", "c2"])
    _save(out / "c1.nii.gz", _label_volume())
    job = _infer_job(tmp_path, data, out)
    assert validate_outputs(job) == {"c2": ["missing c2.nii.gz"]}


def test_job_record_round_trips(tmp_path: Path) -> None:
    result = JobResult("s0", "infer.m", "infer", "m", JobStatus.SUCCEEDED, num_cases=3)
    result.output_problems = {"c1": ["non-integer values (stored as float32, e.g. 0.05)"], "c2": ["missing"]}
    again = JobResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    old = result.to_dict()
    del old["output_problems"]  # a ledger written before the field existed
    assert JobResult.from_dict(old).output_problems == {}


def _flagged_results() -> dict[str, list[JobResult]]:
    def infer(site: str, model: str, problems: dict[str, list[str]]) -> JobResult:
        r = JobResult(site, f"infer.{model}", "infer", model, JobStatus.SUCCEEDED, num_cases=2, duration_s=1.0)
        r.output_problems = problems
        return r

    floats = {c: ["non-integer values (stored as float32, e.g. 0.05)"] for c in ("c1", "c2")}
    empty = {"c1": ["no prediction written"], "c2": ["no prediction written"]}
    return {
        site: [infer(site, "good", {}), infer(site, "float_labels", floats), infer(site, "no_output", empty)]
        for site in ("s0", "s1")
    }


def test_console_lines() -> None:
    results = _flagged_results()
    good, floats, empty = results["s0"]
    assert job_warning(good) is None
    assert job_warning(floats) == (
        "warning: s0/infer.float_labels: 2/2 invalid predictions, scored as is — c1: non-integer values (stored as "
        "float32, e.g. 0.05) | c2: non-integer values (stored as float32, e.g. 0.05)"
    )
    assert flagged_label(empty) == "succeeded, 2/2 invalid outputs" and flagged_label(good) == "succeeded"
    lines = model_warnings(results)
    assert lines == [
        "warning: model float_labels wrote invalid predictions for 4/4 cases (sites s0, s1), scored as is; "
        "e.g. s0/c1: non-integer values (stored as float32, e.g. 0.05)",
        "warning: model no_output wrote invalid predictions for 4/4 cases (sites s0, s1), scored as is; "
        "e.g. s0/c1: no prediction written",
    ]


def test_live_progress_prints_the_warning() -> None:
    from fedsim.report.console import RunProgress

    console = Console(record=True, width=300, force_terminal=False)
    progress = RunProgress(console)
    floats = _flagged_results()["s0"][1]
    job = _infer_job(Path("/nonexistent"), Path("/d"), Path("/o"))
    progress.job("finished", job, floats)
    text = console.export_text()
    assert "succeeded in 1.0s" in text and "warning: s0/infer.float_labels: 2/2 invalid predictions" in text


def test_summary_counts() -> None:
    from fedsim.pipeline.run import output_problem_counts

    counts = output_problem_counts([r for rs in _flagged_results().values() for r in rs])
    assert counts == {
        "cases": 8,
        "by_model": {"float_labels": 4, "no_output": 4},
        "by_model_and_site": {"float_labels": {"s0": 2, "s1": 2}, "no_output": {"s0": 2, "s1": 2}},
    }


def test_report_flags_the_model_next_to_its_scores(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    for job in summary["jobs"]:
        if job["name"] == "infer.okay" and job["site"] == "site_x":
            job["output_problems"] = {"FeTS22_Patient0001": ["labels [3] outside {0, 1, 2, 4}"]}
    (run / "summary.json").write_text(json.dumps(summary))
    files = write_report(run, resamples=20, seed=1)
    html = files.html.read_text(encoding="utf-8")
    # the ranking row of "okay" carries the marker beside its final score
    row = next(r for r in re.findall(r"<tr[^>]*>.*?</tr>", html) if "<b>okay</b>" in r and "invalid outputs" in r)
    assert 'class="flagged"' in row and "⚠ invalid outputs: 1/3 cases" in row
    assert re.search(r'<td class="num">\d\.\d{3}</td>', row)  # a score in the same row
    assert "Invalid predictions (1 cases)" in html and "labels [3] outside {0, 1, 2, 4}" in html
    assert "models with invalid outputs" in html
    exported = json.loads(files.summary.read_text())["output_problems"]
    assert exported["cases"] == 1
    assert exported["by_model"] == {"okay": {"cases": 1, "sites": {"site_x": 1}}}
    assert exported["jobs"][0]["cases"] == {"FeTS22_Patient0001": ["labels [3] outside {0, 1, 2, 4}"]}


def test_report_of_a_clean_run_has_no_flag(tmp_path: Path) -> None:
    files = write_report(make_run(tmp_path), resamples=20, seed=1)
    html = files.html.read_text(encoding="utf-8")
    assert "⚠ invalid outputs" not in html and "Invalid predictions" not in html
    assert json.loads(files.summary.read_text())["output_problems"] == {"cases": 0, "by_model": {}, "jobs": []}
