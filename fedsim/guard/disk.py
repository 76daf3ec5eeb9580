"""Output size: a submission may not fill the disk through its (bind-mounted, so unlimited) output_path.

The directory is walked at most every ``interval_s`` (a walk of a few predictions costs microseconds;
of a directory being filled with millions of files, it is bounded by ``max_entries``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from fedsim.guard.base import Guard, Violation, Watch
from fedsim.runtimes.base import ProcessHandle

MiB = 1024**2


def directory_size(path: Path, max_entries: int = 200_000) -> tuple[int, int]:
    """(bytes, entries) under ``path``, not following symlinks; stops counting after ``max_entries``."""
    total, entries = 0, 0
    stack = [str(path)]
    while stack and entries < max_entries:
        top = stack.pop()
        try:
            with os.scandir(top) as it:
                for entry in it:
                    entries += 1
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return total, entries


class _OutputWatch(Watch):
    def __init__(self, paths: tuple[Path, ...], limit: int, interval_s: float, max_entries: int, what: str) -> None:
        self._what = what
        self._paths = paths
        self._limit = limit
        self._interval = interval_s
        self._max_entries = max_entries
        self._next = 0.0

    def poll(self) -> Violation | None:
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self._interval
        size, entries = 0, 0
        for p in self._paths:
            s, e = directory_size(p, self._max_entries)
            size, entries = size + s, entries + e
        if size > self._limit:
            return Violation(
                "output_exceeded",
                f"wrote {size / MiB:.0f} MiB into {self._what}, over the limit of {self._limit / MiB:.0f} MiB",
            )
        if entries >= self._max_entries:
            return Violation("output_exceeded", f"created more than {self._max_entries} files in {self._what}")
        return None

    def due_in(self, tick_s: float) -> float:
        return max(0.0, self._next - time.monotonic())


class OutputSizeGuard(Guard):
    """What a task writes into host folders, bounded: its outputs, or (``what="/tmp"``) the host folder a
    ``mount_paths`` container gets as ``/tmp``, bounded like the tmpfs a submission gets elsewhere."""

    def __init__(
        self,
        paths: tuple[Path, ...],
        limit_bytes: int,
        interval_s: float = 0.1,
        max_entries: int = 100_000,
        what: str = "output_path",
    ) -> None:
        self.what = what
        self.paths = paths
        self.limit_bytes = limit_bytes
        self.interval_s = interval_s
        self.max_entries = max_entries

    def watch(self, handle: ProcessHandle) -> Watch:
        return _OutputWatch(self.paths, self.limit_bytes, self.interval_s, self.max_entries, self.what)
