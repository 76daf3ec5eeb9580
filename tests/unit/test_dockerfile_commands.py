"""The one ENTRYPOINT/CMD splitter (``fedsim.cube.dockerfile.Command``): exec and shell forms as docker reads them,
the words of a plain shell form, and no other module of fedsim reading either form itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import fedsim
from fedsim.cube.dockerfile import Command, NotPlainWords, parse_dockerfile
from fedsim.submission.static import parse_dockerfile as static_parse


def _entrypoint(line: str) -> Command:
    ep = parse_dockerfile(f"FROM python:3.11\n{line}\n").entrypoint
    assert ep is not None
    return ep


@pytest.mark.parametrize(
    ("line", "shell", "argv", "plain"),
    [
        ('ENTRYPOINT ["python3", "/app/m.py"]', False, ["python3", "/app/m.py"], ["python3", "/app/m.py"]),
        ("ENTRYPOINT python3 /app/m.py", True, ["python3", "/app/m.py"], ["python3", "/app/m.py"]),
        (
            "ENTRYPOINT exec python3 '/app/my m.py'",
            True,
            ["exec", "python3", "/app/my m.py"],
            ["python3", "/app/my m.py"],
        ),
        ('ENTRYPOINT ["python3", 3]', True, ["[python3,", "3]"], None),  # not a list of strings: shell form
        ("ENTRYPOINT python3 $APP/m.py", True, ["python3", "$APP/m.py"], None),
        ("ENTRYPOINT python3 /a.py && echo done", True, ["python3", "/a.py", "&&", "echo", "done"], None),
        ("ENTRYPOINT python3 'open", True, ["python3", "'open"], None),  # best effort: split on blanks
    ],
)
def test_exec_and_shell_forms(line: str, shell: bool, argv: list[str], plain: list[str] | None) -> None:
    ep = _entrypoint(line)
    assert (ep.shell, ep.argv()) == (shell, argv)
    if plain is None:
        with pytest.raises(NotPlainWords, match=r"^is (a shell command with shell syntax|not a command line) \("):
            ep.plain_words()
    else:
        assert ep.plain_words() == plain


def test_the_static_checks_see_what_the_reader_splits() -> None:
    text = 'FROM python:3.11\nARG APP=/app\nENTRYPOINT python3 ${APP}/m.py\nCMD ["--fast"]\n'
    stage = parse_dockerfile(text)
    seen = static_parse(text)
    assert stage.entrypoint is not None and stage.cmd is not None
    assert (seen.entrypoint, seen.entrypoint_shell) == (stage.entrypoint.argv(), True)
    assert (seen.cmd, seen.cmd_shell) == (["--fast"], False)


def test_no_other_module_reads_entrypoint_or_cmd_lines() -> None:
    root = Path(fedsim.__file__).parent
    reads = re.compile(r"""==\s*["'](ENTRYPOINT|CMD)["']|dockerfile_instructions\(|shlex\.split\([^)]*\.text\b""")
    found = {str(p.relative_to(root)) for p in root.rglob("*.py") if reads.search(p.read_text(encoding="utf-8"))}
    assert found == {"cube/dockerfile.py"}
