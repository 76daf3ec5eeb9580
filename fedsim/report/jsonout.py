"""Machine-readable output of the commands (``--json``): the JSON document alone on stdout, everything a person
reads (progress, tables, warnings) on stderr, so ``fedsim run benchmark --json | jq .`` just works.

A command decorated with :func:`json_on_stdout` runs with ``sys.stdout`` pointed at stderr when its JSON option
asks for stdout; :func:`emit_json` writes to the real stdout. Rich consoles made without an explicit file follow
``sys.stdout`` at print time, so the commands' own printing needs no change.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

__all__ = ["STDOUT", "emit_json", "json_on_stdout", "json_safe", "to_stdout"]

F = TypeVar("F", bound=Callable[..., Any])
STDOUT = "-"  # ``--json -``: the document goes to stdout instead of a file
_real_stdout: list[TextIO] = []


def to_stdout(value: object) -> bool:
    """Whether a ``--json`` value means stdout: ``True`` (a flag) or ``-`` (a FILE option)."""
    return value is True or (isinstance(value, str | Path) and str(value) == STDOUT)


def json_on_stdout(option: str) -> Callable[[F], F]:
    """Decorate a command whose keyword ``option`` (a flag, or a FILE where ``-`` is stdout) asks for JSON on
    stdout: while it runs, whatever it prints goes to stderr. Keeps the command's signature for typer."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            if not to_stdout(kwargs.get(option)):
                return fn(*args, **kwargs)
            _real_stdout.append(sys.stdout)
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    return fn(*args, **kwargs)
            finally:
                _real_stdout.pop()

        return run  # type: ignore[return-value]

    return wrap


def json_safe(value: Any) -> Any:
    """JSON has no inf or nan: they become null (a strict parser such as jq rejects ``NaN``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(data: Any) -> None:
    """Write ``data`` as one JSON document to the real stdout (also inside :func:`json_on_stdout`)."""
    stream = _real_stdout[-1] if _real_stdout else sys.stdout
    stream.write(json.dumps(json_safe(data), indent=2, ensure_ascii=False, default=str, allow_nan=False) + "\n")
    stream.flush()
