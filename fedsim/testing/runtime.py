"""A runtime that starts nothing: scripted jobs behind the real ``Runtime``/``ProcessHandle`` interface.

Tests of job execution and scheduling use it to get exact, fast outcomes (an exit code, a duration, a log,
files written into the outputs) without processes or containers, the way httpx ships ``MockTransport``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fedsim.cube import Invocation
from fedsim.runtimes.base import Capabilities, ProcessHandle, Runtime


@dataclass
class Script:
    """What a fake task does: run ``duration_s``, print ``log``, write ``files`` (name -> bytes) into every
    output directory, then exit with ``exit_code``."""

    duration_s: float = 0.0
    exit_code: int = 0
    log: str = ""
    files: dict[str, bytes] = field(default_factory=dict)


class FakeHandle(ProcessHandle):
    """A task that "runs" on a timer; ``terminate`` ends it at once with exit status -15."""

    def __init__(self, script: Script, inv: Invocation, log_path: Path) -> None:
        self.started_at = time.monotonic()
        self.script = script
        self.terminated = False
        self._exit: int | None = None
        self._done = threading.Event()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(script.log)
        self._timer = threading.Timer(script.duration_s, self._finish, args=(inv,))
        self._timer.daemon = True
        self._timer.start()

    def _finish(self, inv: Invocation) -> None:
        for p in inv.parameters:
            if p.io == "output" and p.type == "directory":
                for name, data in self.script.files.items():
                    (p.host_path / name).write_bytes(data)
        self._exit = self.script.exit_code
        self._done.set()

    def host_pids(self) -> set[int]:
        return set()

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self._exit

    def terminate(self, grace_s: float = 2.0) -> None:
        if not self._done.is_set():
            self._timer.cancel()
            self.terminated = True
            self._exit = -15
            self._done.set()


class FakeRuntime(Runtime):
    """Runs every task by a :class:`Script` chosen by ``script_for(inv)``; records each invocation."""

    name = "fake"
    capabilities = Capabilities()

    def __init__(self, script_for: Callable[[Invocation], Script] | Script | None = None) -> None:
        self._script_for = script_for if callable(script_for) else (lambda _inv: script_for or Script())
        self.launched: list[Invocation] = []
        self.handles: list[FakeHandle] = []

    def argv(self, inv: Invocation) -> list[str]:
        return ["fake", inv.task, *inv.host_args()]

    def launch(self, inv: Invocation, log_path: Path, workdir: Path) -> ProcessHandle:
        self.launched.append(inv)
        handle = FakeHandle(self._script_for(inv), inv, log_path)
        self.handles.append(handle)
        return handle
