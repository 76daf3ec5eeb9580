"""MedPerf's task contract: which parameters the federation itself sets for each task.

MedPerf (``fets-challenge`` branch) runs ``mlcube run --task=T key=value ...`` with only the official keys
below; MLCube passes every other declared parameter with its default resolved in the cube's workspace.
fedsim sets exactly these keys (and its own extras only where the cube declares them), so a cube that
passed the real federation runs here unchanged. See ``docs/mlcube-compatibility.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fedsim.cube.spec import CallConvention, CubeSpec

# task -> the keys MedPerf passes (labels_path of sanity_check/statistics: only with output_labels_path)
OFFICIAL_KEYS: dict[str, tuple[str, ...]] = {
    "prepare": ("data_path", "labels_path", "output_path", "output_labels_path"),
    "sanity_check": ("data_path", "labels_path"),
    "statistics": ("data_path", "labels_path"),
    "infer": ("data_path", "output_path"),
    "evaluate": ("predictions", "labels", "output_path"),
}


def declared(cube: CubeSpec, task: str) -> set[str]:
    """Every parameter name ``task`` declares, inputs and outputs."""
    params = cube.task(task).parameters
    return set(params.inputs) | set(params.outputs)


def separate_labels(data_prep: CubeSpec) -> bool:
    """Whether prepare writes labels apart from the data (it declares ``output_labels_path``).

    MedPerf then passes them as ``labels_path`` to sanity_check and statistics and to the metrics cube;
    otherwise the labels live inside the prepared data folder.
    """
    return "prepare" in data_prep.tasks and "output_labels_path" in data_prep.task("prepare").parameters.outputs


def task_paths(
    cube: CubeSpec,
    task: str,
    official: Mapping[str, Path],
    extras: Mapping[str, Path | None] | None = None,
    mount_paths: Mapping[str, Path | None] | None = None,
) -> dict[str, Path]:
    """The ``key=value`` pairs fedsim passes: official keys and fedsim's extras, each only if declared; and
    ``mount_paths``, the keys today's MedPerf supplies besides (``report_file``, statistics' ``output_path``,
    ``local_outputs_path``, ``labels_path`` without separate labels), to cubes of that convention only — an
    MLCube keeps the defaults the 2022 federation left it."""
    names = declared(cube, task)
    allowed = set(OFFICIAL_KEYS.get(task, ()))
    unknown = sorted(set(official) - allowed)
    if unknown:
        raise ValueError(f"{', '.join(unknown)} are not official keys of {task!r}")
    chosen = {**official, **(extras or {})}
    if cube.convention is CallConvention.MOUNT_PATHS:
        chosen.update(mount_paths or {})
    return {k: v for k, v in chosen.items() if k in names and v is not None}
