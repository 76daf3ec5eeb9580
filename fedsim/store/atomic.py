"""Durable file writes: temporary file in the same directory, fsync, rename, fsync the directory.

A reader (or a resumed run) sees either the old complete file or the new complete file, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import yaml


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    with open_atomic(path, mode) as fh:
        fh.write(data)


@contextlib.contextmanager
def open_atomic(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends without an error (and is removed if it raises):
    for writers that stream their rows instead of holding the whole file in memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp's 0600 would hide the file from a container running as another user
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_yaml_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=True) + "\n")
