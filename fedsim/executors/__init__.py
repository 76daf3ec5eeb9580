"""Executors: where jobs run (local threads by default, a Ray cluster with ``fedsim[ray]``).

Optional executors are registered only when their package is installed (Flower's backend registry): the
registry then holds the class path, otherwise an install hint. Nothing here imports ``ray``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from fedsim.errors import RuntimeUnavailable
from fedsim.executors.base import Executor
from fedsim.executors.local import LocalExecutor

# name -> "module:Class" when usable here, else the hint that makes it usable
EXECUTORS: dict[str, str] = {"local": "fedsim.executors.local:LocalExecutor"}
UNAVAILABLE: dict[str, str] = {}

if importlib.util.find_spec("ray") is not None:
    EXECUTORS["ray"] = "fedsim.executors.ray:RayExecutor"
else:
    UNAVAILABLE["ray"] = "the ray executor needs Ray: pip install 'fedsim[ray]'"


def executor_class(name: str) -> type[Executor]:
    """The executor class registered as ``name``; :class:`RuntimeUnavailable` with an install hint if absent."""
    if name in UNAVAILABLE:
        raise RuntimeUnavailable(UNAVAILABLE[name])
    if name not in EXECUTORS:
        raise RuntimeUnavailable(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def make_executor(name: str, **options: Any) -> Executor:
    return executor_class(name)(**options)


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "executor_class", "make_executor"]
