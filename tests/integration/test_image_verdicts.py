"""Verdicts the federation would give: the image permission scan on the most common base (Debian with openssl
installed holds ``/usr/lib/ssl/private -> /etc/ssl/private``, root-only: a system path reached through a symlink,
which singularity never makes a model read — check-submission must PASS such an image), and a failure reason
that keeps the whole exception message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES


@pytest.mark.docker
@pytest.mark.slow
def test_an_image_with_openssl_passes(tmp_path: Path) -> None:
    cube = shutil.copytree(FIXTURES / "submissions" / "toy_valid", tmp_path / "with_openssl")
    dockerfile = cube / "project" / "Dockerfile"
    text = dockerfile.read_text()
    assert "python3-yaml" in text
    dockerfile.write_text(text.replace("python3-yaml", "python3-yaml openssl ca-certificates", 1))
    mlcube = cube / "mlcube.yaml"
    mlcube.write_text(mlcube.read_text().replace("fedsim-test/sub-toy-valid:0.1", "fedsim-test/sub-openssl:0.1"))
    done = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "check-submission", str(cube), "--runtime", "docker", "--json", "-",
         "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=900, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["image_permissions"]["status"] == "passed", checks["image_permissions"]
    assert report["verdict"] == "PASS", report
    image = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "readlink", "fedsim-test/sub-openssl:0.1", "/usr/lib/ssl/private"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert image.stdout.strip() == "/etc/ssl/private"  # the link the scan used to fail on is there


TYPER_CUBE = '''
import typer
app = typer.Typer()
@app.command()
def infer(data_path: str = typer.Option(..., "--data_path"), output_path: str = typer.Option(..., "--output_path"),
          parameters_file: str = typer.Option("{path}", "--parameters_file")):
    open(parameters_file).read()
@app.command()
def other():
    pass
app()
'''


@pytest.mark.e2e
def test_a_failure_reason_keeps_the_path_rich_wrapped(tmp_path: Path) -> None:
    """typer's rich traceback wraps ``No such file or directory:`` and puts the path on the next line: the
    check's reason keeps it (the same reason a run and a dry run record: execute_job's)."""
    path = "/nonexistent/fedsim-check/a/rather/long/path/to/the/parameters.yaml"
    cube = shutil.copytree(FIXTURES / "submissions" / "toy_valid", tmp_path / "typer_cube")
    (cube / "project" / "mlcube.py").write_text(TYPER_CUBE.replace("{path}", path))
    done = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "check-submission", str(cube), "--runtime", "local", "--json", "-",
         "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    run = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "run")
    assert f"FileNotFoundError: [Errno 2] No such file or directory: '{path}'" in run["cause"], run
