"""Bounded YAML loading and bounded text for error messages, shared by every loader of user or cube files.

Import-light on purpose (stdlib, PyYAML and :mod:`fedsim.errors` only): ``fedsim.dataprep`` and ``fedsim.ranking``
import it inside minimal Debian images with pydantic 1.x.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml

from fedsim.errors import SpecError

__all__ = [
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "BoundedSafeLoader",
    "InvalidYaml",
    "ShortRepr",
    "one_line",
    "safe_load_file",
    "safe_load_text",
    "short_repr",
]

# Bounds on what a configuration file may make the parser do (found by tests/unit/test_fuzz_loaders.py).
# Real benchmark, site and mlcube.yaml files are a few KiB, a few levels deep and use no or few aliases.
MAX_YAML_BYTES = 1 << 20  # 1 MiB
MAX_YAML_DEPTH = 64  # nesting of mappings/sequences; deeper made PyYAML's recursive composer raise RecursionError
MAX_YAML_NODES = 200_000  # values after expanding aliases; "billion laughs" (&a [*a, *a] ...) stops here
# A data file (metrics, results) may be large: no size cap, and its aliases may expand to MAX_YAML_NODES plus
# this many values per character, more than an alias-free text of the same length can hold (``[?, ?]``: 1.5).
_DATA_NODES_PER_CHAR = 4


class ShortRepr(reprlib.Repr):
    """``repr`` for error messages: bounded in length and depth, so an alias bomb or a 1 MiB string cannot
    make one explode."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 80
        self.maxlevel = 3

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # > 4300 digits: int -> str raises (hex literals such as 0xfff... build such ints)
            return f"<{x.bit_length()}-bit integer>"


short_repr = ShortRepr().repr


def one_line(text: object, limit: int | None = 500) -> str:
    """Collapse every line break (\\n, \\r, \\x85, \\u2028, ...) of text put in an error; bound its length
    unless ``limit`` is None."""
    try:
        plain = str(text)
    except ValueError:  # an integer of more than 4300 digits (a 0xfff... key) has no str()
        plain = short_repr(text)
    line = " ".join(plain.split())
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."


class InvalidYaml(SpecError):
    """The text is not YAML a loader accepts; ``problem`` (one line), ``where`` (``line 3, column 5`` or None)
    and ``value`` (a value the resolver accepted but cannot be built) let a caller phrase it its own way."""

    def __init__(self, problem: str, *, file: str, where: str | None = None, value: bool = False) -> None:
        self.problem = problem
        self.where = where
        self.value = value
        message = f"invalid YAML value: {problem}" if value else f"invalid YAML{self.at}: {problem}"
        super().__init__(message, file=file)

    @property
    def at(self) -> str:
        """`` at line 3, column 5``, or empty when the position is unknown."""
        return f" at {self.where}" if self.where else ""


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects documents nested too deeply or that expand into too many values.

    PyYAML shares the object behind an alias, so loading a billion-laughs document is cheap, but anything that
    walks the result (validation of free-form sections, error messages, dumping the run's config) would expand
    it. Recursive aliases (``&a [*a]``) are rejected for the same reason.
    """

    _depth = 0
    max_nodes = MAX_YAML_NODES

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # unannotated in types-PyYAML
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _check_expanded_size(node, self.max_nodes)
        return node


def _check_expanded_size(root: yaml.Node, limit: int) -> None:
    """Count the values ``root`` stands for once aliases are expanded (iteratively; no recursion)."""
    sizes: dict[int, int] = {}
    path: set[int] = set()  # nodes on the current walk: meeting one again means a recursive alias
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else node.value
            if isinstance(node, yaml.SequenceNode)
            else []
        )
        if done:
            path.discard(id(node))
            sizes[id(node)] = size = 1 + sum(sizes[id(c)] for c in children)
            if size > limit:
                raise yaml.composer.ComposerError(
                    None, None, f"aliases expand to more than {limit} values", node.start_mark
                )
            continue
        if id(node) in sizes:
            continue
        if id(node) in path:
            raise yaml.composer.ComposerError(None, None, "an alias refers to a node that contains it", node.start_mark)
        path.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _check_size(size: int, source: str) -> None:
    if size > MAX_YAML_BYTES:
        raise SpecError(
            f"file is {size} bytes; a configuration file must be at most {MAX_YAML_BYTES} bytes", file=source
        )


def safe_load_text(
    text: str,
    *,
    source: str,
    loader: type[BoundedSafeLoader] = BoundedSafeLoader,
    data_file: bool = False,
) -> Any:
    """Parse YAML text read from ``source`` (named in errors) with bounded size, depth and alias expansion.

    A configuration file must be at most :data:`MAX_YAML_BYTES` and expand to at most :data:`MAX_YAML_NODES`
    values; a ``data_file`` (metrics, results) has no size cap and its aliases may expand only to about what an
    alias-free text of its length could hold. Invalid YAML raises :class:`InvalidYaml`, too large a file
    :class:`~fedsim.errors.SpecError`; both on one line.
    """
    if not data_file:
        _check_size(len(text.encode("utf-8", "surrogatepass")), source)
    try:
        parser = loader(text)  # the reader rejects control characters here already
        parser.max_nodes = MAX_YAML_NODES + _DATA_NODES_PER_CHAR * len(text) if data_file else MAX_YAML_NODES
        try:
            return parser.get_single_data()
        finally:
            parser.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise InvalidYaml(one_line(exc.problem), file=source, where=where) from exc
    except yaml.YAMLError as exc:  # e.g. a ReaderError: a control character
        raise InvalidYaml(one_line(exc), file=source) from exc
    except (ValueError, OverflowError, KeyError, IndexError, AttributeError, TypeError) as exc:
        # SafeLoader's constructors raise these for values the resolver or an explicit tag let through: a date
        # such as 2024-13-45, ``!!int abc``, an integer of more than 4300 digits, an empty ``!!bool`` (KeyError),
        # ``!!int`` (IndexError) or ``!!timestamp`` (AttributeError).
        detail = one_line(exc) if str(exc) else type(exc).__name__
        raise InvalidYaml(f"invalid value: {detail}", file=source, value=True) from exc
    except RecursionError as exc:  # a deep structure below MAX_YAML_DEPTH still recursing too far (belt and braces)
        raise InvalidYaml("nested too deeply", file=source) from exc


def safe_load_file(path: Path | str, *, data_file: bool = False) -> Any:
    """:func:`safe_load_text` of a UTF-8 file; a missing, unreadable or (configuration) too large file is a
    :class:`~fedsim.errors.SpecError` too, checked before the file is read."""
    path = Path(path)
    source = str(path)
    try:
        if not path.is_file():
            raise SpecError("file not found", file=source)
        size = path.stat().st_size
    except (OSError, ValueError) as exc:  # e.g. a name too long, an embedded NUL
        raise SpecError(f"cannot read the file ({one_line(exc)})", file=source) from exc
    if not data_file:
        _check_size(size, source)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidYaml(one_line(exc), file=source) from exc
    except OSError as exc:
        raise SpecError(f"cannot read the file ({one_line(exc)})", file=source) from exc
    return safe_load_text(text, source=source, data_file=data_file)
