"""A scriptable NVML: devices and a per-device process list that changes over time.

Tests describe GPU usage as a function of time or set it directly; the GPU sampler and the scheduler
cannot tell it from the driver. Counts its calls so a test can check the sampler's cost model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fedsim.guard.nvml import GpuDevice, GpuProcess, NvmlBackend

Script = Callable[[float], list[GpuProcess]]


class FakeNvml(NvmlBackend):
    def __init__(self, gpus: int = 1, memory_gb: float = 24.0, *, mig: bool = False) -> None:
        self._devices = [
            GpuDevice(i, f"GPU-fake-{i:04d}", "Fake GPU", int(memory_gb * 1024**3), mig=mig) for i in range(gpus)
        ]
        self._static: dict[str, list[GpuProcess]] = {d.uuid: [] for d in self._devices}
        self._scripts: dict[str, Script] = {}
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self.calls = 0
        self.device_used: dict[str, int] = {}

    def devices(self) -> list[GpuDevice]:
        return list(self._devices)

    def set_processes(self, uuid: str, procs: list[GpuProcess]) -> None:
        with self._lock:
            self._static[uuid] = list(procs)

    def add_process(self, uuid: str, pid: int, used_bytes: int | None) -> None:
        with self._lock:
            rest = [p for p in self._static[uuid] if p.pid != pid]
            self._static[uuid] = [*rest, GpuProcess(pid, used_bytes)]

    def remove_process(self, uuid: str, pid: int) -> None:
        with self._lock:
            self._static[uuid] = [p for p in self._static[uuid] if p.pid != pid]

    def script(self, uuid: str, fn: Script) -> None:
        """``fn(seconds since the script was set) -> processes``, evaluated at every call."""
        with self._lock:
            self._scripts[uuid] = fn
            self._t0 = time.monotonic()

    def clear_script(self, uuid: str) -> None:
        """Back to the static process list."""
        with self._lock:
            self._scripts.pop(uuid, None)

    def processes(self, uuid: str) -> list[GpuProcess]:
        with self._lock:
            self.calls += 1
            fn = self._scripts.get(uuid)
            if fn is not None:
                return list(fn(time.monotonic() - self._t0))
            return list(self._static[uuid])

    def used_bytes(self, uuid: str) -> int:
        if uuid in self.device_used:
            return self.device_used[uuid]
        return sum(p.used_bytes or 0 for p in self.processes(uuid))
