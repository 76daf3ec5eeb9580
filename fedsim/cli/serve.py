"""``fedsim serve``: check the options, then replace this process with the lean ``python -m fedsim.serve`` (see
:mod:`fedsim.serve.__main__`), so the server is one small process with the terminal's PID."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from fedsim.serve.server import DEFAULT_PORT

__all__ = ["register"]


def serve_cmd(
    runs_dir: Annotated[Path, typer.Option("--runs-dir", metavar="DIR", help="the run directories to show")] = Path(
        "runs"
    ),
    host: Annotated[
        str, typer.Option("--host", help="address to bind; anything but loopback requires a token")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="port (0: any free one)")] = DEFAULT_PORT,
    token: Annotated[
        str | None,
        typer.Option("--token", help="require this token on every request (default off localhost: a generated one)"),
    ] = None,
) -> None:
    """A live web view of the runs, dry runs and checks in --runs-dir (read-only; Ctrl-C stops it)."""
    if not Path(runs_dir).is_dir():
        raise typer.BadParameter(f"{runs_dir} is not a directory", param_hint="--runs-dir")
    from fedsim.serve.__main__ import TOKEN_ENV

    argv = ["--runs-dir", str(runs_dir), "--host", host, "--port", str(port)]
    if _real_stdout():  # the usual case: become the lean server process (same PID, same terminal)
        if token is not None:
            os.environ[TOKEN_ENV] = token
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "fedsim.serve", *argv])
    from fedsim.serve.server import run_foreground  # in-process (click's CliRunner has no real stdout)

    run_foreground(runs_dir, host, port, token, lambda line: typer.echo(line))


def _real_stdout() -> bool:
    try:
        sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
