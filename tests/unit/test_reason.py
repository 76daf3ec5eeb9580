"""The line a failed job's record shows as its reason: the telling one, not the log's last line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.store.reason import reason_from_log, strip_ansi

TYPER_BOX = """\
Usage: mlcube.py infer [OPTIONS]
Try 'mlcube.py infer --help' for help.
╭─ Error ──────────────────────────────────────────────────────────╮
│ Missing option '--parameters_file'.                              │
╰──────────────────────────────────────────────────────────────────╯
"""

# rich with colours forced on, and a message that wraps over two lines of the box
TYPER_BOX_ANSI = (
    "\x1b[33mUsage: \x1b[0m\x1b[1mmlcube.py infer [OPTIONS]\x1b[0m\n"
    "\x1b[2mTry \x1b[0m\x1b[2;34m'mlcube.py infer \x1b[0m\x1b[1;2;34m-\x1b[0m\x1b[1;2;34m-help\x1b[0m\x1b[2;34m'\x1b[0m"
    "\x1b[2m for help.\x1b[0m\n"
    "\x1b[31m╭─\x1b[0m\x1b[31m Error \x1b[0m\x1b[31m─────────────────────────────────────────╮\x1b[0m\n"
    "\x1b[31m│\x1b[0m Invalid value for '\x1b[1;36m-\x1b[0m\x1b[1;36m-data_path\x1b[0m': "
    "Directory     \x1b[31m│\x1b[0m\n"
    "\x1b[31m│\x1b[0m '/mlcube_io0/missing' does not exist.                \x1b[31m│\x1b[0m\n"
    "\x1b[31m╰───────────────────────────────────────────────────────╯\x1b[0m\n"
)

# rich's ASCII fallback (a terminal without UTF-8)
TYPER_BOX_ASCII = """\
Usage: mlcube.py infer [OPTIONS]
+- Error -----------------------------------------+
| No such option: --parameter_file Did you mean   |
| --parameters_file?                              |
+-------------------------------------------------+
"""

CLICK_PLAIN = """\
Usage: mlcube.py infer [OPTIONS]
Try 'mlcube.py infer --help' for help.

Error: Missing option '--parameters_file'.
"""

ARGPARSE = """\
usage: mlcube.py [-h] --data_path DATA_PATH --output_path OUTPUT_PATH task
mlcube.py: error: the following arguments are required: --output_path
"""

TRACEBACK = """\
loading model from /mlcube_project/weights
Traceback (most recent call last):
  File "/mlcube_project/mlcube.py", line 40, in <module>
    main()
  File "/mlcube_project/mlcube.py", line 33, in main
    model = load(args.weights)
            ^^^^^^^^^^^^^^^^^^
ValueError: checkpoint has 3 classes, expected 4
/usr/lib/python3/dist-packages/torch/cuda/__init__.py:88: UserWarning: CUDA initialization: no NVIDIA driver
  return torch._C._cuda_getDeviceCount() > 0
"""

CHAINED = """\
Traceback (most recent call last):
  File "/app/mlcube.py", line 5, in load
    return json.load(fh)
json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/mlcube.py", line 9, in <module>
    cfg = load("cfg.json")
  File "/app/mlcube.py", line 7, in load
    raise RuntimeError("bad config cfg.json") from exc
