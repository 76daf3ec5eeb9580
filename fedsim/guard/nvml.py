"""The NVML seam: what the GPU guard and the scheduler need to know about GPUs, nothing more.

:class:`PynvmlBackend` talks to the driver through nvidia-ml-py; :class:`fedsim.testing.FakeNvml` implements
the same interface with a scripted process list, so the sampler and the scheduler are tested without a GPU.
NVML errors are translated where they enter; a machine without NVML is a CPU-only machine, said once.
"""

from __future__ import annotations

import abc
import logging
import threading
from dataclasses import dataclass

log = logging.getLogger("fedsim.guard")


@dataclass(frozen=True)
class GpuDevice:
    """A schedulable GPU (or MIG instance): jobs get it by ``uuid``."""

    index: int
    uuid: str
    name: str
    memory_total: int
    mig: bool = False


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None  # None: the driver cannot attribute memory to processes (e.g. some vGPU/WDDM)


class NvmlBackend(abc.ABC):
    @abc.abstractmethod
    def devices(self) -> list[GpuDevice]:
        """Every GPU jobs can be placed on; MIG instances replace their parent when MIG is enabled."""

    @abc.abstractmethod
    def processes(self, uuid: str) -> list[GpuProcess]:
        """Compute processes on one device (host PIDs), in one cheap driver call."""

    @abc.abstractmethod
    def used_bytes(self, uuid: str) -> int:
        """Device-level used memory (a fallback when per-process values are unavailable)."""


class PynvmlBackend(NvmlBackend):
    """nvidia-ml-py; raises :class:`NvmlUnavailable` when there is no driver."""

    def __init__(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded ...
            raise NvmlUnavailable(str(exc) or type(exc).__name__) from exc
        self._nv = pynvml
        self._handles: dict[str, object] = {}
        self._use_v2 = False
        self._lock = threading.Lock()
        self._devices = self._discover()

    def _discover(self) -> list[GpuDevice]:
        nv = self._nv
        found: list[GpuDevice] = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            name = _text(nv.nvmlDeviceGetName(h))
            mig_on = False
            try:
                current, _pending = nv.nvmlDeviceGetMigMode(h)
                mig_on = current == nv.NVML_DEVICE_MIG_ENABLE
            except nv.NVMLError:
                pass
            if mig_on:
                for j in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):
                    try:
                        mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                    except nv.NVMLError:
                        continue
                    uuid = _text(nv.nvmlDeviceGetUUID(mh))
                    self._handles[uuid] = mh
                    total = nv.nvmlDeviceGetMemoryInfo(mh).total
                    found.append(GpuDevice(i, uuid, f"{name} MIG {j}", int(total), mig=True))
                continue
            uuid = _text(nv.nvmlDeviceGetUUID(h))
            self._handles[uuid] = h
            found.append(GpuDevice(i, uuid, name, int(nv.nvmlDeviceGetMemoryInfo(h).total)))
        return found

    def devices(self) -> list[GpuDevice]:
        return list(self._devices)

    def processes(self, uuid: str) -> list[GpuProcess]:
        nv = self._nv
        h = self._handles[uuid]
        if not self._use_v2:
            try:
                procs = nv.nvmlDeviceGetComputeRunningProcesses_v3(h)
            except nv.NVMLError_FunctionNotFound:
                self._use_v2 = True  # drivers before 510 have no _v3
                log.info("NVML: falling back to nvmlDeviceGetComputeRunningProcesses_v2 (old driver)")
            else:
                return [GpuProcess(int(p.pid), _bytes(p.usedGpuMemory)) for p in procs]
        procs = nv.nvmlDeviceGetComputeRunningProcesses_v2(h)
        return [GpuProcess(int(p.pid), _bytes(p.usedGpuMemory)) for p in procs]

    def used_bytes(self, uuid: str) -> int:
        return int(self._nv.nvmlDeviceGetMemoryInfo(self._handles[uuid]).used)


class NvmlUnavailable(Exception):
    """No NVML here (no driver, no GPU): fedsim runs in CPU-only mode."""


_cpu_only_said = False
_default: NvmlBackend | None = None
_default_lock = threading.Lock()


def default_backend() -> NvmlBackend | None:
    """The machine's NVML (one per process), or None in CPU-only mode — logged once."""
    global _cpu_only_said, _default
    with _default_lock:
        if _default is not None:
            return _default
        try:
            _default = PynvmlBackend()
        except NvmlUnavailable as exc:
            if not _cpu_only_said:
                log.warning("NVML unavailable (%s): CPU-only mode, GPU memory is not watched", exc)
                _cpu_only_said = True
            return None
        return _default


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: object) -> int | None:
    if value is None:
        return None
    v = int(value)  # type: ignore[call-overload]
    return None if v >= 2**64 - 1 else v
