"""Pick the one line of a failed job's log that says why it failed.

The last line of a log is often not it: typer/click close with a box-drawing rule, Python prints warnings or
cleanup output after a traceback, and coloured output carries ANSI escape codes. ``reason_from_log`` reads a
log tail and returns, in order of preference:

1. the last *decisive* line: a Python exception line (the last one of a chained traceback; after typer's rich
   traceback box, with the lines rich wrapped its message onto, so a path is never cut off), the text inside a
   rich/typer/click ``Error`` box, a click ``Error: ...`` or argparse ``prog: error: ...`` line, a shell or
   coreutils error (``sh: 1: x: not found``, ``cat: x: No such file or directory``, a missing shared library),
   or a fatal signal as the shell reports it (``Killed``, ``Segmentation fault (core dumped)``);
2. otherwise the last line that logs an error (``ERROR``, ``FATAL``, ``error: ...``);
3. otherwise the last line with text in it (blank lines, rules and traceback scaffolding left out).

The result is one line, ANSI-free, whitespace-collapsed and at most ``limit`` characters long.
"""

from __future__ import annotations

import re

DEFAULT_LIMIT = 300

# CSI (colours, cursor moves), OSC (titles, hyperlinks) and the remaining two-character escapes
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

_HORIZONTAL = "─━═╌╍┄┅┈┉-"
_VERTICAL = "│┃║|"
_CORNERS_TOP = "╭┌┏╔+"
_CORNERS_TOP_RIGHT = "╮┐┓╗+"
_CORNERS_BOTTOM = "╰└┗╚+"
_CORNERS_BOTTOM_RIGHT = "╯┘┛╝+"
_BOX_CHARS = set(_HORIZONTAL + _VERTICAL + _CORNERS_TOP + _CORNERS_TOP_RIGHT + _CORNERS_BOTTOM + _CORNERS_BOTTOM_RIGHT)
_BOX_CHARS |= set("├┤┬┴┼╞╡╪╟╢╫┝┥┿")

_H = re.escape(_HORIZONTAL)
_BOX_TOP = re.compile(
    rf"^[{re.escape(_CORNERS_TOP)}][{_H}]*\s*(?P<title>.*?)\s*[{_H}]*[{re.escape(_CORNERS_TOP_RIGHT)}]$"
)
_BOX_BOTTOM = re.compile(rf"^[{re.escape(_CORNERS_BOTTOM)}][{_H}]+[{re.escape(_CORNERS_BOTTOM_RIGHT)}]$")
_BOX_SIDE = re.compile(rf"^[{re.escape(_VERTICAL)}](?P<text>.*?)[{re.escape(_VERTICAL)}]?$")

# a line made only of rule and box characters, punctuation used as rules, and spaces
_RULE = re.compile(r"^[\s" + re.escape("".join(sorted(_BOX_CHARS))) + r"=_*#~.:^<>]*$")

_PY_EXCEPTION = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Fault|Failure|Iteration)(?::(?:\s.*)?)?$"
)
_ARGPARSE = re.compile(r"^\S+: error: \S.*$")
_SHELL = re.compile(
    r"^\S+: (?:\d+: |line \d+: )?.*: (?:(?:command )?not found|No such file(?: or directory)?|Permission denied|"
    r"Read-only file system|No space left on device|Disk quota exceeded|Exec format error|"
    r"cannot execute binary file.*|Is a directory|Not a directory)$"
)
_EXEC = re.compile(
    r"^(?:\[FATAL tini.*\] )?exec\b.*(?:no such file or directory|exec format error|permission denied)$", re.I
)
_LOADER = re.compile(r"error while loading shared libraries|^\S+\.so[\w.]*: cannot open shared object file")
_SIGNAL = re.compile(
    r"^(?:.*: )?(?:Killed|Terminated|Aborted|Segmentation fault|Bus error|Illegal instruction|"
    r"Floating point exception|Trace/breakpoint trap)(?: \(core dumped\))?!?$"
)
_CLICK = re.compile(r"^Error: \S")
_LOGGED_ERROR = re.compile(r"\b(?:ERROR|FATAL|CRITICAL)\b|^\[?\s*(?i:error|fatal)\s*[:\]!]")

