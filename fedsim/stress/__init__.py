"""Generalization stress test: a model's Dice under controlled acquisition shifts of increasing severity.

``fedsim stress MODEL...`` builds shifted copies of prepared cases (:mod:`fedsim.synth.shifts`), runs each
model's ``infer`` on them under the federation's runtime and limits, scores them with the benchmark's metric
set and reports robustness curves. Submodules load on first use so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "StressOptions",
    "StressResults",
    "render_png",
    "results_from_dict",
    "run_stress",
    "stress_report_section",
    "write_exports",
]

_WHERE = {
    "StressOptions": "run",
    "run_stress": "run",
    "StressResults": "results",
    "results_from_dict": "results",
    "write_exports": "results",
    "render_png": "plot",
    "stress_report_section": "plot",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'fedsim.stress' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fedsim.stress.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
