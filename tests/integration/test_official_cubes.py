"""Cubes with exactly the official FeTS 2022 task 2 interfaces run unchanged (issue 13).

The fixtures in tests/fixtures/fets_official mirror the public data-prep, model-template and metrics cubes
(FeTS-AI/Challenge, Task_2/mlcubes): their layout (``mlcube/mlcube.yaml``, ``mlcube/workspace/``,
``project/``), parameter names, defaults and types, typer command lines with every option required, no
``build_strategy`` and the same files in and out. The benchmark gives ``parameters_file: null``, so each cube
reads its own workspace file, and the model gets ``--parameters_file``/``--checkpoint_path`` as
``<workspace>/null`` and falls back to the files baked into its image, as in the federation. The sanity check
insists on 240x240x155 at 1 mm, like the official one, so the site is full-size (2 cases).

For docker the images are built beforehand under their ``docker.image`` tags, as an organiser who pulled the
published cubes has them: fedsim must use a present image as it is (MLCube's ``pull``), never rebuild it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedsim.cube import load_cube
from tests.conftest import FIXTURES, write_yaml

pytestmark = pytest.mark.e2e

OFFICIAL = FIXTURES / "fets_official"
CUBES = {name: OFFICIAL / name / "mlcube" for name in ("data_prep", "model", "metrics")}
SITE = "site_a"
MODEL = "template"
CASES = ("FeTS22_Patient0000", "FeTS22_Patient0001")
REGIONS = ("ET", "TC", "WT")
# every key of the official metrics cube's results.yaml, per case (app.py: CaPTk columns + confusion matrix)
OFFICIAL_KEYS = {
    f"{m}_{r}"
    for m in ("Dice", "Hausdorff95", "Sensitivity", "Specificity", "Precision", "TP", "FP", "TN", "FN")
    for r in REGIONS
} | {"missing_pred"}


def fedsim(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "fedsim.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def official_benchmark(tmp: Path, runtime: str) -> Path:
    """One full-size synthetic site; the three official-interface cubes, each reading its own parameters."""
    bench = tmp / "bench"
    write_yaml(
        bench / "benchmark.yaml",
        {
            "name": "fets-official-interfaces",
            "data_prep": {"cube": str(CUBES["data_prep"]), "parameters_file": None},
            "metrics": {"cube": str(CUBES["metrics"]), "parameters_file": None},
            "models": [{"name": MODEL, "cube": str(CUBES["model"])}],
            "limits": {"timeout_per_case_s": 120, "task_timeout_s": 600, "ram_gb": 8},
            "sites": ["sites"],
        },
    )
    write_yaml(
        bench / "sites" / f"{SITE}.yaml",
        {
            "name": SITE,
            "data": {"synthesize": {"cases": len(CASES), "seed": 13, "shape": [240, 240, 155]}},
            "runtime": runtime,
            "hardware": {"gpus": 0, "ram_gb": 8, "cpus": 2},
        },
    )
    return bench


def fixture_files() -> set[str]:
    """The fixture tree (bytecode aside): a run must not write into the cubes' folders or workspaces."""
    return {str(p.relative_to(OFFICIAL)) for p in OFFICIAL.rglob("*") if "__pycache__" not in p.parts}


def run_and_check(tmp_path: Path, runtime: str) -> Path:
    before = fixture_files()
    bench = official_benchmark(tmp_path, runtime)
    runs = tmp_path / "runs"
    done = fedsim(
        "run",
        "benchmark",
        str(bench),
        "--runtime",
        runtime,
        "--runs-dir",
        str(runs),
        "--run-id",
        "r",
        "--allow-unsandboxed",  # used only where neither docker nor the bubblewrap sandbox can run
    )
    run = runs / "r"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    jobs = json.loads((run / "summary.json").read_text())["jobs"]
    states = {j["name"]: (j["status"], j.get("reason")) for j in jobs}
    expected = {"prepare", "sanity_check", "statistics", f"infer.{MODEL}", f"evaluate.{MODEL}"}
    assert set(states) == expected, states
    assert all(status == "succeeded" for status, _ in states.values()), states
    if runtime == "docker":
        assert {j["runtime"] for j in jobs} == {"docker"}, [(j["name"], j["runtime"]) for j in jobs]

    site = run / "sites" / SITE
    # prepare: the official layout, anonymised
    assert sorted(p.name for p in (site / "prepared").iterdir()) == list(CASES)
    for case in CASES:
        names = sorted(p.name for p in (site / "prepared" / case).iterdir())
        assert names == sorted(f"{case}_brain_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2")), names
    assert sorted(p.name for p in (site / "labels").iterdir()) == [f"{c}_final_seg.nii.gz" for c in CASES]
    # statistics wrote its declared default output (fedsim keeps it in the job's own folder)
    stats = list(site.rglob("statistics.yaml"))
    assert len(stats) == 1 and yaml.safe_load(stats[0].read_text()) == {"Valid_Subjects": 2, "Invalid_Subjects": 0}
    # the model got <workspace>/null for both files and fell back to those in its image
    log = (site / "logs" / f"infer.{MODEL}.log").read_text()
    assert "parameters file" in log and "null does not exist" in log, log[-2000:]
    assert "threshold segmenter 0.0.1: finished" in log, log[-2000:]
    assert sorted(p.name for p in (site / "predictions" / MODEL).iterdir()) == [f"{c}.nii.gz" for c in CASES]

    # the metrics cube's own output: the official structure, case -> flat keys
    official = yaml.safe_load((site / "results" / f"{MODEL}.yaml").read_text())
    assert sorted(official) == list(CASES)
    for case, row in official.items():
        assert set(row) == OFFICIAL_KEYS, (case, sorted(set(row) ^ OFFICIAL_KEYS))
    # what leaves the site: case -> model -> metrics, scored (not the penalty row)
    results: dict[str, Any] = yaml.safe_load((run / "results" / f"{SITE}.yaml").read_text())
    assert sorted(results) == list(CASES)
    for case in CASES:
        metrics = results[case][MODEL]
        assert metrics["missing_pred"] is False, metrics
        assert all(metrics[f"Dice_{r}"] > 0 for r in REGIONS), metrics
        assert metrics["Dice_WT"] > 0.5, metrics
        assert 0 <= metrics["Hausdorff95_WT"] < 374, metrics
    assert (run / "ranking" / "final_ranks_rankThenMean.csv").is_file()
    assert MODEL in (run / "ranking" / "final_ranks_rankThenMean.csv").read_text()

    assert fixture_files() == before, sorted(fixture_files() ^ before)
    return run


