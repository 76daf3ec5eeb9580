"""Issue 15, item 5: no configuration value reaches a traceback.

Every numeric field of the benchmark and site models refuses ``inf``, ``-inf``, ``nan`` and literals beyond a
double's range (``1e999``: YAML reads it as text, pydantic would make it ``inf``) with the usual one-line error
naming the file and the field; values the synthesis cannot honour (a negative seed, a 2-voxel side, a 1e-300 mm
spacing, a volume that cannot fit in memory) are refused at load time as well, and whatever a site's synthesis
settings hold, making its data either works or fails with a :class:`FedsimError`.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from fedsim.errors import FedsimError, SpecError
from fedsim.spec import load_benchmark, load_site
from fedsim.spec.models import BenchmarkSpec, SiteSpec
from tests.conftest import BENCH, CUBES, ROOT

NON_FINITE = [math.inf, -math.inf, math.nan, "1e999", "-1e999", "inf", "nan", "1e400"]


def _numeric_fields(model: type[BaseModel], here: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], type]]:
    """Every int or float field of ``model`` and its nested models: (path, type); a tuple's first element."""
    found: list[tuple[tuple[Any, ...], type]] = []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        found += _numeric_at(info.annotation, (*here, name))
    return found


def _numeric_at(annotation: Any, here: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], type]]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _numeric_at(typing.get_args(annotation)[0], here)
    if annotation in (int, float):
        return [(here, annotation)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _numeric_fields(annotation, here)
    if origin is tuple:
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if args and not (isinstance(args[0], type) and issubclass(args[0], BaseModel)):
            return _numeric_at(args[0], (*here, 0))
        return []
    if origin in (typing.Union, types.UnionType):
        out: list[tuple[tuple[Any, ...], type]] = []
        for arg in typing.get_args(annotation):
            out += _numeric_at(arg, here)
        return out
    return []  # str, Path, Literal, dict, lists of models


def _valid_benchmark() -> dict[str, Any]:
    data = yaml.safe_load((BENCH / "benchmark.yaml").read_text())
    data["data_prep"]["cube"] = str(CUBES / "data_prep")
    data["metrics"]["cube"] = str(CUBES / "metrics")
    for model in data["models"]:
        model["cube"] = str((BENCH / model["cube"]).resolve())
    data["sites"] = [str(ROOT / "sites")]
    return data


def _valid_site() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "sites" / "site_b_regional.yaml").read_text())


def _set(data: dict[str, Any], where: tuple[Any, ...], value: Any, model: type[BaseModel]) -> dict[str, Any]:
    """``data`` with the value at ``where`` replaced (missing mappings and tuples created from the defaults)."""
    data = copy.deepcopy(data)
    node: Any = data
    current: Any = model
    for i, part in enumerate(where[:-1]):
        nxt = where[i + 1]
        if isinstance(part, str):
            info = current.model_fields[part]
            if part not in node or node[part] is None:
                default = info.default
                if isinstance(default, BaseModel):
                    node[part] = default.model_dump(mode="json")
                elif isinstance(default, tuple):
                    node[part] = list(default)
                else:
                    node[part] = {} if isinstance(nxt, str) else [0]
            elif isinstance(node[part], tuple):
                node[part] = list(node[part])
            annotation = info.annotation
            for arg in (annotation, *typing.get_args(annotation)):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    current = arg
                    break
        node = node[part]
    node[where[-1]] = value
    return data


SITE_FIELDS = _numeric_fields(SiteSpec)
BENCH_FIELDS = _numeric_fields(BenchmarkSpec)
CASES = [("site", w, t) for w, t in SITE_FIELDS] + [("benchmark", w, t) for w, t in BENCH_FIELDS]


