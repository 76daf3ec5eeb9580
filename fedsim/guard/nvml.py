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


# --- which GPUs this fedsim may use: --gpus, else CUDA_VISIBLE_DEVICES ----------------------------------------

_requested: str | None = None  # --gpus as the command line gave it (None: not given)
_NO_GPU = {"", "none", "-1"}


class SelectedGpus(NvmlBackend):
    """A backend limited to some of its devices: the ones jobs are placed on, guarded and sampled."""

    def __init__(self, inner: NvmlBackend, devices: list[GpuDevice]) -> None:
        self.inner = inner
        self._devices = list(devices)

    def devices(self) -> list[GpuDevice]:
        return list(self._devices)

    def processes(self, uuid: str) -> list[GpuProcess]:
        return self.inner.processes(uuid)

    def used_bytes(self, uuid: str) -> int:
        return self.inner.used_bytes(uuid)


def visible_devices(devices: list[GpuDevice], spec: str, *, strict: bool = True) -> list[GpuDevice]:
    """The devices a ``--gpus``/``CUDA_VISIBLE_DEVICES`` value names, in its order: NVML indices (``0,1``; a GPU in
    MIG mode stands for all its instances), or UUIDs and unique UUID prefixes (``GPU-8f3a``, ``MIG-...``). An
    empty value, ``none`` or ``-1`` names no GPU. ``strict`` (``--gpus``): an unknown entry is a ``ValueError``;
    otherwise (the environment variable) CUDA's rule applies: the list ends at the first unknown entry."""
    items = [x.strip() for x in spec.split(",")]
    if spec.strip().lower() in _NO_GPU:
        return []
    chosen: list[GpuDevice] = []
    for item in items:
        if item.isdigit():
            found = [d for d in devices if d.index == int(item)]
        else:
            found = [d for d in devices if item and d.uuid.startswith(item)]
            if len({d.uuid for d in found}) > 1 and not any(d.uuid == item for d in found):
                if strict:
                    raise ValueError(f"{item!r} matches {len(found)} GPUs; give more of the UUID")
                break
            found = [d for d in found if d.uuid == item] or found
        if not found:
            if strict:
                known = ", ".join(f"{d.index} ({d.uuid})" for d in devices) or "none"
                raise ValueError(f"no GPU {item!r} here; NVML sees: {known}")
            break
        chosen += [d for d in found if d not in chosen]
    return chosen


def select_gpus(spec: str | None) -> list[GpuDevice] | None:
    """Record ``--gpus`` for this process (every local executor made afterwards uses only those GPUs) and check
    it against NVML now; returns the chosen devices (None: not given). A :class:`SpecError` (exit 2) names what
    is wrong. Without it, ``CUDA_VISIBLE_DEVICES`` chooses, as for any CUDA program."""
    global _requested, _cpu_only_said
    from fedsim.errors import SpecError

    if spec is None:
        _requested = None
        return None
    wants_some = spec.strip().lower() not in _NO_GPU
    said, _cpu_only_said = _cpu_only_said, _cpu_only_said or wants_some  # the error below says it instead
    backend = default_backend()
    if backend is None and wants_some:
        raise SpecError(f"--gpus {spec}: NVML sees no GPU on this machine (no NVIDIA driver); leave --gpus out")
    _cpu_only_said = said
    try:
        chosen = visible_devices(backend.devices() if backend is not None else [], spec)
    except ValueError as exc:
        raise SpecError(f"--gpus {spec}: {exc}") from None
    _requested = spec
    return chosen


def local_backend() -> NvmlBackend | None:
    """What a local executor places and guards jobs on: the machine's NVML limited to ``--gpus``, else to
    ``CUDA_VISIBLE_DEVICES`` when set, else every GPU. (Ray's workers keep :func:`default_backend`: Ray sets
    their ``CUDA_VISIBLE_DEVICES`` per task.)"""
    import os

    backend = default_backend()
    if backend is None:
        return None
    spec, strict = _requested, True
    if spec is None:
        spec, strict = os.environ.get("CUDA_VISIBLE_DEVICES"), False
    if spec is None:
        return backend
    try:
        chosen = visible_devices(backend.devices(), spec, strict=strict)
    except ValueError:  # checked by select_gpus already; a device that vanished since
        chosen = []
    named = [x for x in spec.split(",") if x.strip()] if spec.strip().lower() not in _NO_GPU else []
    if not strict and len({d.index for d in chosen}) < len(named):
        using = ",".join(str(d.index) for d in chosen) or "no GPU"
        log.warning("CUDA_VISIBLE_DEVICES=%s: using %s (as CUDA does, the list ends at an unknown entry)", spec, using)
    return SelectedGpus(backend, chosen)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: object) -> int | None:
    if value is None:
        return None
    v = int(value)  # type: ignore[call-overload]
    return None if v >= 2**64 - 1 else v
