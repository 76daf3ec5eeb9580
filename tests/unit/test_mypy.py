"""``mypy --strict`` on ``fedsim/`` (pyproject.toml ``[tool.mypy]``: strict, the pydantic plugin, the bundled
cubes left out) reports no error, checked by mypy itself on every test run, as the layer contract is."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # a cold run checks ~160 modules: about half a minute on one core


def test_mypy_strict_finds_no_error(tmp_path: Path) -> None:
    # never skipped: a missing mypy must fail, not silently turn the check off
    assert importlib.util.find_spec("mypy") is not None, "mypy is part of the test extras: pip install -e '.[test]'"
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if re.match(r"^fedsim/\S+:\d+: error:", line)]
    assert proc.returncode == 0 and not errors, "\n".join(errors[:60]) or out[-3000:]
    # the configuration really checked the package (a wrong `files` would "succeed" on nothing)
    checked = re.search(r"no issues found in (\d+) source files", out)
    assert checked is not None and int(checked.group(1)) > 100, out[-2000:]