def test_the_walk_finds_the_fields_the_issue_names() -> None:
    site = {".".join(map(str, w)) for w, _ in SITE_FIELDS}
    bench = {".".join(map(str, w)) for w, _ in BENCH_FIELDS}
    assert {"data.synthesize.shift.noise_std", "hardware.ram_gb", "data.synthesize.spacing.0"} <= site
    assert {"limits.ram_gb", "limits.timeout_per_case_s", "data.expected_spacing.0", "limits.max_pids"} <= bench
    assert len(CASES) >= 25


def _field_text(where: tuple[Any, ...]) -> str:
    out = ""
    for part in where:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


@pytest.mark.parametrize(("kind", "where", "typ"), CASES, ids=[f"{k}:{_field_text(w)}" for k, w, _ in CASES])
def test_non_finite_numbers_are_refused_in_one_line(
    tmp_path: Path, kind: str, where: tuple[Any, ...], typ: type
) -> None:
    base, model, loader = (
        (_valid_site(), SiteSpec, load_site) if kind == "site" else (_valid_benchmark(), BenchmarkSpec, load_benchmark)
    )
    for i, value in enumerate(NON_FINITE):
        path = tmp_path / f"{i}" / f"{kind}.yaml"
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(_set(base, where, value, model), sort_keys=False))
        with pytest.raises(SpecError) as caught:
            loader(path)
        message = str(caught.value)
        assert len(message.splitlines()) == 1, message
        assert str(path) in message and _field_text(where) in message, message
        if typ is float:
            assert "finite number" in message, message


def test_the_issue_s_site_noise_std_1e999(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("name: s\ndata:\n  synthesize:\n    shift: {noise_std: 1e999}\n")
    with pytest.raises(SpecError, match=r"data\.synthesize\.shift\.noise_std: must be a finite number.*'1e999'"):
        load_site(site)


def test_the_cli_refuses_it_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    bench = _valid_benchmark()
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "s.yaml").write_text("name: s\ndata:\n  synthesize:\n    cases: 1\n    shift: {noise_std: 1e999}\n")
    bench["sites"] = [str(sites)]
    (tmp_path / "benchmark.yaml").write_text(yaml.safe_dump(bench))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "run", "benchmark", str(tmp_path), "--runs-dir", str(tmp_path / "runs")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "noise_std: must be a finite number" in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()


# --- whatever a site's synthesis settings hold: data, or a FedsimError ------------------------------------------

EXTREMES: list[tuple[str, Any]] = [
    ("seed", -1),
    ("seed", 2**64),
    ("shape", [2, 2, 2]),
    ("shape", [7, 16, 16]),
    ("shape", [10**6, 16, 16]),
    ("shape", [1024, 1024, 1024]),
    ("spacing", [1e-300, 1, 1]),
    ("spacing", [1e300, 1, 1]),
    ("shift.intensity_scale", 1e308),
    ("shift.intensity_offset", -1e308),
    ("shift.noise_std", 1e308),
    ("shift.contrast_gamma", 1e308),
    ("shift.contrast_gamma", 500),
    ("shift.bias_field", 0.999999),
    ("shift.intensity_scale", 100),
    ("shift.noise_std", 100),
    ("shift.contrast_gamma", 10),
    ("shift.intensity_offset", -100),
]


@pytest.mark.filterwarnings("error")  # an overflow in synthesis (RuntimeWarning) fails too
@pytest.mark.parametrize(("key", "value"), EXTREMES, ids=[f"{k}={v!r}"[:40] for k, v in EXTREMES])
def test_synthesis_settings_never_reach_a_traceback(tmp_path: Path, key: str, value: Any) -> None:
    from fedsim.pipeline.sitedata import ensure_site_data

    synth: dict[str, Any] = {"cases": 1, "seed": 3, "shape": [16, 16, 12], "shift": {}}
    *parents, last = key.split(".")
    node = synth
    for p in parents:
        node = node[p]
    node[last] = value
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "data": {"synthesize": synth}}))
    try:
        site = load_site(path)
        directory = ensure_site_data(site)
    except FedsimError as exc:
        assert len(str(exc).splitlines()) == 1 and str(path) in str(exc)
        return
    assert any(directory.iterdir())