# lines that frame a Python traceback but say nothing on their own
_SCAFFOLD = re.compile(
    r"^(?:Traceback \(most recent call last\):|File \".*\", line \d+.*|"
    r"During handling of the above exception, another exception occurred:|"
    r"The above exception was the direct cause of the following exception:|"
    r"\.\.\. \d+ lines? hidden.*|\[Previous line repeated \d+ more times?\])$"
)


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences and other control characters (tabs and newlines kept)."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def clean_lines(text: str) -> list[str]:
    """The non-blank lines of ``text``, ANSI-free and stripped; carriage returns split lines as a terminal does."""
    return [ln.strip() for ln in strip_ansi(text.replace("\r\n", "\n")).splitlines() if ln.strip()]


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: max(0, limit - 1)].rstrip() + "…"
    return text


def _boxes(lines: list[str]) -> tuple[dict[int, tuple[str, str | None]], set[int]]:
    """Boxes drawn by rich/typer/click: {index of the bottom rule: (text inside, title or None)}, and all box lines.

    A box whose top was cut off by the start of the tail has no title.
    """
    found: dict[int, tuple[str, str | None]] = {}
    used: set[int] = set()
    for end, line in enumerate(lines):
        if not _BOX_BOTTOM.match(line):
            continue
        texts: list[str] = []
        title: str | None = None
        i = end - 1
        while i >= 0 and i not in used:
            top = _BOX_TOP.match(lines[i])
            if top:
                title = top.group("title").strip(_HORIZONTAL + " ")
                break
            side = _BOX_SIDE.match(lines[i])
            if not side:
                break
            texts.append(side.group("text").strip())
            i -= 1
        start = i if title is not None else i + 1
        used.update(range(start, end + 1))
        found[end] = (" ".join(t for t in reversed(texts) if t), title)
    return found, used


def _is_filler(line: str) -> bool:
    return bool(_RULE.match(line) or _SCAFFOLD.match(line))


def _decisive(line: str) -> bool:
    return bool(
        _PY_EXCEPTION.match(line)
        or _CLICK.match(line)
        or _ARGPARSE.match(line)
        or _SHELL.match(line)
        or _EXEC.match(line)
        or _LOADER.search(line)
        or _SIGNAL.match(line)
    )


def _unwrapped(lines: list[str], i: int, boxes: dict[int, tuple[str, str | None]], boxed: set[int]) -> str:
    """The exception line ``lines[i]`` with the lines rich wrapped it onto: typer's pretty traceback box is
    followed by the exception, wrapped at the box's width (``No such file or directory:`` / ``'/the/path'``).
    A next line continues it when its first word would not have fitted on the line before (a line as wide as
    the box was folded inside a word: joined without a space)."""
    if i - 1 not in boxes:
        return lines[i]
    width = len(lines[i - 1])
    text, prev = lines[i], lines[i]
    for j in range(i + 1, len(lines)):
        line = lines[j]
        if j in boxed or _is_filler(line) or _decisive(line):
            break
        if len(prev) >= width:
            text += line
        elif len(prev) + 1 + len(line.split()[0]) > width:
            text += " " + line
        else:
            break
        prev = line
    return text


def reason_from_lines(lines: list[str], limit: int = DEFAULT_LIMIT) -> str:
    """The most informative line of ``lines`` (already cleaned, see :func:`clean_lines`); "" when there is none."""
    boxes, boxed = _boxes(lines)
    best: tuple[int, int, str] | None = None  # (tier, index, text): lower tier wins, then the later line
    for i, line in enumerate(lines):
        if i in boxes:
            text, title = boxes[i]
            if not text:
                continue
            if title is not None and "error" in title.lower():
                candidate = (0, i, f"{title}: {text}")
            elif not title:  # top cut off by the start of the tail, or an untitled panel
                candidate = (2, i, text)
            else:
                continue  # a rich traceback or panel: the exception line after it says more
        elif i in boxed or _is_filler(line):
            continue
        elif _PY_EXCEPTION.match(line):
            candidate = (0, i, _unwrapped(lines, i, boxes, boxed))
        elif _decisive(line):
            candidate = (0, i, line)
        elif _LOGGED_ERROR.search(line):
            candidate = (1, i, line)
        else:
            candidate = (2, i, line)
        if best is None or candidate[0] < best[0] or (candidate[0] == best[0] and candidate[1] > best[1]):
            best = candidate
    return _one_line(best[2], limit) if best else ""


def reason_from_log(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """The most informative line of a log tail, one line of at most ``limit`` characters; "" when there is none."""
    return reason_from_lines(clean_lines(text), limit)
