"""A failure reason keeps the whole exception message: typer's rich traceback wraps it after its box, and
the path a FileNotFoundError names lands on the next line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedsim.store.reason import reason_from_log

APP = """
import typer
app = typer.Typer()
@app.command()
def infer(data_path: str = typer.Option("x"), parameters_file: str = typer.Option({path!r})):
    open(parameters_file).read()
@app.command()
def other():
    pass
app()
"""


def _typer_log(tmp_path: Path, path: str, columns: str = "80") -> str:
    script = tmp_path / "mlcube.py"
    script.write_text(APP.format(path=path))
    done = subprocess.run(
        [sys.executable, str(script), "infer"], capture_output=True, text=True, timeout=60, check=False,
        env={"COLUMNS": columns, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 1
    return done.stdout + done.stderr


@pytest.mark.parametrize(
    "path",
    [
        "/mlcube_project/parameters.yaml",
        "/mlcube_project/a/rather/long/path/to/some/deeply/nested/checkpoint/folder/parameters.yaml",
        "/" + "x" * 150 + "/weights.pt",  # longer than the box: rich folds it inside the word
    ],
)
def test_the_path_after_a_rich_traceback_box_is_kept(tmp_path: Path, path: str) -> None:
    log = _typer_log(tmp_path, path)
    assert "╰" in log  # a real rich box, and the message wrapped off the exception's line
    assert not any("FileNotFoundError" in line and path in line for line in log.splitlines())
    assert reason_from_log(log) == f"FileNotFoundError: [Errno 2] No such file or directory: '{path}'"


def test_lines_after_the_message_are_not_glued_on(tmp_path: Path) -> None:
    log = _typer_log(tmp_path, "/p.yaml") + "fedsim: cleanup done\n"
    assert reason_from_log(log) == "FileNotFoundError: [Errno 2] No such file or directory: '/p.yaml'"


def test_a_plain_traceback_is_unchanged() -> None:
    log = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nKeyError: \'a\'\nbye\n'
    assert reason_from_log(log) == "KeyError: 'a'"
