"""fedsim's cache directory (synthetic sites, converted SIF images): one rule for everyone who needs it."""

from __future__ import annotations

from pathlib import Path

from fedsim.cachedir import cache_root

PYENV_DIR = "pyenv"  # the cubes' Python environments (fedsim.runtimes.pyenv): code, never data


def pyenv_root() -> Path:
    """Where the local runtime keeps the cubes' virtual environments (one directory per requirements key)."""
    return cache_root() / PYENV_DIR


__all__ = ["PYENV_DIR", "cache_root", "pyenv_root"]
