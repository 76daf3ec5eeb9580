"""Runtimes: one adapter per platform behind :class:`Runtime`."""

from fedsim.runtimes.base import Capabilities, ProcessHandle, Runtime
from fedsim.runtimes.local import LocalRuntime
from fedsim.runtimes.select import docker_available, runtime_for

__all__ = ["Capabilities", "LocalRuntime", "ProcessHandle", "Runtime", "docker_available", "runtime_for"]
