"""The local runtime with real subprocesses: argv, live logs, whole-tree kill, deadline guard."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import psutil

from fedsim.cube import bind, load_cube
from fedsim.guard import DeadlineGuard, RamGuard, supervise
from fedsim.runtimes import LocalRuntime
from tests.conftest import write_yaml


def _script_cube(tmp_path: Path, code: str, **local: object) -> Path:
    root = tmp_path / "cube"
    (root / "project").mkdir(parents=True)
    (root / "project" / "mlcube.py").write_text(code)
    data = {
        "name": "t",
        "docker": {"image": "x", "build_context": "project"},
        "tasks": {"infer": {"parameters": {"inputs": {"data_path": "data/"}, "outputs": {"output_path": "out/"}}}},
    }
    if local:
        data["local"] = local
    write_yaml(root / "mlcube.yaml", data)
    return root


def test_argv_default_and_explicit_entrypoint(tmp_path: Path) -> None:
    root = _script_cube(tmp_path, "")
    inv = bind(load_cube(root), "infer", {"data_path": tmp_path / "d", "output_path": tmp_path / "o"})
    rt = LocalRuntime(python="/usr/bin/python3")
    assert rt.argv(inv) == [
        "/usr/bin/python3",
        str(root / "project" / "mlcube.py"),
        "infer",
        f"--data_path={tmp_path / 'd'}",
        f"--output_path={tmp_path / 'o'}",
    ]
    root2 = _script_cube(tmp_path / "x", "", entrypoint="python3 -m mypkg.cli --verbose")
    inv2 = bind(load_cube(root2), "infer", {"data_path": tmp_path / "d", "output_path": tmp_path / "o"})
    assert rt.argv(inv2)[:5] == ["/usr/bin/python3", "-m", "mypkg.cli", "--verbose", "infer"]


def test_logs_stream_while_running(tmp_path: Path) -> None:
    code = "import time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')\n"
    inv = bind(load_cube(_script_cube(tmp_path, code)), "infer")
    log = tmp_path / "job.log"
    handle = LocalRuntime().launch(inv, log, tmp_path / "work")
    deadline = time.monotonic() + 10
    while "first" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "first" in log.read_text() and handle.wait(0) is None  # visible before the job ended
    assert handle.wait(10) == 0
    command, *output = log.read_text().splitlines()  # the command first, as docker, singularity and bwrap log it
    assert command == "$ " + shlex.join(LocalRuntime().argv(inv)) and output == ["first", "second"]


def test_deadline_kills_a_chatty_job_and_its_escaped_child(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(1)'],\n"
        "                     start_new_session=True)\n"
        "print('child', c.pid, flush=True)\n"
        "while True:\n    print('tick', flush=True)\n    time.sleep(0.2)\n"
    )
    inv = bind(load_cube(_script_cube(tmp_path, code)), "infer")
    log = tmp_path / "job.log"
    handle = LocalRuntime().launch(inv, log, tmp_path / "work")
    while "child" not in log.read_text():
        time.sleep(0.05)
    child = int(next(ln for ln in log.read_text().splitlines() if ln.startswith("child ")).split()[1])
    assert psutil.pid_exists(child)
    outcome = supervise(handle, [DeadlineGuard(1.5)])
    assert outcome.violation is not None and outcome.violation.status == "timeout"
    assert 1.5 <= outcome.duration_s < 2.5 + 2.0  # deadline + at most the SIGTERM grace
    time.sleep(0.2)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_sigterm_ignoring_job_is_killed(tmp_path: Path) -> None:
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    inv = bind(load_cube(_script_cube(tmp_path, code)), "infer")
    handle = LocalRuntime().launch(inv, tmp_path / "l.log", tmp_path / "w")
    start = time.monotonic()
    handle.terminate(grace_s=0.5)
    assert handle.wait(1) is not None
    assert time.monotonic() - start < 3


def test_ram_guard_kills_a_memory_hog(tmp_path: Path) -> None:
    code = "import time\nx = bytearray(400 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(30)\n"
    inv = bind(load_cube(_script_cube(tmp_path, code)), "infer")
    handle = LocalRuntime().launch(inv, tmp_path / "l.log", tmp_path / "w")
    outcome = supervise(handle, [DeadlineGuard(20), RamGuard(200 * 1024 * 1024)])
    assert outcome.violation is not None and outcome.violation.status == "ram_exceeded"
    assert outcome.usage.peak_rss_bytes and outcome.usage.peak_rss_bytes > 200 * 1024 * 1024
    assert outcome.duration_s < 15


def test_job_runs_in_its_workdir_with_host_paths(tmp_path: Path) -> None:
    code = "import os, sys\nprint(os.getcwd())\nprint(sys.argv[1:])\n"
    inv = bind(
        load_cube(_script_cube(tmp_path, code)),
        "infer",
        {"data_path": tmp_path / "d", "output_path": tmp_path / "o"},
    )
    handle = LocalRuntime().launch(inv, tmp_path / "l.log", tmp_path / "w")
    assert handle.wait(10) == 0
    text = (tmp_path / "l.log").read_text()
    assert os.path.realpath(tmp_path / "w") in text and f"--data_path={tmp_path / 'd'}" in text
    assert sys.executable
