"""No module of fedsim imports another module's private name: a leading underscore means "mine", and a seam that
another room needs is a public name in a module of its own (e.g. ``fedsim.runtimes.handover``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fedsim

ROOT = Path(fedsim.__file__).parent


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(source: str, module: str) -> list[str]:
    """The private names ``module`` (dotted) imports from other fedsim modules; a private module
    (``fedsim.ranking._rank``) counts as private to its own package."""
    package = module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith("fedsim"):
            continue
        parts = (node.module or "").split(".")
        for i, part in enumerate(parts):
            owner = ".".join(parts[:i])
            if _private(part) and package != owner and not package.startswith(owner + "."):
                found.append(f"{module}:{node.lineno}: from {node.module}")
        found += [f"{module}:{node.lineno}: {a.name} from {node.module}" for a in node.names if _private(a.name)]
    return found


def test_no_private_name_crosses_a_module() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        offenders += private_imports(path.read_text(encoding="utf-8"), module)
    assert offenders == [], "private names imported across modules:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    ("source", "module", "hits"),
    [
        ("from fedsim.runtimes.docker import _hand_over\n", "fedsim.runtimes.local", 1),
        ("from fedsim.runtimes.docker import hand_over as _h\n", "fedsim.runtimes.local", 0),
        ("from fedsim.ranking._rank import rank\n", "fedsim.ranking.__init__", 0),  # its own package
        ("from fedsim.ranking._rank import rank\n", "fedsim.ranking.extra", 0),
        ("from fedsim.ranking._rank import rank\n", "fedsim.report.html", 1),
        ("from ._rank import _helper\n", "fedsim.ranking", 0),  # relative imports stay inside a package
        ("from __future__ import annotations\n", "fedsim.cli", 0),
    ],
)
def test_the_check_itself(source: str, module: str, hits: int) -> None:
    assert len(private_imports(source, module)) == hits
