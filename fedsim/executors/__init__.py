"""Executors: where jobs run (local threads by default)."""

from fedsim.executors.base import Executor
from fedsim.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor"]
