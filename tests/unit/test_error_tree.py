"""The error tree drawn in ``fedsim/errors.py``'s docstring is a promise: it names every exception class fedsim
defines, each under its direct base class, and nothing that does not exist."""

from __future__ import annotations

import builtins
import importlib
import inspect
import pkgutil
import re

import pytest

import fedsim
import fedsim.errors

# "    │   ├── Name      (module) words": the name's column gives its depth, four columns a level
_LINE = re.compile(r"^(?P<lead>[ │├└─]*)(?P<name>\w+)(?:\s+\((?P<module>[\w.]+)\))?(?:\s|$)")
_DRAWN = re.compile(r"^ {4}[ │├└─]*\w")


def drawn_tree(doc: str) -> dict[tuple[str, str], str | None]:
    """(module, class) → the name of its parent in the drawing (None for a root), from every indented block."""
    tree: dict[tuple[str, str], str | None] = {}
    stack: list[str] = []
    for line in doc.splitlines():
        if not _DRAWN.match(line):
            stack = []
            continue
        m = _LINE.match(line)
        assert m is not None, line
        depth = (len(m["lead"]) - 4) // 4
        assert len(m["lead"]) % 4 == 0 and depth <= len(stack), f"misdrawn: {line!r}"
        stack[depth:] = [m["name"]]
        module = "fedsim." + m["module"] if m["module"] else "fedsim.errors"
        builtin = not m["module"] and hasattr(builtins, m["name"])  # Exception, ValueError: the roots fedsim's extend
        key = ("builtins", m["name"]) if builtin else (module, m["name"])
        tree[key] = stack[depth - 1] if depth else None
    return tree


def defined_exceptions() -> dict[tuple[str, str], type[BaseException]]:
    """Every exception class defined in a module of fedsim (each module imported)."""
    found: dict[tuple[str, str], type[BaseException]] = {}
    for info in pkgutil.walk_packages(fedsim.__path__, "fedsim."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[(obj.__module__, obj.__qualname__)] = obj
    return found


def test_every_exception_class_is_in_the_tree_under_its_base() -> None:
    assert fedsim.errors.__doc__ is not None
    tree = drawn_tree(fedsim.errors.__doc__)
    classes = defined_exceptions()
    assert len(classes) >= 19  # the walk found the modules (a broken walk must not pass as "all drawn")
    drawn = {k for k in tree if k[0] != "builtins"}
    assert sorted(set(classes) - drawn) == [], "exception classes missing from fedsim/errors.py's tree"
    assert sorted(drawn - set(classes)) == [], "classes in fedsim/errors.py's tree that fedsim does not define"
    for key, parent in tree.items():
        cls = getattr(builtins, key[1]) if key[0] == "builtins" else classes[key]
        if parent is None:
            continue
        bases = [b.__name__ for b in cls.__bases__]
        assert bases == [parent], f"{key[0]}.{key[1]} derives from {bases}, drawn under {parent}"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            "x\n\n    A\n    ├── B   (m.n) words\n    │   └── C  more\n    └── D\n\ny\n",
            {
                ("fedsim.errors", "A"): None,
                ("fedsim.m.n", "B"): "A",
                ("fedsim.errors", "C"): "B",
                ("fedsim.errors", "D"): "A",
            },
        ),
        ("    Exception\n    └── E  (a) w\n", {("builtins", "Exception"): None, ("fedsim.a", "E"): "Exception"}),
    ],
)
def test_the_drawing_is_read_as_drawn(doc: str, expected: dict[tuple[str, str], str | None]) -> None:
    assert drawn_tree(doc) == expected
