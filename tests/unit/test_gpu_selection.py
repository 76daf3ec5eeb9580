"""Issue 15, item 7: ``--gpus 0,1`` and ``CUDA_VISIBLE_DEVICES`` choose the GPUs fedsim places, guards and samples
jobs on (NVML itself enumerates every GPU and ignores the variable). Tested on :class:`fedsim.testing.FakeNvml`."""

from __future__ import annotations

import logging

import pytest

from fedsim.errors import SpecError
from fedsim.executors.local import LocalExecutor
from fedsim.guard import nvml as nvml_mod
from fedsim.guard.nvml import GpuDevice, SelectedGpus, local_backend, select_gpus, visible_devices
from fedsim.testing import FakeNvml


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """A 4-GPU machine behind ``default_backend()``, no --gpus given and no CUDA_VISIBLE_DEVICES."""
    fake = FakeNvml(gpus=4, memory_gb=16)
    monkeypatch.setattr(nvml_mod, "default_backend", lambda: fake)
    monkeypatch.setattr(nvml_mod, "_requested", None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


def _indices(devices: list[GpuDevice] | None) -> list[int]:
    return [d.index for d in devices or []]


def test_indices_uuids_and_prefixes() -> None:
    devices = FakeNvml(gpus=4).devices()
    assert _indices(visible_devices(devices, "0,2")) == [0, 2]
    assert _indices(visible_devices(devices, "3, 1")) == [3, 1]  # CUDA's order: the list's
    assert _indices(visible_devices(devices, "GPU-fake-0002")) == [2]
    assert _indices(visible_devices(devices, "GPU-fake-0001,0")) == [1, 0]
    assert _indices(visible_devices(devices, "1,1")) == [1]
    for none in ("", "none", "-1", " "):
        assert visible_devices(devices, none) == []


def test_mig_index_means_all_its_instances() -> None:
    devices = [
        GpuDevice(0, "MIG-aaaa-1", "A100 MIG 0", 5 << 30, mig=True),
        GpuDevice(0, "MIG-aaaa-2", "A100 MIG 1", 5 << 30, mig=True),
        GpuDevice(1, "GPU-bbbb", "A100", 40 << 30),
    ]
    assert [d.uuid for d in visible_devices(devices, "0")] == ["MIG-aaaa-1", "MIG-aaaa-2"]
    assert [d.uuid for d in visible_devices(devices, "MIG-aaaa-2")] == ["MIG-aaaa-2"]
    with pytest.raises(ValueError, match="matches 2 GPUs"):
        visible_devices(devices, "MIG-aaaa")


def test_strict_refuses_unknown_entries_and_the_environment_follows_cuda() -> None:
    devices = FakeNvml(gpus=2).devices()
    with pytest.raises(ValueError, match=r"no GPU '7' here; NVML sees: 0 \(GPU-fake-0000\), 1 \(GPU-fake-0001\)"):
        visible_devices(devices, "0,7")
    with pytest.raises(ValueError, match="no GPU 'x'"):
        visible_devices(devices, "x")
    # CUDA_VISIBLE_DEVICES: the list ends at the first entry that names no device
    assert _indices(visible_devices(devices, "1,7,0", strict=False)) == [1]
    assert _indices(visible_devices(devices, "7,0", strict=False)) == []


def test_every_gpu_without_a_choice(machine: FakeNvml) -> None:
    assert local_backend() is machine


def test_cuda_visible_devices_limits_the_local_executor(
    machine: FakeNvml, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    backend = local_backend()
    assert isinstance(backend, SelectedGpus) and _indices(backend.devices()) == [1, 3]
    machine.add_process("GPU-fake-0003", 42, 1 << 30)
    assert backend.used_bytes("GPU-fake-0003") == 1 << 30  # sampling goes to the machine's NVML
    with LocalExecutor(cpus=4) as executor:
        assert [g.uuid for g in executor.resources.gpus] == ["GPU-fake-0001", "GPU-fake-0003"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,9,0")
    with caplog.at_level(logging.WARNING, logger="fedsim.guard"):
        assert _indices(local_backend().devices()) == [2]  # type: ignore[union-attr]
    assert "the list ends at an unknown entry" in caplog.text
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local_backend().devices() == []  # type: ignore[union-attr]


def test_gpus_option_wins_over_the_environment(machine: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert _indices(select_gpus("0,2")) == [0, 2]
    with LocalExecutor(cpus=4) as executor:
        assert [g.index for g in executor.resources.gpus] == [0, 2]
        executor.check_sites([])  # a site profile is checked against the chosen GPUs only
    assert select_gpus(None) is None
    assert _indices(local_backend().devices()) == [3]  # type: ignore[union-attr]


def test_a_site_needing_more_gpus_than_chosen_is_refused(machine: FakeNvml) -> None:
    from fedsim.spec import SiteSpec

    select_gpus("1")
    site = SiteSpec.model_validate({"name": "s", "data": {"synthesize": {}}, "hardware": {"gpus": 2}})
    with LocalExecutor(cpus=4) as executor, pytest.raises(SpecError, match="asks for 2 GPUs but this machine has 1"):
        executor.check_sites([site])


def test_bad_gpus_values_are_one_line_errors(machine: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SpecError, match=r"^--gpus 0,5: no GPU '5' here; NVML sees: 0 \(GPU-fake-0000\)"):
        select_gpus("0,5")
    monkeypatch.setattr(nvml_mod, "default_backend", lambda: None)  # no driver
    with pytest.raises(SpecError, match="--gpus 0: NVML sees no GPU on this machine"):
        select_gpus("0")
    assert select_gpus("none") == []
