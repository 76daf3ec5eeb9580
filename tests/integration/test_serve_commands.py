"""``--serve`` on ``dry-run`` and ``stress``, as real ``fedsim`` processes on the local runtime: an open page's
stream gets the command's progress while it runs, the dry run's verdict table (with each problem's fix) and
the stress sets' states once done; afterwards the view stays a few seconds off a terminal and until Ctrl-C on
one, and the command's exit code is its own.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx2 as httpx
import pytest
from markupsafe import escape

from fedsim.serve.during import GRACE_S
from tests.conftest import CUBES, FIXTURES

pytestmark = [pytest.mark.e2e, pytest.mark.sandbox]
SUBMISSIONS = FIXTURES / "submissions"
URL = re.compile(r"live view: (http://127\.0\.0\.1:\d+/)")
DRY_RUN = ["--runtime", "local", "--cases", "1", "--timeout-per-case-s", "15", "--ram-gb", "1"]


class Output:
    """A process's output, line by line, read in a thread (so waiting for a line has a timeout)."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._stream = stream
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """After the process ended: the reader has seen the end of its output."""
        self._thread.join(10)
        self._stream.close()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float) -> re.Match[str]:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if (match := regex.search(line)) is not None:
                return match
        raise AssertionError(f"no {regex.pattern!r} in:\n" + "".join(self.lines))

    def rest(self, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return "".join(self.lines)


Started = tuple[subprocess.Popen[str], Output]


@pytest.fixture
def fedsim() -> Iterator[Callable[[list[str]], Started]]:
    """Start ``fedsim ARGS`` off a terminal (stdin /dev/null, output piped); killed at the end if still running."""
    started: list[Started] = []

    def start(args: list[str]) -> Started:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedsim.cli", *args],
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        started.append((proc, Output(proc.stdout)))
        return started[-1]

    yield start
    for proc, output in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        output.close()


FINISHED = '<span class="state ok">finished</span>'


def _follow(url: str, found: dict[str, str], timeout: float = 120) -> None:
    """Read a live board's event stream until the board says finished (kept in ``found``) or the stream ends."""
    try:
        with httpx.Client(timeout=timeout) as http, http.stream("GET", url) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    board = json.loads(line[6:])["fragments"]["board"]
                    found.setdefault("first", board)
                    if FINISHED in board:
                        found["board"] = board
                        return
    except httpx.HTTPError:
        return  # the server stopped before: the assertion on ``found`` says so


def _submissions(tmp: Path) -> Path:
    listing = tmp / "subs.yaml"
    listing.write_text("".join(f"- {SUBMISSIONS / name}\n" for name in ("toy_valid", "crashes")))
    return listing


def test_dry_run_serve_shows_progress_then_verdicts(tmp_path: Path, fedsim: Callable[[list[str]], Started]) -> None:
    out = tmp_path / "dr"
    proc, output = fedsim(["dry-run", str(_submissions(tmp_path)), "--out", str(out), *DRY_RUN, "--serve", "0"])
    base = output.wait_for(URL, 60).group(1)
    # a page opened while the checks run: its stream delivers the board until it says finished
    found: dict[str, str] = {}
    follower = threading.Thread(target=_follow, args=(base + "live/dr/events", found))
    follower.start()
    with httpx.Client(base_url=base, timeout=10) as http:
        runs = http.get("/").text
        assert 'href="/live/dr"' in runs, "the runs page lists the live dry run"
        page = http.get("/live/dr").text
        assert "toy_valid" in page and "crashes" in page
        output.wait_for(r"wrote .*dry_run\.json", 120)
        ended = time.monotonic()
        follower.join(30)
        board = found.get("board", "")
        assert FINISHED not in found["first"], "the page opened while the checks ran"
        assert "PASS" in board and "FAIL" in board and 'href="/dry-runs/dr"' in board, board
        verdicts = http.get("/dry-runs/dr")
    assert verdicts.status_code == 200
    table = verdicts.text
    assert 'class="verdict PASS">PASS</span>' in table and 'class="verdict FAIL">FAIL</span>' in table
    assert "simulated crash: model weights could not be loaded" in table
    report = json.loads((out / "dry_run.json").read_text())
    fixes = [c["fix"] for s in report["submissions"] for c in s["checks"] if c["status"] == "failed"]
    assert fixes and all(str(escape(fix)) in table for fix in fixes), "each problem's fix is shown"
    # off a terminal: a short grace, then the command exits with its own exit code
    assert proc.wait(GRACE_S + 15) == 0, output.rest()
    assert time.monotonic() - ended < GRACE_S + 10
    with pytest.raises(httpx.ConnectError):
        httpx.get(base, timeout=2)


def test_stress_serve_shows_each_set(tmp_path: Path, fedsim: Callable[[list[str]], Started]) -> None:
    out = tmp_path / "st"
    args = ["stress", str(CUBES / "baseline"), "--shifts", "noise", "--levels", "0,1", "--runtime", "local"]
    args += ["--cases", "1", "--shape", "32,32,24", "--out", str(out), "--serve", "0"]
    proc, output = fedsim(args)
    base = output.wait_for(URL, 60).group(1)
    found: dict[str, str] = {}
    follower = threading.Thread(target=_follow, args=(base + "live/st/events", found))
    follower.start()
    output.wait_for(r"stress test done", 180)
    follower.join(30)
    board = found.get("board", "")
    assert "stress st" in board and "baseline on " in board, board
    assert board.count('class="verdict succeeded"') >= 2, board  # level 0 and noise level 1
    assert proc.wait(GRACE_S + 15) == 0, output.rest()


def test_at_a_terminal_the_view_stays_until_ctrl_c(tmp_path: Path) -> None:
    """Under a pseudo-terminal the command says so, keeps serving past the grace, and Ctrl-C ends it with the
    command's own exit code (0: the dry run did its work)."""
    listing = tmp_path / "one.yaml"
    listing.write_text(f"- {SUBMISSIONS / 'toy_valid'}\n")
    master, slave = pty.openpty()
    args = ["dry-run", str(listing), "--out", str(tmp_path / "dr"), *DRY_RUN, "--serve", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedsim.cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "COLUMNS": "200", "TERM": "dumb"},
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 120
        while b"until Ctrl-C" not in seen and time.monotonic() < deadline and proc.poll() is None:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
        text = seen.decode(errors="replace")
        assert "until Ctrl-C" in text, text
        base = URL.search(text)
        assert base is not None, text
        time.sleep(GRACE_S + 1)
        assert proc.poll() is None, "still serving past the grace period"
        assert httpx.get(base.group(1) + "dry-runs/dr", timeout=5).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
