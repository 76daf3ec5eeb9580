"""Where the command line writes: the two consoles and the exit codes every command's help shows."""

from __future__ import annotations

import sys

from rich.console import Console

EXIT_CODES = (
    "Exit codes: 0 the command did its work (a run completed, even if some models failed: that is a result; a "
    "check passed) · 1 an error fedsim could not get past, a run that produced no result at all (every site's "
    "data prep failed), or a check that FAILed · 2 a configuration file, option or run id is wrong (one line "
    "naming the file, the field and the fix) · 130 interrupted (Ctrl-C; finished work stays on disk)."
)


def consoles() -> tuple[Console, Console]:
    """Fresh stdout and stderr consoles; off a terminal (CI logs, pipes) 150 columns, since rich would assume 80
    and squeeze the tables."""
    out = Console(width=None if sys.stdout.isatty() else 150)
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    return out, err


out, err = consoles()  # the top-level commands' (the checks make theirs per call)

__all__ = ["EXIT_CODES", "consoles", "err", "out"]
