"""Fakes shipped with fedsim, behind the same interfaces production uses (like httpx's MockTransport)."""

from fedsim.testing.fake_nvml import FakeNvml

__all__ = ["FakeNvml"]
