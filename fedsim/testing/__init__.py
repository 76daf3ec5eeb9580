"""Fakes shipped with fedsim, behind the same interfaces production uses (like httpx's MockTransport)."""

from fedsim.testing.executor import FakeExecutor, fake_plans
from fedsim.testing.fake_nvml import FakeNvml
from fedsim.testing.runtime import FakeHandle, FakeRuntime, Script

__all__ = ["FakeExecutor", "FakeHandle", "FakeNvml", "FakeRuntime", "Script", "fake_plans"]
