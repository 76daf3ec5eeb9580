"""PynvmlBackend's logic against a stand-in ``pynvml`` module: MIG enumeration, the _v3 → _v2 fallback,
unavailable per-process values, and CPU-only mode when the library is missing. The real driver is
exercised by perf/gpu_guard_check.py on a GPU machine."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from fedsim.guard import nvml as nvml_mod
from fedsim.guard.nvml import GpuProcess, NvmlUnavailable, PynvmlBackend


class NVMLError(Exception):
    pass


class NVMLError_FunctionNotFound(NVMLError):
    pass


@dataclass
class Mem:
    total: int
    used: int


@dataclass
class Proc:
    pid: int
    usedGpuMemory: int | None


def fake_pynvml(*, mig: bool, has_v3: bool) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    m.NVML_DEVICE_MIG_ENABLE = 1
    m.calls = {"v2": 0, "v3": 0}
    m.nvmlInit = lambda: None
    m.nvmlDeviceGetCount = lambda: 2
    m.nvmlDeviceGetHandleByIndex = lambda i: ("gpu", i)
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100"
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h[1]}" if h[0] == "gpu" else f"MIG-{h[1]}-{h[2]}"

    def mig_mode(h: tuple) -> tuple[int, int]:
        if h[1] == 1 and mig:
            return (1, 1)
        return (0, 0)

    m.nvmlDeviceGetMigMode = mig_mode
    m.nvmlDeviceGetMaxMigDeviceCount = lambda h: 3

    def mig_handle(h: tuple, j: int) -> tuple:
        if j == 2:
            raise NVMLError("not found")  # an unused MIG slot
        return ("mig", h[1], j)

    m.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    m.nvmlDeviceGetMemoryInfo = lambda h: Mem(80 * 2**30 if h[0] == "gpu" else 20 * 2**30, 5 * 2**30)

    def v3(h: tuple) -> list[Proc]:
        m.calls["v3"] += 1
        if not has_v3:
            raise NVMLError_FunctionNotFound()
        return [Proc(100, 2**30), Proc(101, None)]

    def v2(h: tuple) -> list[Proc]:
        m.calls["v2"] += 1
        return [Proc(100, 2**30), Proc(102, 2**64 - 1)]

    m.nvmlDeviceGetComputeRunningProcesses_v3 = v3
    m.nvmlDeviceGetComputeRunningProcesses_v2 = v2
    return m


def test_mig_instances_replace_their_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(mig=True, has_v3=True))
    devices = PynvmlBackend().devices()
    assert [d.uuid for d in devices] == ["GPU-0", "MIG-1-0", "MIG-1-1"]
    assert [d.mig for d in devices] == [False, True, True]
    assert devices[1].memory_total == 20 * 2**30


def test_v3_values_and_unavailable_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(mig=False, has_v3=True))
    backend = PynvmlBackend()
    assert backend.processes("GPU-0") == [GpuProcess(100, 2**30), GpuProcess(101, None)]
    assert backend.used_bytes("GPU-0") == 5 * 2**30


def test_old_driver_falls_back_to_v2_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_pynvml(mig=False, has_v3=False)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    backend = PynvmlBackend()
    for _ in range(3):
        procs = backend.processes("GPU-0")
    assert procs == [GpuProcess(100, 2**30), GpuProcess(102, None)]  # NVML's "not available" sentinel → None
    assert fake.calls == {"v3": 1, "v2": 3}


def test_no_library_means_cpu_only_mode_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = types.ModuleType("pynvml")

    def fail() -> None:
        raise OSError("NVML Shared Library Not Found")

    broken.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    with pytest.raises(NvmlUnavailable):
        PynvmlBackend()
    monkeypatch.setattr(nvml_mod, "_default", None)
    monkeypatch.setattr(nvml_mod, "_cpu_only_said", False)
    assert nvml_mod.default_backend() is None
    assert nvml_mod.default_backend() is None
    assert caplog.text.count("CPU-only mode") == 1
