"""The ``fedsim`` command group: its commands in the order people use them, and the edge where fedsim's errors
become one line and an exit code. Each command lives in its own module of this package and registers itself;
heavy imports stay inside the command functions, so ``fedsim --help`` stays fast."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from fedsim import __version__
from fedsim.cli import checks, rank, report, run, runs, score, serve, sites, stress
from fedsim.cli.output import EXIT_CODES, err, out
from fedsim.errors import FedsimError

# `fedsim --help` lists the commands in the order people use them (click would sort them: rank first)
COMMAND_ORDER = ("run", "sites", "check-submission", "dry-run", "report", "runs", "rank", "score", "stress", "serve")


class _UsageOrder(TyperGroup):
    """The top-level group: its commands in :data:`COMMAND_ORDER`, any other after them as registered."""

    def list_commands(self, ctx: Any) -> list[str]:  # typer's vendored click Context
        names = list(self.commands)
        return sorted(names, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else len(COMMAND_ORDER))


app = typer.Typer(
    cls=_UsageOrder,
    help="Simulate a FeTS-style federated evaluation of segmentation containers.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # subcommands inherit it
)


def _clean_help_types() -> None:
    """Plain metavars in every command's help: typer 0.2x prints a Python type beside each option (``<bool>``
    for flags, ``<list[Path]>`` for repeatable ones); show nothing for a flag and ``PATH``, ``TEXT``, ``N``,
    ``NUMBER`` (or the option's own metavar) for a value. Leaves any other typer as it is."""
    import re

    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:
        return
    names = {"path": "PATH", "str": "TEXT", "int": "N", "float": "NUMBER", "bool": "", "file": "FILE"}

    def clean(original: Any) -> Callable[[Any, Any], str | None]:
        def display(self: object, ctx: object) -> str | None:
            if getattr(self, "is_flag", False):
                return None
            shown = original(self, ctx)
            if not isinstance(shown, str):
                return None
            match = re.fullmatch(r"<(?:list\[)?([A-Za-z]+)(?: range)?\]?>(\.\.\.)?", shown)
            if match is None:
                return shown
            return names.get(match.group(1).lower(), match.group(1).upper()) + (match.group(2) or "")

        return display

    for cls in (TyperOption, TyperArgument):
        original = getattr(cls, "display_type_rich", None)
        if original is not None and not getattr(original, "_fedsim", False):
            patched = clean(original)
            patched._fedsim = True  # type: ignore[attr-defined]
            cls.display_type_rich = patched  # type: ignore[method-assign,assignment]  # a patch of typer's method


_clean_help_types()


_clean_help_types()


def _version(value: bool) -> None:
    if value:
        out.print(f"fedsim {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """fedsim: will your container survive the federation?"""


for _command in (run, sites, checks, report, stress, runs, rank, serve, score):
    _command.register(app)


def _usage_error_types() -> tuple[type[Exception], ...]:
    """click's usage errors: recent typer versions vendor their own click, so accept both families."""

    vendored = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    return tuple({click.ClickException, vendored})


_USAGE_ERRORS = _usage_error_types()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: turn fedsim's own errors into one line and a non-zero exit."""
    from fedsim.serve.during import expand_serve_flag

    argv = expand_serve_flag(sys.argv[1:] if argv is None else argv)  # a bare --serve: the default port
    try:
        rc = app(args=argv, standalone_mode=False)  # click returns an Exit's code instead of raising it
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except FedsimError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except _USAGE_ERRORS as exc:
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]

