"""BraTS metrics (CaPTk semantics for 2021, the 2023 lesion-wise and the 2025 panoptica sets; docs/metrics.md),
fast, for the metrics cube.

Imports only numpy, scipy, nibabel and ``fedsim.errors`` so it runs in a bare Debian bookworm image; the
submodules load on first use to keep ``import fedsim.metrics`` cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BRATS2021_REGIONS",
    "BRATS2023_REGIONS",
    "BRATS2025_CONFIGS",
    "BRATS2025_REGIONS",
    "HD95_ONE_EMPTY",
    "HD95_PENALTY",
    "METRIC_SETS",
    "Geometry",
    "UnreadableVolume",
    "brats2025_columns",
    "brats2025_metrics",
    "case_metrics",
    "evaluate_case",
    "evaluate_dir",
    "hd95",
    "lesionwise_metrics",
    "load_label",
    "penalty_row",
]

_WHERE = {
    "BRATS2021_REGIONS": "brats",
    "HD95_ONE_EMPTY": "brats",
    "HD95_PENALTY": "brats",
    "case_metrics": "brats",
    "penalty_row": "brats",
    "hd95": "hausdorff",
    "BRATS2025_CONFIGS": "brats2025",
    "BRATS2025_REGIONS": "brats2025",
    "brats2025_columns": "brats2025",
    "brats2025_metrics": "brats2025",
    "BRATS2023_REGIONS": "lesionwise",
    "lesionwise_metrics": "lesionwise",
    "Geometry": "nifti",
    "UnreadableVolume": "nifti",
    "load_label": "nifti",
    "METRIC_SETS": "evaluate",
    "evaluate_case": "evaluate",
    "evaluate_dir": "evaluate",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'fedsim.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fedsim.metrics.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
