"""A cube laid out like the FeTS 2022 model template runs unchanged on the local runtime (issue 22).

The fixture (tests/fixtures/fets_template) falls back to ``/mlcube_project/parameters.yaml`` and
``/mlcube_project/model_ckpts`` — paths only its image has, through ``COPY ./ /mlcube_project`` — and needs
its ``requirements.txt`` (``tabulate`` is not in fedsim's Python). The sandbox lays the build context out at
``/mlcube_project`` and the build phase installs the requirements into a cached environment, so
``check-submission --runtime local`` passes and a local benchmark scores it. Building the environment asks
PyPI once per test session (CI reaches it); a requirement no index has is one line naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedsim.cube import load_cube
from fedsim.runtimes import pyenv
from fedsim.store.cache import pyenv_root
from tests.conftest import FIXTURES, small_benchmark

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

TEMPLATE = FIXTURES / "fets_template"


def fedsim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsim.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=600,
    )


def _needs_an_environment() -> None:
    """The guard of these tests' premise: the fixture's requirements are not all in fedsim's Python."""
    req = pyenv.cube_requirements(load_cube(TEMPLATE / "mlcube"))
    assert req is not None and pyenv.unsatisfied(req.lines) == ["tabulate>=0.8"], req


def test_check_submission_local_passes_the_template_layout() -> None:
    _needs_an_environment()
    done = fedsim("check-submission", str(TEMPLATE), "--runtime", "local", "--json", "-")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["verdict"] == "PASS", checks
    assert checks["run"]["status"] == "passed" and checks["output_labels"]["status"] == "passed"
    assert report["containment"] == "bwrap"
    assert "building its Python environment from project/requirements.txt" in done.stderr
    envs = [p for p in pyenv_root().iterdir() if (p / ".fedsim-ready").is_file()]
    assert len(envs) == 1 and (envs[0] / "fedsim-requirements.txt").read_text().split() == [
        "PyYAML", "typer", "numpy", "SimpleITK", "tabulate>=0.8",
    ]  # fmt: skip


def test_a_local_benchmark_scores_the_template_layout(tmp_path: Path) -> None:
    _needs_an_environment()
    bench = small_benchmark(tmp_path, models={"template": TEMPLATE / "mlcube"}, shape=(64, 64, 40), sites=1)
    runs = tmp_path / "runs"
    done = fedsim("run", "benchmark", str(bench), "--runtime", "local", "--runs-dir", str(runs), "--run-id", "r")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    summary = json.loads((runs / "r" / "summary.json").read_text())
    jobs = {j["name"]: j for j in summary["jobs"]}
    assert jobs["infer.template"]["status"] == "succeeded", jobs["infer.template"]
    assert jobs["infer.template"]["containment"] == "bwrap"
    log = Path(jobs["infer.template"]["log"]).read_text()
    assert "using /mlcube_project/parameters.yaml" in log and "FeTS22_Patient" in log  # tabulate's table
    # the environment is the build phase's (built here or by an earlier test, then reused), no other cube's
    builds = [(b["runtime"], b["action"]) for b in summary["builds"]]
    assert builds in ([("local", "built")], [("local", "present")]), builds  # only the template needs one
    results = yaml.safe_load((runs / "r" / "results" / "s0.yaml").read_text())
    dice = [scores["template"]["Dice_WT"] for scores in results.values()]
    assert len(dice) == 2 and all(0 < d <= 1 for d in dice), results


def test_an_unresolvable_requirement_fails_in_one_line(tmp_path: Path) -> None:
    cube = tmp_path / "cube"
    shutil.copytree(TEMPLATE, cube)
    with open(cube / "project" / "requirements.txt", "a") as fh:
        fh.write("fedsim-no-such-distribution==1.0\n")
    done = fedsim("check-submission", str(cube), "--runtime", "local", "--json", "-")
    report = json.loads(done.stdout)
    run = next(c for c in report["checks"] if c["name"] == "run")
    assert report["verdict"] == "FAIL" and run["status"] == "failed"
    assert "\n" not in run["cause"]
    assert "cannot install the requirements of project/requirements.txt into its Python environment" in run["cause"]
    assert "fedsim-no-such-distribution==1.0" in run["cause"]
    assert "; fix: correct project/requirements.txt" in run["cause"]
