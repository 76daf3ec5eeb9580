"""The ``fedsim`` command line (:mod:`fedsim.cli.app` the group and its error edge, one module per command,
:mod:`fedsim.cli.options` the options several commands share). Errors of type :class:`FedsimError` become one
line and an exit code."""

from fedsim.cli.app import app, main
from fedsim.cli.output import EXIT_CODES
from fedsim.cli.run import DEFAULT_BENCHMARK

__all__ = ["DEFAULT_BENCHMARK", "EXIT_CODES", "app", "main"]
