"""What a run that succeeded tried and was refused, from its log: writes outside ``output_path`` and network access.

At a site (and in the check: docker's singularity-fidelity mode, or the bubblewrap sandbox) the image and the
inputs are read-only and there is no network, so such attempts fail with an error. A cube that fails on them
fails the ``run`` check; one that catches the error and goes on works at the federation too — these checks
then warn, because the cube relies on something the sites do not give (a cache it cannot write, weights it
cannot download) and may behave differently there than where it was developed.

Evidence is the log only: a refused write is a read-only or permission-denied write error (parsed as
:mod:`fedsim.jobs.diagnose` does), a refused connection one of the resolver's or the kernel's network errors.
Unsandboxed nothing is refused: writes outside ``output_path`` then show up in the ``containment`` check and
network access is not observable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fedsim.submission.report import Check, passed, skipped, warning

MAX_LOG_BYTES = 1 << 20  # read at most this much from each end of the log
_SHOWN = 3
_LINE = 200

_NETWORK = re.compile(
    r"Network is unreachable|Temporary failure in name resolution|Name or service not known|"
    r"No address associated with hostname|nodename nor servname provided|No route to host|"
    r"Failed to establish a new connection|getaddrinfo failed|Could not resolve host|unable to resolve host|"
    r"\[Errno (?:-2|-3|-5|101|113)\]",
    re.I,
)
_UNWRITABLE_DIR = re.compile(r"is not a writable directory")  # matplotlib, and others, falling back to /tmp


@dataclass
class Attempts:
    """Log lines that show a refused write or a refused network access (one each, de-duplicated, in order)."""

    writes: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)


def _add(found: list[str], line: str) -> None:
    line = " ".join(line.split())
    line = line if len(line) <= _LINE else line[: _LINE - 1] + "…"
    if line not in found:
        found.append(line)


def scan_lines(lines: list[str]) -> Attempts:
    from fedsim.jobs.diagnose import EACCES, EROFS, WRITE, file_errors

    found = Attempts()
    lines = [ln.strip() for ln in lines if ln.strip()]  # as diagnose reads them: traceback frames unindented
    for i, line in enumerate(lines):
        if line.startswith("$ "):  # the runtime's own command line
            continue
        if _NETWORK.search(line):
            _add(found.network, line)
            continue
        refused = any(e.errno == EROFS or (e.errno == EACCES and e.op == WRITE) for e in file_errors(lines, i))
        if refused or _UNWRITABLE_DIR.search(line):
            _add(found.writes, line)
    return found


def read_log(path: Path, max_bytes: int = MAX_LOG_BYTES) -> list[str]:
    """The log's lines, ANSI-free; of a huge log its first and last ``max_bytes``."""
    from fedsim.store.reason import clean_lines

    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(0)
            if size <= 2 * max_bytes:
                data = fh.read()
            else:
                data = fh.read(max_bytes) + b"\n"
                fh.seek(size - max_bytes)
                data += fh.read()
    except OSError:
        return []
    return clean_lines(data.decode("utf-8", "replace"))


def _short(items: list[str]) -> str:
    return " | ".join(items[:_SHOWN]) + (f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def attempt_checks(log: str | None, *, ran: bool, sandboxed: bool) -> list[Check]:
    """The ``write_attempts`` and ``network_attempts`` checks of a run (``ran``: it succeeded)."""
    if not ran:
        why = "the run failed (its cause is in the run check)"
        return [skipped("write_attempts", why), skipped("network_attempts", why)]
    if not sandboxed:
        return [
            skipped("write_attempts", "ran unsandboxed: writes are not refused (see the containment check)"),
            skipped("network_attempts", "ran unsandboxed: network access is not refused, so not observable"),
        ]
    found = scan_lines(read_log(Path(log))) if log else Attempts()
    checks: list[Check] = []
    if found.writes:
        checks.append(
            warning(
                "write_attempts",
                f"tried to write outside output_path and was refused (the run went on): {_short(found.writes)}",
                "write only to output_path (scratch data: /tmp); point caches (HOME, XDG_CACHE_HOME, MPLCONFIGDIR, "
                "TORCH_HOME) at /tmp or bake them into the image",
                found.writes,
            )
        )
    else:
        checks.append(passed("write_attempts", "no refused write in the log"))
    if found.network:
        checks.append(
            warning(
                "network_attempts",
                f"tried to reach the network, which sites do not have (the run went on): {_short(found.network)}",
                "bake weights and everything else into the image; never download at run time",
                found.network,
            )
        )
    else:
        checks.append(passed("network_attempts", "no refused network access in the log"))
    return checks
