"""Read the end of a (possibly huge, possibly still growing) log file without reading all of it."""

from __future__ import annotations

from pathlib import Path


def read_end(path: Path, max_bytes: int) -> tuple[str, bool] | None:
    """The last ``max_bytes`` of ``path`` decoded leniently, and whether the file was longer; None if unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return None
    return data.decode("utf-8", errors="replace"), size > max_bytes
