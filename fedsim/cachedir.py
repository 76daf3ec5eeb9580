"""Where fedsim's cache lives: one rule for every layer (the cube parser unpacks additional files there, the
store keeps synthetic sites, the runtimes converted images and Python environments)."""

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


__all__ = ["cache_root"]
