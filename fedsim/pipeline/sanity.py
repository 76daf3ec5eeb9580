"""A failed data-prep check, as the site's operator would read it: each problem with the original case name.

The data-prep cube reports problems under the anonymised aliases (``FeTS22_Patient0002: label values [3] ...``);
the alias map that links them to the site's own case ids stays at the site (``sites/<site>/metadata/``, never
mounted into a model, never in ``results/``, ``summary.json`` or the report). The simulator plays every site, so
the console can show what the site's operator would see: ``case_007 (FeTS22_Patient0002): label values ...``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path

from fedsim.dataprep.prepare import ALIAS_MAP_NAME
from fedsim.jobs.job import JobKind, JobResult
from fedsim.store.rundir import RunDirectory
from fedsim.store.tail import read_end

__all__ = ["MAX_PROBLEMS", "read_alias_map", "sanity_problems"]

MAX_PROBLEMS = 20  # lines per site on the console; the log holds them all
_ALIAS = re.compile(r"\bFeTS22_Patient\d{4,}\b")
_SUMMARY = re.compile(r"^sanity_check: (\d+) problem")
_LOG_BYTES = 256 * 1024


def read_alias_map(metadata: Path) -> dict[str, str]:
    """alias → original case id from ``metadata/alias_map.csv``; empty when it is missing or unreadable."""
    try:
        with (metadata / ALIAS_MAP_NAME).open(newline="", encoding="utf-8") as fh:
            return {row["alias"]: row["original"] for row in csv.DictReader(fh) if row.get("alias")}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError):
        return {}


def _problem_lines(log: Path) -> tuple[list[str], int | None]:
    """The problem lines of a sanity_check log (what the cube printed before its ``N problem(s)`` line), and N."""
    end = read_end(log, _LOG_BYTES)
    if end is None:
        return [], None
    text, truncated = end
    lines = [ln.rstrip() for ln in text.splitlines()]
    if truncated and lines:
        lines = lines[1:]  # a partial first line
    count = None
    for i, line in enumerate(lines):
        match = _SUMMARY.match(line.strip())
        if match:
            count, lines = int(match.group(1)), lines[:i]
            break
    # the runtime's own "$ command" lines are not the cube's; without a summary line keep the alias lines only
    kept = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("$ ")]
    if count is None:
        kept = [ln for ln in kept if _ALIAS.search(ln)]
    return kept, count


def _unalias(line: str, aliases: dict[str, str]) -> str:
    return _ALIAS.sub(lambda m: f"{aliases[m.group(0)]} ({m.group(0)})" if m.group(0) in aliases else m.group(0), line)


def sanity_problems(run: RunDirectory, results: Iterable[JobResult]) -> dict[str, list[str]]:
    """site → its failed sanity check's problems with original case names (at most :data:`MAX_PROBLEMS` lines,
    then how many more the log holds). Sites whose sanity check did not fail are left out."""
    out: dict[str, list[str]] = {}
    for res in results:
        if res.kind != JobKind.SANITY_CHECK.value or res.status.finished_ok or res.status.value == "skipped":
            continue
        site = run.site(res.site)
        log = site.log(res.name)
        if not log.is_file() and res.log:
            log = Path(res.log)
        lines, count = _problem_lines(log)
        if not lines:
            continue
        aliases = read_alias_map(site.metadata)
        shown = [_unalias(ln, aliases) for ln in lines[:MAX_PROBLEMS]]
        more = max(len(lines), count or 0) - len(shown)
        if more > 0:
            shown.append(f"... and {more} more in {log}")
        out[res.site] = shown
    return out
