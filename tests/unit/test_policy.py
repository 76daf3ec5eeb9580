"""The containment policy: one function decides how every job is held, from capabilities, for every command."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.bundled import BENCHMARK
from fedsim.cube import load_cube
from fedsim.runtimes import sandbox, select
from fedsim.runtimes.policy import (
    ALLOWED,
    BUNDLED,
    TRUSTED,
    ContainmentOptions,
    ContainmentPolicy,
    Unsandboxed,
    refuse_unsandboxed,
    refuse_unsandboxed_checks,
    resolve,
)
from fedsim.runtimes.sandbox import Probe

CUBES = BENCHMARK / "cubes"
THIRD_PARTY = Path(__file__).parents[1] / "fixtures" / "submissions" / "toy_valid"


def _host(monkeypatch: pytest.MonkeyPatch, *, docker: bool, bwrap: bool, singularity: bool = False) -> None:
    monkeypatch.setattr(select, "docker_available", lambda: docker)
    monkeypatch.setattr(select, "singularity_binary", lambda: "/usr/bin/singularity" if singularity else None)
    found = Probe(True, "", "/usr/bin/bwrap") if bwrap else Probe(False, "bwrap is not installed", fix="install it")
    monkeypatch.setattr(sandbox, "probe", lambda: found)


def test_a_submission_on_the_local_runtime_is_sandboxed_and_says_which_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    _host(monkeypatch, docker=False, bwrap=True)
    policy = resolve("auto", load_cube(THIRD_PARTY), untrusted=True)
    assert (policy.runtime, policy.instance, policy.containment) == ("local", "sandbox", "bwrap")
    assert policy.bwrap == "/usr/bin/bwrap" and policy.unsandboxed == "" and policy.untrusted
    policy.check()  # nothing refused
    trusted = resolve("auto", load_cube(THIRD_PARTY), untrusted=False)
    assert (trusted.instance, trusted.containment, trusted.unsandboxed) == ("local", "none", TRUSTED)


def test_without_a_sandbox_plain_runs_need_leave_or_fedsims_own_code(monkeypatch: pytest.MonkeyPatch) -> None:
    _host(monkeypatch, docker=False, bwrap=False)
    refused = resolve("auto", load_cube(THIRD_PARTY), untrusted=True)
    assert refused.refused_unsandboxed and "the cube has no docker section" not in refused.refusal
    with pytest.raises(Unsandboxed, match="install it, or pass --allow-unsandboxed"):
        refused.check()
    leave = resolve("auto", load_cube(THIRD_PARTY), untrusted=True, options=ContainmentOptions(allow_unsandboxed=True))
    assert (leave.containment, leave.unsandboxed) == ("none", ALLOWED)
    bundled = resolve("auto", load_cube(CUBES / "baseline"), untrusted=True)
    assert (bundled.containment, bundled.unsandboxed) == ("none", BUNDLED)
    note = refuse_unsandboxed([(load_cube(CUBES / "baseline"), bundled)])
    assert note is not None and "baseline" in note
    with pytest.raises(Unsandboxed):
        refuse_unsandboxed([(load_cube(THIRD_PARTY), refused)])
    # the benchmark may ask for its trusted cubes in the sandbox too: a job-level refusal, not a plain run
    assert resolve("local", load_cube(THIRD_PARTY), untrusted=False, sandbox_trusted=True).refused_unsandboxed


def test_fidelity_mode_comes_from_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    _host(monkeypatch, docker=True, bwrap=False)
    cube = load_cube(CUBES / "baseline")
    policy = resolve("singularity", cube, untrusted=True)  # no singularity binary: docker holds it as the sites do
    assert (policy.runtime, policy.containment, policy.singularity_fidelity, policy.runs_image) == (
        "docker", "docker", True, True,
    )  # fmt: skip
    assert not resolve("docker", cube, untrusted=True).singularity_fidelity
    assert not resolve("singularity", cube, untrusted=False).singularity_fidelity  # trusted cubes: as today


def test_check_submission_holds_containers_as_the_sites(monkeypatch: pytest.MonkeyPatch) -> None:
    """check-submission's ``auto`` and ``docker`` mean the sites' singularity (docker's fidelity mode here)."""
    _host(monkeypatch, docker=True, bwrap=True)
    as_sites = ContainmentOptions(as_sites=True)
    cube = load_cube(CUBES / "baseline")
    for requested in ("auto", "docker", "singularity"):
        policy = resolve(requested, cube, untrusted=True, options=as_sites)
        assert policy.runtime == "docker" and policy.singularity_fidelity
    assert resolve("local", cube, untrusted=True, options=as_sites).containment == "bwrap"
    assert "unknown runtime 'podman'" in resolve("podman", cube, untrusted=True, options=as_sites).refusal
    _host(monkeypatch, docker=False, bwrap=False)
    assert "no Docker engine answers" in resolve("docker", cube, untrusted=True, options=as_sites).refusal
    with pytest.raises(Unsandboxed, match="no Docker engine answers and bwrap is not installed"):
        refuse_unsandboxed_checks("auto", as_sites)
    refuse_unsandboxed_checks("auto", ContainmentOptions(allow_unsandboxed=True, as_sites=True))


def test_the_record_is_what_summary_json_gets() -> None:
    record = ContainmentPolicy(runtime="docker", instance="docker", containment="docker", unsandboxed="").record()
    assert record == {
        "runtime": "docker",
        "containment": "docker",
        "untrusted": False,
        "unsandboxed": "",
        "singularity_fidelity": False,
        "bwrap": None,
        "refusal": "",
    }
