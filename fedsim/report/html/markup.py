"""The HTML pieces every section is made of: sections, tables, numbers, sizes, figures and the invalid-output flag.

Cells are HTML already escaped by the caller; a cell built by :func:`num` or :func:`size` (it starts with
:data:`NUM`) is right-aligned.
"""

from __future__ import annotations

import base64
from html import escape

__all__ = ["NUM", "SECTION_END", "flag", "img", "num", "section", "section_start", "size", "table"]

NUM = "\x00num"
"""The marker of a right-aligned (numeric) table cell."""


def section(anchor: str, title: str, body: str) -> str:
    return section_start(anchor, title) + body + SECTION_END


def section_start(anchor: str, title: str) -> str:
    """The opening of :func:`section`, for a section written in parts (its figures one by one)."""
    return f'<section id="{anchor}">\n<h2>{escape(title)}</h2>\n'


SECTION_END = "\n</section>"


def img(png: bytes, alt: str, caption: str = "") -> str:
    encoded = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{encoded}">{cap}</figure>'


def table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    """``rows`` hold already-escaped HTML cells; a cell starting with :data:`NUM` is right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f'<td class="num">{c[4:]}</td>' if c.startswith(NUM) else f"<td>{c}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def num(value: float | None, fmt: str = "{:.3f}") -> str:
    return NUM + ("–" if value is None else escape(fmt.format(value)))


def size(value: int | None) -> str:
    """Bytes in the largest binary unit that fits (``1.5 GiB``), right-aligned."""
    if value is None:
        return NUM + "–"
    for unit, step in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= step:
            return f"{NUM}{value / step:.1f} {unit}"
    return f"{NUM}{value} B"


def flag(bad: int, total: int, title: str = "") -> str:
    """The marker shown next to a flagged model's scores and status."""
    tip = f' title="{escape(title)}"' if title else ""
    return f'<span class="flag"{tip}>⚠ invalid outputs: {bad}/{total} cases</span>'
