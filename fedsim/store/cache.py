"""fedsim's cache directory (synthetic sites, converted SIF images): one rule for everyone who needs it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$FEDSIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/fedsim``, else ``~/.cache/fedsim``."""
    env = os.environ.get("FEDSIM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "fedsim"


PYENV_DIR = "pyenv"  # the cubes' Python environments (fedsim.runtimes.pyenv): code, never data


def pyenv_root() -> Path:
    """Where the local runtime keeps the cubes' virtual environments (one directory per requirements key)."""
    return cache_root() / PYENV_DIR
