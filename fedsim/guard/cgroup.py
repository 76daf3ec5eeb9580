"""Memory of a container from its cgroup (v1 or v2), found through one of its host PIDs.

A container's processes share pages copy-on-write (forked data loaders, a fork bomb), so summing their RSS
over-counts; the cgroup's own accounting is what the kernel enforces. Page cache that can be dropped
(inactive file pages) is left out, as ``docker stats`` does.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


class CgroupMemory:
    def __init__(self, directory: Path, v2: bool) -> None:
        self.directory = directory
        self.v2 = v2

    @classmethod
    def of_pid(cls, pid: int, root: Path = ROOT) -> CgroupMemory | None:
        """The memory cgroup of ``pid``, or None when it cannot be read (the caller falls back to RSS)."""
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            hid, controllers, path = [*line.split(":", 2), "", ""][:3]
            if "memory" in controllers.split(","):
                d = root / "memory" / path.lstrip("/")
                if (d / "memory.usage_in_bytes").is_file():
                    return cls(d, v2=False)
            if hid == "0" and controllers == "":
                d = root / path.lstrip("/")
                if (d / "memory.current").is_file():
                    return cls(d, v2=True)
        return None

    def _int(self, name: str) -> int | None:
        try:
            return int((self.directory / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _stat(self, key: str) -> int:
        try:
            for line in (self.directory / "memory.stat").read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
        except (OSError, ValueError):
            pass
        return 0

    def usage(self) -> int | None:
        """Bytes in use, without reclaimable page cache."""
        if self.v2:
            cur = self._int("memory.current")
            return None if cur is None else max(0, cur - self._stat("inactive_file"))
        cur = self._int("memory.usage_in_bytes")
        return None if cur is None else max(0, cur - self._stat("total_inactive_file"))

    def anon(self) -> int:
        """Anonymous memory (heap, stacks): what cannot be reclaimed without swap, which jobs do not get."""
        return self._stat("anon") if self.v2 else self._stat("total_rss")

    def failures(self) -> int | None:
        """How often the cgroup hit its limit (v1 ``memory.failcnt``, v2 ``max`` in ``memory.events``)."""
        if not self.v2:
            return self._int("memory.failcnt")
        try:
            for line in (self.directory / "memory.events").read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "max":
                    return int(v)
        except (OSError, ValueError):
            pass
        return None

    def peak(self) -> int | None:
        """The kernel's own high-water mark (includes page cache; an upper bound)."""
        return self._int("memory.peak") if self.v2 else self._int("memory.max_usage_in_bytes")
