"""The package's layers (pyproject.toml ``[tool.importlinter]``): no cycle between packages and no import from
a lower layer into a higher one, checked by import-linter itself on every test run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_layers_are_kept() -> None:
    exe = shutil.which("lint-imports")
    assert exe is not None, "import-linter is part of the test extras: pip install -e '.[test]'"
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout
