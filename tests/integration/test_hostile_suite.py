"""The hostile-submission suite (issues 7, 16): every hostile cube in ONE benchmark run next to the baseline,
once on docker and once on the local runtime's bubblewrap sandbox (the behaviours that need no image).

One site, two cases, a tight per-case timeout and a small per-case output limit. The hostile models run first
and the baseline last, so the baseline's results also prove that nothing a hostile model did reached the next
job. What stops each behaviour (docker | sandbox):

- network egress (cubes/hostile_network): ``network_mode=none`` | ``--unshare-net`` → only ``lo``, no route
- write the input (cubes/hostile_write_input): read-only bind mount (EROFS) → succeeded, hashes equal
- write the image (hostile/write_image; docker only): read-only root fs (EROFS), /tmp a 1 GiB tmpfs (ENOSPC)
- read the labels (cubes/hostile_read_labels): labels never mounted | nothing of the run directory but the
  job's data and output is visible → succeeded, none found
- become root (cubes/hostile_root): non-root user, no capabilities, no-new-privileges → succeeded
- setuid-root binary (hostile/setuid_escalation; docker only): no-new-privileges ignores the setuid bit
- setuid copy in the output (hostile/setuid_copy): it cannot chown to root; fedsim strips the bits afterwards
- fork bomb (hostile/fork_bomb): ``pids_limit`` | ``RLIMIT_NPROC`` = ``max_pids`` (EAGAIN), then the deadline
  → timeout (not mistaken for a RAM hog)
- memory bomb (cubes/memory_hog): ``mem_limit == memswap_limit`` and the cgroup watch | PSS sampling → ram_exceeded
- disk fill of output_path (hostile/disk_fill): OutputSizeGuard, per-case output limit → output_exceeded
- silent hang (hostile/silent_hang), chatty hang (hostile/chatty_hang): wall-clock DeadlineGuard → timeout
- ignores SIGTERM (hostile/ignore_sigterm): DeadlineGuard kills with SIGKILL at once → timeout
- detached daemon (hostile/detach_child): PID namespace, it dies with the job's init → no survivor
- symlinked outputs (hostile/symlink_outputs): metrics reader's lstat + O_NOFOLLOW → penalty rows
- decompression bomb (hostile/decompression_bomb): bounded inflate + voxel budget → penalty rows

Every hostile model scores the penalty row on every case; the baseline's rows equal a baseline-only run.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shlex
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.conftest import CUBES, FIXTURES, containers_of_run, small_benchmark

pytestmark = [pytest.mark.slow]

HOSTILE_DIR = FIXTURES / "hostile"
REUSED = FIXTURES / "cubes"
TIMEOUT_PER_CASE_S = 5.0
CASES = 2
DEADLINE_S = CASES * TIMEOUT_PER_CASE_S
OUTPUT_MB_PER_CASE = 4
RAM_GB = 2
DAEMON_MARKER = "fedsim-hostile-detached"
SITE = "s0"
MAX_PIDS = 1024  # the benchmark's default limits.max_pids
RUNTIMES = ("docker", "sandbox")
MARKS = {"docker": pytest.mark.docker, "sandbox": pytest.mark.sandbox}
NEEDS_IMAGE = {"write_image", "setuid_escalation"}  # their attack lives in their own image

# Model order is run order at the site: the input-writer first, the baseline last.
HOSTILE: dict[str, Path] = {
    "write_input": REUSED / "hostile_write_input",
    "network": REUSED / "hostile_network",
    "read_labels": REUSED / "hostile_read_labels",
    "root": REUSED / "hostile_root",
    "memory_bomb": REUSED / "memory_hog",
    **{name: HOSTILE_DIR / name for name in (
        "write_image", "setuid_escalation", "setuid_copy", "fork_bomb", "disk_fill", "silent_hang",
        "chatty_hang", "ignore_sigterm", "detach_child", "symlink_outputs", "decompression_bomb",
    )},
}  # fmt: skip
MODELS = {**HOSTILE, "baseline": CUBES / "baseline"}


def hostile_on(runtime: str) -> dict[str, Path]:
    return {k: v for k, v in HOSTILE.items() if runtime == "docker" or k not in NEEDS_IMAGE}


def _not_applicable(runtimes: tuple[str, ...]) -> Any:
    def why(params: dict[str, Any]) -> str | None:
        runtime, model = params.get("hostile_run"), params.get("model")
        if runtime not in runtimes:
            return f"not applicable on {runtime}"
        if model is not None and model not in hostile_on(runtime):
            return f"{model} needs its own image: docker only"
        return None

    return why


def on(*runtimes: str) -> Any:
    """The test applies to the suite's run on these runtimes only; on the others it is skipped at collection
    (``tests/conftest.py`` reads ``not_applicable``), before the run is set up."""

    def mark(test: Any) -> Any:
        test.not_applicable = _not_applicable(runtimes)
        return test

    return mark


def each(models: dict[str, Any] | set[str]) -> Any:
    """The test runs for every model, except where the runtime cannot run it (skipped at collection)."""

    def mark(test: Any) -> Any:
        test.not_applicable = getattr(test, "not_applicable", _not_applicable(RUNTIMES))
        return pytest.mark.parametrize("model", sorted(models))(test)

    return mark


# ---------------------------------------------------------------- one run, observed from the host


@dataclass
class Observed:
    """What the host saw while the run went on."""

    launched: list[tuple[str, Any]] = field(default_factory=list)  # (job key, ContainerHandle | SandboxProcess)
    pids: dict[tuple[int, float], str] = field(default_factory=dict)  # (pid, create_time) -> job key
    daemons: set[tuple[int, float]] = field(default_factory=set)  # processes carrying DAEMON_MARKER
    tree_sizes: dict[str, list[int]] = field(default_factory=dict)  # job key -> sampled process counts
    inputs_before: dict[str, str] | None = None
    labels_before: dict[str, str] | None = None


@dataclass
class HostileRun:
    runtime: str  # docker | sandbox
    models: dict[str, Path]  # the hostile models of this run
    report: Any
    summary: dict[str, Any]
    jobs: dict[str, dict[str, Any]]  # job name -> summary record
    alone: Any  # the baseline-only run
    observed: Observed
    outside_before: dict[str, tuple[int, int]]
    outside_after: dict[str, tuple[int, int]]
    site_dir: Path
    wall_s: float
    alone_wall_s: float

    def log(self, model: str) -> str:
        return Path(self.jobs[f"infer.{model}"]["log"]).read_text(errors="replace")

    def attrs(self, model: str) -> dict[str, Any]:
        key = f"{SITE}/infer.{model}"
        return next(h.container.attrs for k, h in self.observed.launched if k == key)


def _digest(root: Path) -> dict[str, str]:
    """Path → sha256 of content plus mode, for every entry under root (links by their target)."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_symlink():
            body = os.readlink(p).encode()
        elif p.is_file():
            body = p.read_bytes()
        else:
            body = b""
        out[str(p.relative_to(root))] = f"{st.st_mode:o}:{hashlib.sha256(body).hexdigest()}"
    return out


def _tree(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Path → (size, mtime_ns) of everything under root except the ``skip`` subtree."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(dirpath, d) != skip]
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


def _sampler(observed: Observed, done: threading.Event) -> None:
    """Every 0.25 s: the host PIDs of every running job's tree, and any process carrying the daemon marker."""
    while not done.wait(0.25):
        for key, handle in list(observed.launched):
            pids = handle.host_pids()
            if pids:
                observed.tree_sizes.setdefault(key, []).append(len(pids))
            for pid in pids:
                try:
                    observed.pids.setdefault((pid, psutil.Process(pid).create_time()), key)
                except psutil.Error:
                    continue
        for proc in psutil.process_iter(["cmdline", "create_time"]):
            cmdline = proc.info["cmdline"] or []
            if DAEMON_MARKER in cmdline:
                observed.daemons.add((proc.pid, proc.info["create_time"]))


def _build_fixture_images() -> None:
    """(Re)build every fixture cube (layers are cached): ``build_strategy: auto`` would keep a stale image."""
    import docker

    from fedsim.cube import load_cube
    from fedsim.runtimes.images import ImageBuilder

    client = docker.from_env(timeout=600)
    try:
        builder = ImageBuilder(client)
        for path in HOSTILE.values():
            builder.build(load_cube(path), None)
    finally:
        client.close()


# One fixture parametrised once: a test-level parametrisation of it would give each test its own whole run.
@pytest.fixture(scope="module", params=[pytest.param(r, marks=MARKS[r], id=r) for r in RUNTIMES])
def hostile_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileRun]:
    from fedsim.jobs.job import JobKind
    from fedsim.pipeline.observer import Callbacks
    from fedsim.pipeline.run import RunOptions, run_benchmark

    runtime = request.param
    hostile = hostile_on(runtime)
    if runtime == "docker":
        from fedsim.runtimes.docker import DockerRuntime as Launcher

        fedsim_runtime = "docker"
    else:
        from fedsim.runtimes.local import SandboxedLocalRuntime as Launcher
        from fedsim.runtimes.sandbox import probe

        assert probe().ok, probe().reason
        fedsim_runtime = "local"
    tmp = tmp_path_factory.mktemp(f"hostile-{runtime}")
    bench = small_benchmark(
        tmp,
        models={**hostile, "baseline": CUBES / "baseline"},
        sites=1,
        cases=CASES,
        timeout_per_case_s=TIMEOUT_PER_CASE_S,
        runtime=fedsim_runtime,
    )
    doc = yaml.safe_load((bench / "benchmark.yaml").read_text())
    doc["limits"]["output_mb_per_case"] = OUTPUT_MB_PER_CASE
    (bench / "benchmark.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    site_doc = yaml.safe_load((bench / "sites" / f"{SITE}.yaml").read_text())
    site_doc["hardware"]["ram_gb"] = RAM_GB
    (bench / "sites" / f"{SITE}.yaml").write_text(yaml.safe_dump(site_doc, sort_keys=False))

    run_id = f"hostile-{runtime}-{secrets.token_hex(3)}"
    runs = tmp / "runs"
    cache = tmp_path_factory.getbasetemp() / "fedsim-cache"
    observed = Observed()
    done = threading.Event()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDSIM_CACHE_DIR", str(cache))
        if runtime == "docker":
            _build_fixture_images()

        # the baseline alone first (it also synthesises the site's data into the cache)
        started = time.monotonic()
        alone = run_benchmark(RunOptions(benchmark=bench, runtime=fedsim_runtime, runs_dir=runs,
                                         run_id=f"{run_id}-alone", models=("baseline",), rank=False))  # fmt: skip
        alone_wall_s = time.monotonic() - started

        original = Launcher.launch

        def recording_launch(self: Any, inv: Any, log_path: Path, workdir: Path) -> Any:
            handle = original(self, inv, log_path, workdir)
            observed.launched.append((inv.labels.get("fedsim.job", "?"), handle))
            return handle

        mp.setattr(Launcher, "launch", recording_launch)

        def on_event(kind: str, job: Any, _result: Any) -> None:
            if kind == "started" and job.kind is JobKind.INFER and observed.inputs_before is None:
                observed.inputs_before = _digest(dict(job.paths)["data_path"])
                observed.labels_before = _digest(dict(job.paths)["data_path"].parent / "labels")

        outside_before = _tree(tmp, skip=runs) | _tree(cache, skip=runs)
        sampler = threading.Thread(target=_sampler, args=(observed, done), daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            report = run_benchmark(RunOptions(benchmark=bench, runtime=fedsim_runtime, runs_dir=runs, run_id=run_id),
                                   Callbacks(on_job=on_event))  # fmt: skip
        finally:
            done.set()
            sampler.join(timeout=10)
        wall_s = time.monotonic() - started
    outside_after = _tree(tmp, skip=runs) | _tree(cache, skip=runs)
    import json

    summary = json.loads(report.run.summary.read_text())
    jobs = {j["name"]: j for j in summary["jobs"]}
    print(f"\nhostile suite on {runtime}: baseline-only run {alone_wall_s:.1f} s, hostile run {wall_s:.1f} s")
    for j in summary["jobs"]:
        print(f"  {j['name']:<32} {j['status']:<16} {j['duration_s']:6.1f} s  {j['reason'][:110]}")
    yield HostileRun(runtime, hostile, report, summary, jobs, alone, observed, outside_before, outside_after,
                     report.run.root / "sites" / SITE, wall_s, alone_wall_s)  # fmt: skip


# ---------------------------------------------------------------- every hostile job: recorded with its reason

CONTAINED = {  # the attack fails inside the container or sandbox; the job itself succeeds
    "network": "NETWORK: blocked",
    "write_input": "WRITE_INPUT: blocked",
    "write_image": "WRITE_IMAGE: blocked",
    "read_labels": "LABELS: none found",
    "root": "ROOT: prevented",
    "setuid_escalation": "SETUID: prevented",
    "setuid_copy": "SETUID_COPY: prevented",
    "detach_child": "DETACH: daemon pid",
    "symlink_outputs": "SYMLINK: ",
    "decompression_bomb": "DECOMPRESSION_BOMB: ",
}
KILLED = {  # status, reason pattern, a log line proving the behaviour really ran
    "fork_bomb": ("timeout", r"wall-clock limit of 10 s reached", "FORK_BOMB: started"),
    # docker: the cgroup watch stops it once pinned at the limit; the kernel's OOM kill is the backstop
    "memory_bomb": ("ram_exceeded", r"RAM held at the limit of 2\.00 GiB|OOMKilled", "holding "),
    "disk_fill": ("output_exceeded", r"wrote \d+ MiB into output_path, over the limit of 8 MiB", "DISK_FILL: "),
    "silent_hang": ("timeout", r"wall-clock limit of 10 s reached", "SILENT_HANG: sleeping forever"),
    "chatty_hang": ("timeout", r"wall-clock limit of 10 s reached", "CHATTY_HANG: still working, step 100 "),
    "ignore_sigterm": ("timeout", r"wall-clock limit of 10 s reached", "IGNORE_SIGTERM: SIGTERM/SIGINT/SIGHUP"),
}
# the sandbox has no memory cgroup: the RAM guard sums the tree's PSS and stops it above the limit
SANDBOX_REASONS = {"memory_bomb": r"^RAM \d+\.\d\d GiB exceeded the limit of 2\.00 GiB"}
# Killing a tree of max_pids processes and tearing down its PID namespace takes a few seconds more.
KILL_SLACK_S = {"fork_bomb": 6.0}


def test_the_suite_covers_every_hostile_model() -> None:
    assert set(CONTAINED) | set(KILLED) == set(HOSTILE)
    assert not set(CONTAINED) & set(KILLED)
    assert set(HOSTILE) > NEEDS_IMAGE


@each(CONTAINED)
def test_contained_attack_fails_inside_and_the_job_succeeds(hostile_run: HostileRun, model: str) -> None:
    job = hostile_run.jobs[f"infer.{model}"]
    log = hostile_run.log(model)
    assert job["status"] == "succeeded", (job["reason"], log[-2000:])
    assert CONTAINED[model] in log, log[-2000:]


@each(KILLED)
def test_killed_job_is_recorded_with_its_reason(hostile_run: HostileRun, model: str) -> None:
    status, reason, line = KILLED[model]
    if hostile_run.runtime == "sandbox":
        reason = SANDBOX_REASONS.get(model, reason)
    job = hostile_run.jobs[f"infer.{model}"]
    log = hostile_run.log(model)
    if model == "memory_bomb":
        held = [int(n) for n in re.findall(r"^holding (\d+) MiB", log, re.MULTILINE)]
        assert held and max(held) >= 0.9 * RAM_GB * 1024, log[-500:]  # it did reach the memory limit
    assert job["status"] == status, (job["reason"], log[-2000:])
    assert re.search(reason, job["reason"]), job["reason"]
    assert line in log, log[-2000:]
    if status == "timeout":  # killed at the deadline, not later: SIGKILL, no reliance on SIGTERM
        assert DEADLINE_S <= job["duration_s"] < DEADLINE_S + KILL_SLACK_S.get(model, 3.0), job


def test_memory_bomb_is_attributed_to_ram(hostile_run: HostileRun) -> None:
    assert hostile_run.jobs["infer.memory_bomb"]["status"] == "ram_exceeded", hostile_run.jobs["infer.memory_bomb"]


def test_fork_bomb_is_not_misattributed_to_ram(hostile_run: HostileRun) -> None:
    assert hostile_run.jobs["infer.fork_bomb"]["status"] == "timeout", hostile_run.jobs["infer.fork_bomb"]


@on("docker")
def test_every_model_container_had_the_hardening_profile(hostile_run: HostileRun) -> None:
    from fedsim.runtimes.docker import container_user

    uid, gid = container_user()
    models = [k.split("/infer.", 1)[1] for k, _ in hostile_run.observed.launched if "/infer." in k]
    assert sorted(models) == sorted(MODELS)
    for model in MODELS:
        attrs = hostile_run.attrs(model)
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
        assert host["Init"] is True and host["ReadonlyRootfs"] is True
        assert host["PidsLimit"] == MAX_PIDS
        assert host["Memory"] == host["MemorySwap"] == RAM_GB * 1024**3
        assert "nosuid" in host["Tmpfs"]["/tmp"]
        assert attrs["Config"]["User"] == f"{uid}:{gid}" and uid != 0
        mounts = {m["Destination"]: (m["Source"], m["RW"]) for m in attrs["Mounts"]}
        assert mounts == {  # the prepared cases read-only and its own output; never the labels
            "/mlcube_io0": (str(hostile_run.site_dir / "prepared"), False),
            "/mlcube_io1": (str(hostile_run.site_dir / "predictions" / model), True),
        }


def _sandbox_argv(log: str) -> list[str]:
    first = log.splitlines()[0]
    assert first.startswith("$ "), first
    return shlex.split(first[2:])


@on("sandbox")
def test_every_model_job_ran_in_the_sandbox(hostile_run: HostileRun) -> None:
    """Each model's recorded command line: every namespace, the limits, a non-root uid, and of the run
    directory exactly its prepared cases (read-only) and its own output (writable)."""
    from fedsim.runtimes.sandbox import UID_BASE

    site, root = hostile_run.site_dir, hostile_run.report.run.root
    models = [k.split("/infer.", 1)[1] for k, _ in hostile_run.observed.launched if "/infer." in k]
    assert sorted(models) == sorted([*hostile_run.models, "baseline"])
    for model in [*hostile_run.models, "baseline"]:
        job = hostile_run.jobs[f"infer.{model}"]
        assert (job["runtime"], job["containment"]) == ("local", "bwrap"), job
        argv = _sandbox_argv(hostile_run.log(model))
        cut = argv.index("--")
        flags, command = argv[:cut], argv[cut + 1 :]
        for flag in ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--die-with-parent"):
            assert flag in flags, (model, flag)
        assert flags[-4:-1] == ["--remount-ro", "/", "--chdir"], flags[-6:]
        binds = {(flags[i], flags[i + 2]) for i, f in enumerate(flags) if f in {"--bind", "--ro-bind", "--ro-bind-try"}}
        in_run = {(kind, dst) for kind, dst in binds if dst.startswith(str(root))}
        assert in_run == {
            ("--ro-bind-try", str(site / "prepared")),
            ("--bind", str(site / "predictions" / model)),
        }, in_run
        cache = str(site.parents[4] / "fedsim-cache")  # the basetemp's data cache (raw cases with their *_seg)
        assert not [a for a in argv if str(site / "labels") in a or cache in a], model
        assert f"--nproc={MAX_PIDS}:{MAX_PIDS}" in command
        if os.getuid() == 0:  # bwrap has root's privileges for the mounts only; the cube gets a uid of its own
            reuid = next(a for a in command if a.startswith("--reuid="))
            assert int(reuid.split("=", 1)[1]) >= UID_BASE, reuid
            assert "--bounding-set=-all" in command and "--clear-groups" in command
        else:
            assert "--unshare-user" in flags and "--disable-userns" in flags
    for model in hostile_run.models:  # trusted cubes run as today
        assert hostile_run.jobs[f"evaluate.{model}"]["containment"] == "none"


# ---------------------------------------------------------------- host-side effects of the contained attacks


def test_input_data_and_labels_are_unchanged(hostile_run: HostileRun) -> None:
    observed = hostile_run.observed
    assert observed.inputs_before and observed.labels_before
    assert _digest(hostile_run.site_dir / "prepared") == observed.inputs_before
    assert _digest(hostile_run.site_dir / "labels") == observed.labels_before
    probes = re.findall(r"^probe (\S+): blocked \((\w+):", hostile_run.log("write_input"), re.MULTILINE)
    assert {name for name, _ in probes} == {"create", "mkdir", "overwrite", "append", "chmod", "rename", "delete"}
    codes = dict(probes)
    # the read-only mount (EROFS); an open for writing is refused by the file's mode (EACCES) before the mount
    assert set(codes.values()) <= {"EROFS", "EACCES"}, codes
    assert {codes[p] for p in ("create", "mkdir", "rename", "delete")} == {"EROFS"}, codes


@on("docker")
def test_image_is_read_only_and_tmp_is_bounded(hostile_run: HostileRun) -> None:
    log = hostile_run.log("write_image")
    probes = re.findall(r"^probe (\S+): blocked \((\w+):", log, re.MULTILINE)
    assert {n for n, _ in probes} == {"code", "code-new", "etc", "usr", "root", "var", "mkdir"}
    assert {code for _, code in probes} == {"EROFS"}
    fill = re.search(r"^TMP_FILL: stopped \(ENOSPC after (\d+) MiB\)", log, re.MULTILINE)
    assert fill is not None and int(fill.group(1)) <= 1024, log[-500:]
    for path in ("/pwned", "/etc/pwned", "/usr/local/bin/pwned", "/opt/pwned", "/mlcube_project"):
        assert not os.path.lexists(path), path  # sanity: none of it is on the host either


def test_nothing_outside_the_run_directory_changed(hostile_run: HostileRun) -> None:
    assert hostile_run.outside_after == hostile_run.outside_before


def test_network_only_loopback(hostile_run: HostileRun) -> None:
    log = hostile_run.log("network")
    if hostile_run.runtime == "docker":
        assert "interfaces: lo\n" in log
    assert "proc interfaces: lo\n" in log
    assert "default route: none\n" in log
    assert "OPEN" not in log


@on("docker")
def test_labels_are_unreachable_for_a_model(hostile_run: HostileRun) -> None:
    log = hostile_run.log("read_labels")
    assert "mlcube mounts: /mlcube_io0,/mlcube_io1\n" in log


@on("sandbox")
def test_labels_are_invisible_in_the_sandbox(hostile_run: HostileRun) -> None:
    """The cube looked beside its data (where a site keeps labels/) and everywhere else it could see."""
    log = hostile_run.log("read_labels")
    searched = re.search(r"^LABELS: none found \(searched (\d+) files under /\)", log, re.MULTILINE)
    assert searched is not None and int(searched.group(1)) > 100, log[-500:]
    assert (hostile_run.site_dir / "labels").is_dir()  # they are there on the host


def test_no_root(hostile_run: HostileRun) -> None:
    from fedsim.runtimes.docker import container_user

    root = next(ln for ln in hostile_run.log("root").splitlines() if ln.startswith("ROOT:"))
    assert "NoNewPrivs=1" in root and "CapEff=0000000000000000" in root, root
    uid = int(re.search(r"\buid=(\d+)", root).group(1))  # type: ignore[union-attr]
    assert uid != 0 and "setuid(0)=PermissionError" in root, root
    if hostile_run.runtime == "docker":
        assert uid == container_user()[0], root
    else:
        assert "CapBnd=0000000000000000" in root, root


@on("docker")
def test_no_root_through_a_setuid_binary_in_the_image(hostile_run: HostileRun) -> None:
    from fedsim.runtimes.docker import container_user

    uid = container_user()[0]
    log = hostile_run.log("setuid_escalation")
    assert "owner=0 mode=0o4755" in log  # the vector is really there: a setuid-root interpreter
    line = next(ln for ln in log.splitlines() if ln.startswith("SETUID: prevented"))
    assert f"image-suid=uid={uid} euid={uid} suid={uid} rc=0" in line, line
    assert "tmp-chown=PermissionError" in line and "tmp-suid=euid=0" not in line, line


def test_no_setuid_binary_is_left_in_an_output(hostile_run: HostileRun) -> None:
    line = next(ln for ln in hostile_run.log("setuid_copy").splitlines() if ln.startswith("SETUID_COPY:"))
    assert "chown=PermissionError" in line and "mode=0o6755" in line, line  # it did set the bits, not as root
    copy = hostile_run.site_dir / "predictions" / "setuid_copy" / "id"
    st = copy.lstat()
    assert st.st_mode & 0o6000 == 0, oct(st.st_mode)  # stripped (docker: by the chown back)
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())  # handed back to the invoking user


def test_fork_bomb_hits_the_pid_limit(hostile_run: HostileRun) -> None:
    """Seen from the host: the bomb's tree grew to the job's PID limit and never past it."""
    from collections import Counter

    seen = Counter(hostile_run.observed.tree_sizes.get(f"{SITE}/infer.fork_bomb", []))
    # docker: init and the bomb share the cgroup's limit; sandbox: bwrap and its init (root) are not the job's uid
    cap = MAX_PIDS if hostile_run.runtime == "docker" else MAX_PIDS + 2
    assert seen and 16 < max(seen) <= cap, sorted(seen)[-5:]
    if hostile_run.jobs["infer.fork_bomb"]["status"] == "timeout":  # it ran long enough to saturate the limit
        assert max(seen) >= 0.85 * MAX_PIDS, sorted(seen)[-5:]
    log = hostile_run.log("fork_bomb")
    hit = re.search(r"^FORK_BOMB: pids limit hit .* pids\.max=(\S+) ", log, re.MULTILINE)
    if hit is not None and hostile_run.runtime == "docker":  # the bomb's own report (it may come too late)
        assert hit.group(1) == str(MAX_PIDS), hit.group(0)


def test_disk_fill_stopped_and_its_output_discarded(hostile_run: HostileRun) -> None:
    reason = hostile_run.jobs["infer.disk_fill"]["reason"]
    written = int(re.search(r"wrote (\d+) MiB", reason).group(1))  # type: ignore[union-attr]
    assert written < 2048, reason  # bounded overshoot: one guard interval of writing
    assert list((hostile_run.site_dir / "predictions" / "disk_fill").iterdir()) == []


def test_chatty_hang_log_streamed_until_the_kill(hostile_run: HostileRun) -> None:
    steps = re.findall(r"^CHATTY_HANG: still working, step (\d+) ", hostile_run.log("chatty_hang"), re.MULTILINE)
    assert len(steps) > 100 and int(steps[-1]) == len(steps) - 1


def test_sigterm_is_not_relied_on(hostile_run: HostileRun) -> None:
    """The deadline kills with SIGKILL at once: the cube never even sees a SIGTERM it could ignore."""
    log = hostile_run.log("ignore_sigterm")
    assert hostile_run.jobs["infer.ignore_sigterm"]["exit_code"] in (137, -9, None), hostile_run.jobs
    assert "got signal" not in log


def test_detached_daemon_dies_with_the_job(hostile_run: HostileRun) -> None:
    observed = hostile_run.observed
    assert observed.daemons, "the daemon was never seen on the host: the scan would prove nothing"
    alive = []
    for pid, created in observed.daemons:
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    assert alive == []
    assert not [p.pid for p in psutil.process_iter(["cmdline"]) if DAEMON_MARKER in (p.info["cmdline"] or [])]
    out = hostile_run.site_dir / "predictions" / "detach_child"
    assert not (out / "late.txt").exists()  # it never wrote after its job ended (it wakes 2.5 s in)


def test_no_process_of_any_job_survives(hostile_run: HostileRun) -> None:
    observed = hostile_run.observed
    assert len(observed.pids) > 20
    alive = []
    for (pid, created), key in observed.pids.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append((key, pid, proc.cmdline()))
        except psutil.NoSuchProcess:
            continue
    assert alive == []


@on("docker")
def test_no_container_of_the_run_remains(hostile_run: HostileRun) -> None:
    assert containers_of_run(hostile_run.report.run.run_id) == []


# ---------------------------------------------------------------- metrics: penalty rows; the baseline untouched


def test_hostile_models_score_the_penalty_row(hostile_run: HostileRun) -> None:
    rows = hostile_run.report.site_metrics[SITE]
    assert len(rows) == CASES
    for case, by_model in rows.items():
        for model in hostile_run.models:
            row = by_model[model]
            assert row["missing_pred"] is True, (case, model, row)
            for region in ("ET", "TC", "WT"):
                assert row[f"Dice_{region}"] == 0 and row[f"Hausdorff95_{region}"] == 374, (case, model, row)
    for model in hostile_run.models:  # the metrics cube itself survived every one of them
        assert hostile_run.jobs[f"evaluate.{model}"]["status"] == "succeeded", hostile_run.jobs[f"evaluate.{model}"]


def test_symlinks_to_the_labels_are_not_followed(hostile_run: HostileRun) -> None:
    out = hostile_run.site_dir / "predictions" / "symlink_outputs"
    links = {p.name: os.readlink(p) for p in out.iterdir() if p.is_symlink()}
    cases = sorted(hostile_run.report.site_metrics[SITE])
    assert links[f"{cases[0]}.nii.gz"] == f"/mlcube_io1/{cases[0]}_final_seg.nii.gz"  # the truth, in the cube
    assert links[f"{cases[1]}.nii.gz"] == f"../../labels/{cases[1]}_final_seg.nii.gz"  # the truth, on the host
    assert (out / links[f"{cases[1]}.nii.gz"]).is_file()  # a host-side follower would have found it
    # ... yet both scored the penalty row (test above), not Dice 1


def test_decompression_bombs_are_refused(hostile_run: HostileRun) -> None:
    from fedsim.metrics.nifti import UnreadableVolume, load_label

    out = hostile_run.site_dir / "predictions" / "decompression_bomb"
    cases = sorted(hostile_run.report.site_metrics[SITE])
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    assert set(sizes) == {f"{c}.nii.gz" for c in cases} and max(sizes.values()) < 2 * 1024**2
    assert "inflating to 1025 MiB" in hostile_run.log("decompression_bomb")
    for case in cases:
        with pytest.raises(UnreadableVolume, match=r"decompression bomb|voxels"):
            load_label(out / f"{case}.nii.gz", max_voxels=96 * 96 * 64)


def test_baseline_is_complete_correct_and_equal_to_a_run_alone(hostile_run: HostileRun) -> None:
    assert hostile_run.jobs["infer.baseline"]["status"] == "succeeded"
    assert hostile_run.jobs["evaluate.baseline"]["status"] == "succeeded"
    rows = hostile_run.report.site_metrics[SITE]
    alone = hostile_run.alone.site_metrics[SITE]
    assert sorted(rows) == sorted(alone) and len(rows) == CASES
    for case in rows:
        row = rows[case]["baseline"]
        assert row["missing_pred"] is False and row["Dice_WT"] > 0.7, (case, row)
        assert row == alone[case]["baseline"], case
    assert hostile_run.report.ranking is not None
