"""The web view served during a command: ``--serve [PORT]`` of ``run benchmark``, ``dry-run`` and ``stress``.

(``fedsim serve``, the command, is :mod:`fedsim.cli.serve`.) ``--serve`` starts the same server in a background
thread of the command's own process (so it sees the command's in-memory progress too) and prints its URL; the
server only reads the run directory and never holds a lock a run needs. When the command's work is done,
:func:`keep_serving` decides how long the view stays: until Ctrl-C for someone at a terminal, a short grace
period in scripts and CI.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fedsim.serve.server import DEFAULT_PORT, Served, start_background

if TYPE_CHECKING:
    from fedsim.serve.live import LiveBoard

__all__ = [
    "DEFAULT_PORT",
    "GRACE_S",
    "Served",
    "expand_serve_flag",
    "keep_serving",
    "serve_during",
    "start_background",
]

GRACE_S = 3.0  # off a terminal, after the work: time for open pages to receive the final state
Say = Callable[[str], object]


def expand_serve_flag(argv: list[str]) -> list[str]:
    """``--serve`` without a port means the default port: typer has no option with an optional value, so a bare
    ``--serve`` (last, or before another option or an argument that is not a port) gets ``DEFAULT_PORT``."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        out.append(arg)
        if arg == "--serve" and not (i + 1 < len(argv) and argv[i + 1].isdigit()):
            out.append(str(DEFAULT_PORT))
    return out


def serve_during(
    port: int | None, runs_dir: Path, say: Say, boards: dict[str, LiveBoard] | None = None
) -> Served | None:
    """``--serve PORT`` of a command: start the server (None without the option) and say where it is."""
    if port is None:
        return None
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    served = start_background(runs_dir, port, boards=boards)
    say(f"live view: {served.url}")
    return served


def _interactive() -> bool:
    """Someone at a terminal started the command (not a script, a pipe or CI)."""
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def keep_serving(served: Served | None, say: Say, *, interrupted: bool = False) -> None:
    """The end of a command with ``--serve``: at a terminal, the view stays up with the final state until
    Ctrl-C (the person watching reads it at leisure); in scripts and CI it stays ``GRACE_S`` for open pages to
    get the final state, then stops. An interrupted command stops it at once. The command's exit code is not
    touched: the caller exits as it would without ``--serve``."""
    if served is None:
        return
    try:
        if interrupted or not served.thread.is_alive():
            return
        if not _interactive():
            served.thread.join(GRACE_S)  # returns early if the server stops by itself
            return
        say(f"done; the live view stays at {served.url} until Ctrl-C")
        try:
            while served.thread.is_alive():
                served.thread.join(0.5)
        except KeyboardInterrupt:
            pass
    finally:
        served.stop()
