"""No silent configuration: a benchmark's ``data:`` values reach the data-prep cube, or the run is refused.

The data-prep cube learns ``expected_shape``, ``expected_spacing``, ``labels``, ``max_val_size`` and ``seed`` from
one place only: the parameters file it is given. With ``data_prep: {parameters_file: generated}`` fedsim writes
that file from ``data:``; with ``null`` the cube reads its own ``workspace/parameters.yaml`` (as under MLCube
and MedPerf) and with a path the organiser's file — ``data:`` then reaches nothing, and the sanity check fails
every case against values nobody chose. As for ``metrics: {metric_set: ...}`` (refused in the spec without a
generated file), such a benchmark is refused in one line with the fix — except that fedsim's own bundled
data-prep cube, which reads fedsim's generated file by design, is simply given it (no extra key needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedsim.cube import CubeSpec
from fedsim.cube.contract import declared
from fedsim.errors import SpecError
from fedsim.spec.models import GENERATED, BenchmarkSpec, DataExpectations
from fedsim.yamlsafe import InvalidYaml, safe_load_text

PREP_TASKS = ("prepare", "sanity_check", "statistics")
PARAMS = "parameters_file"


def chosen_data(bench: BenchmarkSpec) -> dict[str, Any]:
    """The ``data:`` values that differ from fedsim's defaults (what a benchmark actually asks of the cube)."""
    default = DataExpectations().model_dump(mode="json")
    given = bench.data.model_dump(mode="json")
    return {k: v for k, v in given.items() if v != default[k]}


def _declares_params(cube: CubeSpec) -> bool:
    return any(PARAMS in declared(cube, t) for t in PREP_TASKS if t in cube.tasks)


def _file_values(path: Path) -> dict[str, Any] | None:
    try:
        data = safe_load_text(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError, InvalidYaml):
        return None
    return dict(data) if isinstance(data, dict) else ({} if data is None else None)


def data_reaches_prep(bench: BenchmarkSpec, prep: CubeSpec) -> BenchmarkSpec:
    """``bench`` as it runs (with a generated parameters file for the bundled data-prep cube when ``data:``
    asks for something), or :class:`SpecError` when ``data:`` values could not reach the cube."""
    chosen = chosen_data(bench)
    if not chosen:
        return bench
    keys = ", ".join(f"data.{k}" for k in chosen)
    source = str(bench.source) if bench.source else None
    choice = bench.data_prep.parameters_file
    if not _declares_params(prep):
        raise SpecError(
            f"{keys} cannot reach the data-prep cube {prep.name!r}: none of its tasks declares a parameters_file "
            f"(so it reads none); fix: declare parameters_file in its {'/'.join(PREP_TASKS)} tasks, or drop "
            f"{keys}",
            file=source,
            field="data",
        )
    if choice == GENERATED:
        return bench
    if choice is None:
        if prep.origin.trusted_code:  # fedsim's own cube: it is made to read the generated file
            update = {"data_prep": bench.data_prep.model_copy(update={"parameters_file": GENERATED})}
            return bench.model_copy(update=update)
        raise SpecError(
            f"{keys} reach the data-prep cube only through fedsim's generated parameters file, and it reads its "
            "own workspace parameters.yaml instead; fix: add 'parameters_file: generated' to data_prep (or drop "
            f"{keys})",
            file=source,
            field="data",
        )
    assert isinstance(choice, Path)
    values = _file_values(choice)
    differ = [k for k, v in chosen.items() if values is None or values.get(k) != v]
    if differ:
        shown = ", ".join(f"data.{k}" for k in differ)
        raise SpecError(
            f"{shown} cannot reach the data-prep cube: it reads {choice}, which does not say the same; fix: set "
            f"them in that file, use 'parameters_file: generated', or drop {shown}",
            file=source,
            field="data",
        )
    return bench


__all__ = ["chosen_data", "data_reaches_prep"]
