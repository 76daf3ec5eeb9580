"""The docker runtime must change nothing but containment: same data, same metrics, same ranking as local.

Both runs share the session's synthetic-data cache, so any difference in ``results/<site>.yaml`` comes from
the runtime (mounts, users, read-only inputs), not from the data. First use builds the cube images.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedsim.pipeline.run import RunOptions, RunReport, run_benchmark
from tests.conftest import CUBES, containers_of_run, small_benchmark

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

MODELS = {"baseline": CUBES / "baseline", "region_grow": CUBES / "region_grow"}
SITES = ("s0", "s1")


def _same(a: Any, b: Any, where: str = "") -> list[str]:
    """Differences between two parsed YAML trees; floats to 1e-9, NaN equals NaN, None equals None."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}: keys {sorted(set(a) ^ set(b))} differ"] if set(a) != set(b) else []
        for k in sorted(set(a) & set(b), key=str):
            out += _same(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, bool) or isinstance(b, bool):
        return [] if a is b else [f"{where}: {a!r} != {b!r}"]
    if isinstance(a, int | float) and isinstance(b, int | float):
        if math.isnan(a) and math.isnan(b):
            return []
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def _run(bench: Path, runs: Path, runtime: str) -> RunReport:
    run_id = f"{runtime}-{uuid.uuid4().hex[:8]}"  # unique: containers are labelled with it
    report = run_benchmark(RunOptions(benchmark=bench, runtime=runtime, runs_dir=runs, run_id=run_id))
    jobs = json.loads((report.run.root / "summary.json").read_text())["jobs"]
    failed = [(j["site"], j["name"], j["status"], j.get("reason")) for j in jobs if j["status"] != "succeeded"]
    assert not failed, f"{runtime}: {failed}"
    assert {j["runtime"] for j in jobs} == {runtime}, f"{runtime}: jobs ran on {[j['runtime'] for j in jobs]}"
    assert report.ranking is not None
    return report


def test_docker_and_local_runs_agree(tmp_path: Path) -> None:

    bench = small_benchmark(tmp_path, models=MODELS, sites=len(SITES), cases=2)
    local = _run(bench, tmp_path / "runs", "local")
    dock = _run(bench, tmp_path / "runs", "docker")

    for site in SITES:
        ours = yaml.safe_load((local.run.root / "results" / f"{site}.yaml").read_text())
        theirs = yaml.safe_load((dock.run.root / "results" / f"{site}.yaml").read_text())
        assert set(ours) == set(theirs) and len(ours) == 2, (site, sorted(ours), sorted(theirs))
        assert all(set(models) == set(MODELS) for models in theirs.values()), theirs
        diff = _same(ours, theirs, site)
        assert not diff, diff[:10]
    assert local.ranking.final_rank == dock.ranking.final_rank

    # Only this run's containers: other suites may share the engine (the label is the run directory's name).
    assert containers_of_run(dock.run.run_id) == []

    uid = os.getuid()
    foreign = [
        str(p.relative_to(dock.run.root)) for p in [dock.run.root, *dock.run.root.rglob("*")] if p.lstat().st_uid != uid
    ]
    assert not foreign, f"not owned by uid {uid}: {foreign[:10]}"
    predictions = list((dock.run.root / "sites").glob("*/predictions/*/*.nii.gz"))
    assert len(predictions) == len(SITES) * len(MODELS) * 2, predictions
