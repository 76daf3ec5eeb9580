"""Turn the tail of a failed job's log into one line naming the likely cause and the fix.

Containers that work under ``docker run`` fail at hospitals for a handful of classic reasons (DESIGN §3):
relying on WORKDIR, writing outside ``output_path``, files readable only by root. Recognising them here
lets the job record say *why* and *what to change*, not just "exit code 1".
"""

from __future__ import annotations

import re

from fedsim.cube import Isolation

# (pattern in the log, explanation). First match wins; patterns are checked against the last lines.
_RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"No space left on device|Disk quota exceeded"),
        "wrote outside output_path or too much data: only output_path is writable (and /tmp holds 64 MiB); "
        "write results to output_path only",
    ),
    (
        re.compile(r"Read-only file system"),
        "wrote outside output_path: the image and inputs are read-only under singularity; "
        "write results to output_path only",
    ),
]


def explain_failure(log_tail: str, isolation: Isolation) -> str | None:
    """A one-line cause and fix for a failed job, or None when nothing known matches."""
    for pattern, explanation in _RULES:
        if pattern.search(log_tail):
            return explanation
    return None