def test_official_interfaces_run_on_local(tmp_path: Path) -> None:
    run_and_check(tmp_path, "local")


def check_submission(runtime: str, tmp_path: Path, target: Path = CUBES["model"]) -> dict[str, Any]:
    report = tmp_path / f"check-{runtime}.json"
    done = fedsim("check-submission", str(target), "--runtime", runtime, "--json", str(report))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "PASS" in done.stdout, done.stdout[-2000:]
    data = json.loads(report.read_text())
    checks = {c["name"]: c["status"] for c in data["checks"]}
    assert not [n for n, s in checks.items() if s == "failed"], checks
    for name in ("mlcube", "entrypoint", "workdir", "run", "output_files", "output_geometry", "output_labels"):
        assert checks.get(name) == "passed", (name, checks)
    return checks


def test_check_submission_passes_the_template_model_locally(tmp_path: Path) -> None:
    checks = check_submission("local", tmp_path)
    assert checks.get("image_permissions") == "skipped", checks  # never reported as passed without docker


def test_check_submission_takes_the_fets_cube_folder(tmp_path: Path) -> None:
    """``model/`` (mlcube.yaml in its ``mlcube/``) names the same cube as ``model/mlcube``."""
    from fedsim.submission.check import resolve_target

    for spec in (OFFICIAL / "model", CUBES["model"], CUBES["model"] / "mlcube.yaml"):
        target = resolve_target(str(spec))
        assert target.cube_dir == CUBES["model"].resolve() and target.name == "model", (spec, target)


# ---------------------------------------------------------------- docker


@pytest.fixture(scope="module")
def official_images() -> dict[str, str]:
    """Build the three images under their mlcube.yaml tags (what `docker pull` would have left); tag -> id."""
    import docker

    from fedsim.runtimes.images import ImageBuilder

    client = docker.from_env()
    try:
        ids: dict[str, str] = {}
        for name, cube_dir in CUBES.items():
            cube = load_cube(cube_dir)
            assert cube.docker is not None and cube.docker.build_strategy == "pull"  # as published: none given
            args = {"FEDSIM_BASE": ImageBuilder(client).ensure_cube_base(None)} if name == "metrics" else {}
            image, _ = client.images.build(
                path=str(cube.build_context_dir),
                dockerfile=cube.docker.build_file,
                tag=cube.docker.image,
                buildargs=args,
                rm=True,
                forcerm=True,
            )
            ids[cube.docker.image] = str(image.id)
        return ids
    finally:
        client.close()


def _image_ids(tags: dict[str, str]) -> dict[str, str]:
    import docker

    client = docker.from_env()
    try:
        return {tag: str(client.images.get(tag).id) for tag in tags}
    finally:
        client.close()


@pytest.mark.docker
def test_official_interfaces_run_on_docker(tmp_path: Path, official_images: dict[str, str]) -> None:
    run_and_check(tmp_path, "docker")
    assert _image_ids(official_images) == official_images  # used as present, not rebuilt or re-tagged


@pytest.mark.docker
def test_check_submission_passes_the_template_model_on_docker(tmp_path: Path, official_images: dict[str, str]) -> None:
    checks = check_submission("docker", tmp_path, OFFICIAL / "model")
    assert checks.get("build") == "passed" and checks.get("image_permissions") == "passed", checks
    assert _image_ids(official_images) == official_images
