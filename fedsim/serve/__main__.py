"""``python -m fedsim.serve``: the server process of ``fedsim serve``, lean on purpose.

``fedsim serve`` checks its options and then replaces its own process with this one: the ``fedsim`` command
line imports every subcommand's dependencies (scipy, numpy, the pydantic specs: about 100 MB), and a server
that organisers leave running for hours should hold only what its pages read. The token travels in the
environment (``FEDSIM_SERVE_TOKEN``), not on the command line where ``ps`` shows it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fedsim.errors import FedsimError
from fedsim.serve.server import DEFAULT_PORT, run_foreground

TOKEN_ENV = "FEDSIM_SERVE_TOKEN"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fedsim serve", description="a live web view of a runs directory")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    token = os.environ.pop(TOKEN_ENV, None) or None
    try:
        run_foreground(args.runs_dir, args.host, args.port, token, lambda line: print(line, flush=True))
    except FedsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
