"""Shared fixtures: paths of the repository's cubes and a small benchmark builder for fast runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "fets2022-task2"
CUBES = BENCH / "cubes"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the user's synthetic-data cache from tests (a per-session cache is shared)."""
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fedsim-cache"))


def write_yaml(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def small_benchmark(
    tmp: Path,
    *,
    models: dict[str, Path] | None = None,
    shape: tuple[int, int, int] = (96, 96, 64),
    sites: int = 2,
    cases: int = 2,
    timeout_per_case_s: float = 60,
    runtime: str = "local",
) -> Path:
    """A benchmark over the reference cubes with small synthetic sites; returns the benchmark dir."""
    models = models or {"baseline": CUBES / "baseline"}
    bench = tmp / "bench"
    write_yaml(
        bench / "benchmark.yaml",
        {
            "name": "small",
            "data_prep": {"cube": str(CUBES / "data_prep"), "parameters_file": "generated"},
            "metrics": {"cube": str(CUBES / "metrics"), "parameters_file": "generated"},
            "models": [{"name": n, "cube": str(p)} for n, p in models.items()],
            "limits": {"timeout_per_case_s": timeout_per_case_s, "task_timeout_s": 120},
            "data": {"expected_shape": list(shape)},
            "sites": ["sites"],
        },
    )
    shifts = [
        {},
        {"intensity_scale": 1.4, "intensity_offset": 0.05, "noise_std": 0.03, "bias_field": 0.15},
        {"intensity_scale": 0.7, "noise_std": 0.06, "bias_field": 0.25, "contrast_gamma": 0.85},
    ]
    for i in range(sites):
        write_yaml(
            bench / "sites" / f"s{i}.yaml",
            {
                "name": f"s{i}",
                "data": {
                    "synthesize": {
                        "cases": cases,
                        "seed": 10 + i,
                        "shape": list(shape),
                        "shift": shifts[i % 3],
                    }
                },
                "runtime": runtime,
                "hardware": {"gpus": 0, "ram_gb": 8, "cpus": 2},
            },
        )
    return bench


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Docker tests skip on a machine without an engine, sandbox tests on one where bubblewrap cannot run,
    browser tests without a Chromium — except in CI (``FEDSIM_REQUIRE_DOCKER=1``, ``FEDSIM_REQUIRE_SANDBOX=1``,
    ``FEDSIM_REQUIRE_BROWSER=1``), where that is a failure."""
    _skip_not_applicable(items)
    _skip_unless(items, "docker", _docker_missing, "FEDSIM_REQUIRE_DOCKER", "no Docker engine answers")
    _skip_unless(items, "sandbox", _sandbox_missing, "FEDSIM_REQUIRE_SANDBOX", "the bubblewrap sandbox cannot run")
    _skip_unless(items, "browser", _browser_missing, "FEDSIM_REQUIRE_BROWSER", "no headless Chromium")


def _skip_not_applicable(items: list[pytest.Item]) -> None:
    """A test function may carry ``not_applicable(params) -> reason | None`` for parameter combinations that
    make no sense (a docker-only attack on the sandbox): skipped here, before any fixture is set up."""
    for item in items:
        judge = getattr(getattr(item, "function", None), "not_applicable", None)
        callspec = getattr(item, "callspec", None)
        if judge is not None and callspec is not None:
            why = judge(dict(callspec.params))
            if why:
                item.add_marker(pytest.mark.skip(reason=why))


def _docker_missing() -> str | None:
    from fedsim.runtimes import docker_available

    return None if docker_available() else "no Docker engine answers"


def _sandbox_missing() -> str | None:
    from fedsim.runtimes.sandbox import probe

    found = probe()
    return None if found.ok else found.reason


def browser() -> str | None:
    """A Chromium (or Chrome) binary for headless screenshots of the report, or None."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _browser_missing() -> str | None:
    return None if browser() else "no chromium binary on PATH (apt-get install chromium)"


def _skip_unless(items: list[pytest.Item], marker: str, missing: Any, require: str, what: str) -> None:
    import os

    if not any(item.get_closest_marker(marker) for item in items):
        return
    why = missing()
    if why is None:
        return
    if os.environ.get(require) == "1":
        raise pytest.UsageError(f"{require}=1 but {what} ({why}): the {marker} tests cannot run")
    skip = pytest.mark.skip(reason=f"{why} (CI sets {require}=1 and provides it)")
    for item in items:
        if item.get_closest_marker(marker):
            item.add_marker(skip)


def containers_of_run(run_id: str) -> list[str]:
    """Names of the containers (running or not) that carry ``fedsim.run=<run_id>``: what a test may leave behind.

    Filtering on the run keeps the check true while other suites share the engine.
    """
    import docker

    client = docker.from_env()
    try:
        return [c.name for c in client.containers.list(all=True, filters={"label": f"fedsim.run={run_id}"})]
    finally:
        client.close()
