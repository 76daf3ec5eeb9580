"""Benchmark and site files: valid ones load, malformed ones give one line naming file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedsim.errors import SpecError
from fedsim.spec import load_benchmark, load_site, load_sites
from tests.conftest import BENCH, CUBES, ROOT, write_yaml


def _bench(tmp_path: Path, **changes: object) -> Path:
    data: dict[str, object] = {
        "name": "b",
        "data_prep": {"cube": str(CUBES / "data_prep")},
        "metrics": {"cube": str(CUBES / "metrics")},
        "models": [{"name": "baseline", "cube": str(CUBES / "baseline")}],
    }
    data.update(changes)
    return write_yaml(tmp_path / "benchmark.yaml", data)


def test_bundled_benchmark_and_sites_load() -> None:
    bench = load_benchmark(BENCH)
    assert bench.limits.timeout_per_case_s == 180
    assert bench.limits.gpu_memory_gb == 11 and bench.limits.ram_gb == 40
    assert [m.name for m in bench.models] == ["baseline", "region_grow"]
    sites = load_sites(bench.sites)
    assert [s.name for s in sites] == ["site_a", "site_b", "site_c"]
    assert len({s.data.synthesize.shift for s in sites if s.data.synthesize}) == 3  # distinct shifts
    assert len({s.hardware for s in sites}) == 3


def test_relative_cube_paths_resolve_against_the_benchmark_file() -> None:
    bench = load_benchmark(BENCH / "benchmark.yaml")
    assert bench.data_prep.cube == (BENCH / "cubes" / "data_prep").resolve()


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"limitz": {}}, "limitz", "unknown key"),
        ({"limits": {"timeout_per_case": 10}}, "limits.timeout_per_case", "timeout_per_case_s"),
        ({"limits": {"ram_gb": "lots"}}, "limits.ram_gb", "number"),
        ({"limits": {"ram_gb": -1}}, "limits.ram_gb", "greater than 0"),
        ({"models": [{"name": "x"}]}, "models[0]", "exactly one of"),
        ({"models": []}, "models", "at least 1"),
        ({"ranking": {"method": "best"}}, "ranking.method", "rankThenMean"),
        ({"models": [{"name": "m", "cube": "/nonexistent/cube"}]}, "models[0].cube", "no mlcube.yaml"),
    ],
)
def test_bad_benchmark_names_file_and_field(tmp_path: Path, changes: dict, field: str, words: str) -> None:
    path = _bench(tmp_path, **changes)
    with pytest.raises(SpecError) as info:
        load_benchmark(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {field}: "), msg
    assert words in msg
    assert "\n" not in msg


def test_missing_required_field(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "benchmark.yaml", {"name": "b", "metrics": {"cube": "x"}, "models": []})
    with pytest.raises(SpecError, match=r"data_prep: required field is missing"):
        load_benchmark(path)


def test_missing_benchmark_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_benchmark(tmp_path)


def test_yaml_syntax_error_has_a_line_number(tmp_path: Path) -> None:
    path = tmp_path / "benchmark.yaml"
    path.write_text("name: b\nmodels: [\n  - x\n")
    with pytest.raises(SpecError, match=r"invalid YAML at line \d+"):
        load_benchmark(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "benchmark.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_benchmark(path)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"name": "s", "data": {"path": "nowhere"}}, "data.path", "does not exist"),
        ({"name": "s", "data": {"synthesize": {"cases": 0}}}, "data.synthesize.cases", "greater than 0"),
        (
            {"name": "s", "data": {"synthesize": {"shift": {"gain": 2}}}},
            "data.synthesize.shift.gain",
            "unknown key",
        ),
        ({"name": "s", "data": {}}, "data", "give 'path'"),
        ({"name": "s", "data": {"synthesize": {}}, "runtime": "podman"}, "runtime", "'docker'"),
        ({"name": "s", "data": {"synthesize": {}}, "hardware": {"gpus": "two"}}, "hardware.gpus", "integer"),
        ({"name": "bad name", "data": {"synthesize": {}}}, "name", "pattern"),
    ],
)
def test_bad_site_names_file_and_field(tmp_path: Path, data: dict, field: str, words: str) -> None:
    path = write_yaml(tmp_path / "site.yaml", data)
    with pytest.raises(SpecError) as info:
        load_site(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {field}: "), msg
    assert words in msg


def test_duplicate_site_names(tmp_path: Path) -> None:
    for f in ("a.yaml", "b.yaml"):
        write_yaml(tmp_path / f, {"name": "same", "data": {"synthesize": {}}})
    with pytest.raises(SpecError, match="also used by"):
        load_sites([tmp_path])


def test_existing_data_path_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    site = load_site(write_yaml(tmp_path / "site.yaml", {"name": "s", "data": {"path": "raw"}}))
    assert site.data.path == (tmp_path / "raw").resolve()


def test_cli_reports_one_line_and_exit_2(tmp_path: Path) -> None:
    path = _bench(tmp_path, limits={"ram": 3})
    proc = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "run", "benchmark", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and "limits.ram" in lines[0]


def test_cli_missing_data_dir(tmp_path: Path) -> None:
    _bench(tmp_path, sites=["sites"])
    write_yaml(tmp_path / "sites" / "s.yaml", {"name": "s", "data": {"path": "/no/such/dir"}})
    proc = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "run", "benchmark", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "data.path" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