RuntimeError: bad config cfg.json
"""

RICH_TRACEBACK = """\
╭───────────────────── Traceback (most recent call last) ─────────────────────╮
│ /mlcube_project/mlcube.py:30 in infer                                        │
│                                                                              │
│ ❱ 30 │   seg = model(image)                                                  │
╰──────────────────────────────────────────────────────────────────────────────╯
torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB
"""

ANSI_LOGGING = (
    "\x1b[32mINFO\x1b[0m: found 0 cases\n"
    "\x1b[1;31mERROR\x1b[0m: \x1b[33mno cases found in /mlcube_io0\x1b[0m\n"
    "\x1b[2mshutting down\x1b[0m\n"
)

CASES = {
    "typer rich box": (TYPER_BOX, "Error: Missing option '--parameters_file'."),
    "typer rich box, ANSI colours, wrapped": (
        TYPER_BOX_ANSI,
        "Error: Invalid value for '--data_path': Directory '/mlcube_io0/missing' does not exist.",
    ),
    "rich box, ASCII": (TYPER_BOX_ASCII, "Error: No such option: --parameter_file Did you mean --parameters_file?"),
    "click plain": (CLICK_PLAIN, "Error: Missing option '--parameters_file'."),
    "argparse": (ARGPARSE, "mlcube.py: error: the following arguments are required: --output_path"),
    "traceback, warnings after it": (TRACEBACK, "ValueError: checkpoint has 3 classes, expected 4"),
    "chained traceback: the last exception": (CHAINED, "RuntimeError: bad config cfg.json"),
    "rich traceback box, then the exception": (
        RICH_TRACEBACK,
        "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
    ),
    "bare exception name": (
        'Traceback (most recent call last):\n  File "x.py", line 1\n    assert ok\nAssertionError\n',
        "AssertionError",
    ),
    "ANSI-coloured logging": (ANSI_LOGGING, "ERROR: no cases found in /mlcube_io0"),
    "sh: command not found": (
        "starting\n/bin/sh: 1: nnUNet_predict: not found\n",
        "/bin/sh: 1: nnUNet_predict: not found",
    ),
    "bash: relative script": (
        "bash: line 1: ./run.sh: No such file or directory\nexit\n",
        "bash: line 1: ./run.sh: No such file or directory",
    ),
    "coreutils": ("cat: model.txt: No such file or directory\n\n", "cat: model.txt: No such file or directory"),
    "dynamic loader": (
        "python3: error while loading shared libraries: libpython3.10.so.1.0: cannot open shared object file: "
        "No such file or directory\n",
        "python3: error while loading shared libraries: libpython3.10.so.1.0: cannot open shared object file: "
        "No such file or directory",
    ),
    "exec format": ("exec /entrypoint.sh: exec format error\n", "exec /entrypoint.sh: exec format error"),
    "killed after progress": ("case 1/5\r  0%|          | 0/10\r 40%|####      | 4/10\nKilled\n", "Killed"),
    "segfault": ("predicting\nSegmentation fault (core dumped)\n", "Segmentation fault (core dumped)"),
    "a later shell error beats an earlier traceback": (
        CHAINED + "cleanup\nsh: 1: /opt/post.sh: Permission denied\n",
        "sh: 1: /opt/post.sh: Permission denied",
    ),
    "a traceback beats a later generic ERROR line": (
        TRACEBACK + "ERROR: inference failed\n",
        "ValueError: checkpoint has 3 classes, expected 4",
    ),
    "plain last line": ("loading model\nno GPU found, giving up\n\n   \n", "no GPU found, giving up"),
    "box cut off at its top": (
        "│ '/mlcube_io0/missing' does not exist.     │\n╰───────────────────────────────────────────╯\n",
        "'/mlcube_io0/missing' does not exist.",
    ),
    "only rules": ("────────────\n============\n------\n╰──────╯\n", ""),
    "only traceback scaffolding": ('Traceback (most recent call last):\n  File "x.py", line 3, in <module>\n', ""),
    "empty": ("", ""),
    "blank": ("\n \n\t\n", ""),
}


@pytest.mark.parametrize("name", list(CASES))
def test_reason_from_log(name: str) -> None:
    log, expected = CASES[name]
    assert reason_from_log(log) == expected


def test_reason_is_one_capped_line() -> None:
    log = "Traceback (most recent call last):\nValueError: " + "x" * 1000 + "\nbye\n"
    reason = reason_from_log(log, limit=120)
    assert len(reason) == 120 and reason.startswith("ValueError: xxx") and reason.endswith("…")
    assert "\n" not in reason_from_log("a\tb   c\n")


def test_strip_ansi_keeps_text_and_drops_escapes() -> None:
    assert (
        strip_ansi("\x1b[1;31mred\x1b[0m \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \x1b[2K\x07done") == "red link done"
    )


def test_execute_job_reports_the_telling_line(tmp_path: Path) -> None:
    """The wiring: a failed job's record carries the box's text, not its bottom rule."""
    from fedsim.cube import load_cube
    from fedsim.jobs.execute import execute_job
    from fedsim.jobs.job import Job, JobKind, JobLimits, JobStatus
    from fedsim.runtimes.select import RuntimePool
    from tests.conftest import write_yaml

    root = tmp_path / "cube"
    (root / "project").mkdir(parents=True)
    (root / "project" / "mlcube.py").write_text(f"import sys\nsys.stderr.write({TYPER_BOX!r})\nsys.exit(2)\n")
    write_yaml(
        root / "mlcube.yaml",
        {
            "name": "t",
            "docker": {"image": "x", "build_context": "project"},
            "tasks": {"infer": {"parameters": {"inputs": {"data_path": "data/"}, "outputs": {"output_path": "out/"}}}},
        },
    )
    (tmp_path / "data").mkdir()
    job = Job(
        site="s",
        name="infer.t",
        kind=JobKind.INFER,
        cube=load_cube(root),
        task="infer",
        paths=(("data_path", tmp_path / "data"), ("output_path", tmp_path / "out")),
        runtime="local",
        limits=JobLimits(timeout_s=60),
        log_path=tmp_path / "logs" / "infer.t.log",
        workdir=tmp_path / "work",
        model="t",
    )
    result = execute_job(job, RuntimePool())
    assert result.status is JobStatus.FAILED, result.reason
    assert result.reason == "exited with code 2: Error: Missing option '--parameters_file'."
