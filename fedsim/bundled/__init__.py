"""The benchmark and sites that ship with fedsim (package data): ``fedsim run benchmark`` and ``fedsim sites list``
use them when given no path, from any directory, after a plain ``pip install``.

``benchmarks/fets2022-task2/`` holds the FeTS 2022 task 2 benchmark and its reference cubes (MLCube directories:
``mlcube.yaml``, ``project/`` with the Dockerfile and code, ``workspace/``), ``sites/`` the three simulated
institutions the benchmark names (``sites: [../../sites]``). ``benchmarks/brats2025/`` is a BraTS 2025-style
benchmark (labels 0..4, ``metric_set: brats2025``) with its own ``sites/``, reusing the FeTS cubes' code.
In a clone, the top-level ``benchmarks`` and ``sites``
are symlinks to these directories. Nothing here is imported: these are files.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BENCHMARK", "BENCHMARKS", "ROOT", "SITES"]

ROOT = Path(__file__).resolve().parent
BENCHMARKS = ROOT / "benchmarks"
BENCHMARK = BENCHMARKS / "fets2022-task2"
SITES = ROOT / "sites"
