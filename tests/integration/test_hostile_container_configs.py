"""Hostile submissions in MedPerf's container-config format (issue 21, item 5): held as the MLCube ones are
(``test_hostile_suite.py``), through the ``mount_paths`` convention's own invocation.

ONE benchmark run on docker: the bundled data-prep and metrics cubes, six hostile ``DockerImage`` models that
fedsim builds in its build phase from the Dockerfile beside each config (``tests/fixtures/hostile_cc/``), and the
MLCube baseline last, so its scores also prove that nothing a hostile model did reached a later job. Each model's
``infer`` task mounts the site's data at ``/mlcommons/volumes/data`` and its output at
``/mlcommons/volumes/predictions``; MedPerf's runner adds a fresh host folder at ``/tmp``. What stops each one:

- write its input mounts (write_mounts): every input volume read-only — the data, the parameters file mounted by
  itself, the additional files mounted over a world-writable folder of the image → succeeded, nothing changed
- network (network): ``network_mode=none``, no engine socket → only ``lo``, no route, every probe refused
- root / the labels (root_labels): non-root user, no capabilities, no-new-privileges; of the run directory only
  the data (ro), the output and the job's /tmp folder are mounted → succeeded, no label found
- memory hog (memory_hog): ``mem_limit == memswap_limit`` and the cgroup watch → ram_exceeded
- fork bomb (fork_bomb): ``pids_limit`` = ``max_pids``, then the deadline → timeout
- fill /tmp (tmp_fill): the host folder at /tmp is bounded by the output-size guard (1 GiB, as the tmpfs an
  MLCube submission gets) → output_exceeded, and the jobs after it go on
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CUBES, FIXTURES, containers_of_run, small_benchmark

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]

HOSTILE_CC = FIXTURES / "hostile_cc"
SITE = "s0"
CASES = 2
TIMEOUT_PER_CASE_S = 10.0  # /tmp_fill must write its 1 GiB well inside the deadline on a busy 2-core machine
DEADLINE_S = CASES * TIMEOUT_PER_CASE_S
RAM_GB = 2
MAX_PIDS = 1024  # the benchmark's default limits.max_pids
TMP_LIMIT_MIB = 1024  # Isolation.untrusted_tmpfs_bytes: the bound of a submission's /tmp
DATA, PREDICTIONS = "/mlcommons/volumes/data", "/mlcommons/volumes/predictions"
PARAMETERS, EXTRA = "/mlcommons/volumes/parameters/parameters.yaml", "/opt/model/work"

# Model order is run order at the site: the input-writer first, the baseline last.
HOSTILE = ("write_mounts", "network", "root_labels", "memory_hog", "fork_bomb", "tmp_fill")
MODELS = (*HOSTILE, "baseline")

CONTAINED = {  # the attack fails inside the container; the job itself succeeds
    "write_mounts": ("WRITE_MOUNTS: blocked (open: -; blocked: 20 probes)",),
    "network": ("NETWORK: blocked (open: -; ",),
    "root_labels": ("ROOT: prevented (", "LABELS: none found (searched "),
}
KILLED = {  # status, the reason (the whole of it), a log line proving the behaviour really ran
    # the cgroup watch stops it once pinned at the limit; the kernel's OOM kill is the backstop
    "memory_hog": (
        "ram_exceeded",
        r"RAM held at the limit of 2\.00 GiB \(\d\.\d\d GiB in use, the container hitting its limit for \d+\.\d s\): "
        r"the job needs more memory than the federation allows|killed by the container's memory limit \(OOMKilled\)",
        "holding 64 MiB\n",
    ),
    "fork_bomb": ("timeout", r"wall-clock limit of 20 s reached after 2\d\.\d s", "FORK_BOMB: started"),
    "tmp_fill": (
        "output_exceeded",
        r"wrote (\d+) MiB into /tmp, over the limit of 1024 MiB",
        "TMP_FILL: writing into /tmp without end",
    ),
}


@dataclass
class Observed:
    """What the host saw while the run went on."""

    launched: list[tuple[str, Any]] = field(default_factory=list)  # (job key, ContainerHandle)
    tree_sizes: dict[str, list[int]] = field(default_factory=dict)  # job key -> sampled process counts
    inputs_before: dict[str, str] | None = None
    labels_before: dict[str, str] | None = None


@dataclass
class CcRun:
    report: Any
    summary: dict[str, Any]
    jobs: dict[str, dict[str, Any]]  # job name -> summary record
    observed: Observed
    cubes: Path  # the hostile configs' copies
    cube_files_before: dict[str, str]
    site_dir: Path

    def log(self, model: str) -> str:
        return Path(self.jobs[f"infer.{model}"]["log"]).read_text(errors="replace")

    def attrs(self, model: str) -> dict[str, Any]:
        key = f"{SITE}/infer.{model}"
        return next(h.container.attrs for k, h in self.observed.launched if k == key)


def _digest(root: Path) -> dict[str, str]:
    """Path → mode and sha256 of the content, for every entry under root."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        body = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        out[str(p.relative_to(root))] = f"{st.st_mode:o}:{hashlib.sha256(body).hexdigest()}"
    return out


def _sampler(observed: Observed, done: threading.Event) -> None:
    """Every 0.25 s: how many host processes each running job's tree holds."""
    while not done.wait(0.25):
        for key, handle in list(observed.launched):
            pids = handle.host_pids()
            if pids:
                observed.tree_sizes.setdefault(key, []).append(len(pids))


@pytest.fixture(scope="module")
def cc_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CcRun]:
    from fedsim.jobs.job import JobKind
    from fedsim.pipeline.observer import Callbacks
    from fedsim.pipeline.run import RunOptions, run_benchmark
    from fedsim.runtimes.docker import DockerRuntime

    tmp = tmp_path_factory.mktemp("hostile-cc")
    cubes = tmp / "cubes"
    for name in HOSTILE:  # copies: an attack that got through must not change the repository's fixtures
        shutil.copytree(HOSTILE_CC / name, cubes / name)
    bench = small_benchmark(
        tmp,
        models={**{name: cubes / name for name in HOSTILE}, "baseline": CUBES / "baseline"},
        sites=1,
        cases=CASES,
        timeout_per_case_s=TIMEOUT_PER_CASE_S,
        runtime="docker",
    )
    site_doc = yaml.safe_load((bench / "sites" / f"{SITE}.yaml").read_text())
    site_doc["hardware"]["ram_gb"] = RAM_GB
    (bench / "sites" / f"{SITE}.yaml").write_text(yaml.safe_dump(site_doc, sort_keys=False))
    cube_files_before = _digest(cubes)

    observed = Observed()
    done = threading.Event()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDSIM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fedsim-cache"))
        original = DockerRuntime.launch

        def recording_launch(self: Any, inv: Any, log_path: Path, workdir: Path) -> Any:
            handle = original(self, inv, log_path, workdir)
            observed.launched.append((inv.labels.get("fedsim.job", "?"), handle))
            return handle

        mp.setattr(DockerRuntime, "launch", recording_launch)

        def on_event(kind: str, job: Any, _result: Any) -> None:
            if kind == "started" and job.kind is JobKind.INFER and observed.inputs_before is None:
                observed.inputs_before = _digest(dict(job.paths)["data_path"])
                observed.labels_before = _digest(dict(job.paths)["data_path"].parent / "labels")

        sampler = threading.Thread(target=_sampler, args=(observed, done), daemon=True)
        sampler.start()
        try:
            report = run_benchmark(
                RunOptions(
                    benchmark=bench,
                    runtime="docker",
                    runs_dir=tmp / "runs",
                    run_id=f"hostile-cc-{secrets.token_hex(3)}",
                ),
                Callbacks(on_job=on_event),
            )
        finally:
            done.set()
            sampler.join(timeout=10)
    summary = json.loads(report.run.summary.read_text())
    jobs = {j["name"]: j for j in summary["jobs"]}
    print(f"\nhostile container configs on docker: {summary['duration_s']:.1f} s (builds {summary['build_s']:.1f} s)")
    for j in summary["jobs"]:
        print(f"  {j['name']:<26} {j['status']:<16} {j['duration_s']:6.1f} s  {j['reason'][:110]}")
    site_dir = report.run.root / "sites" / SITE
    yield CcRun(report, summary, jobs, observed, cubes, cube_files_before, site_dir)
    shutil.rmtree(site_dir / "work" / "infer.tmp_fill" / "tmp", ignore_errors=True)  # its GiB of zeros


# ---------------------------------------------------------------- every hostile job: recorded with its reason


def test_the_suite_covers_every_hostile_model() -> None:
    assert set(CONTAINED) | set(KILLED) == set(HOSTILE)
    assert not set(CONTAINED) & set(KILLED)
    assert sorted(p.name for p in HOSTILE_CC.iterdir() if p.is_dir()) == sorted(HOSTILE)


def test_fedsim_built_every_hostile_image_in_its_build_phase(cc_run: CcRun) -> None:
    builds = {b["cube"]: b for b in cc_run.summary["builds"]}
    for model in HOSTILE:
        build = builds[model]
        assert build["image"] == f"fedsim-test/hostile-cc-{model.replace('_', '-')}:0.1", build
        assert build["action"] in ("built", "present") and build["error"] is None, build
        assert cc_run.jobs[f"infer.{model}"]["image"]["image"] == build["image"]


@pytest.mark.parametrize("model", sorted(CONTAINED))
def test_contained_attack_fails_inside_and_the_job_succeeds(cc_run: CcRun, model: str) -> None:
    job = cc_run.jobs[f"infer.{model}"]
    log = cc_run.log(model)
    assert (job["status"], job["reason"], job["exit_code"]) == ("succeeded", "", 0), log[-2000:]
    for line in CONTAINED[model]:
        assert line in log, log[-2000:]
    assert "OPEN" not in log, log[-2000:]


@pytest.mark.parametrize("model", sorted(KILLED))
def test_killed_job_is_recorded_with_its_reason(cc_run: CcRun, model: str) -> None:
    status, reason, line = KILLED[model]
    job = cc_run.jobs[f"infer.{model}"]
    log = cc_run.log(model)
    assert job["status"] == status, (job["reason"], log[-2000:])
    assert re.fullmatch(reason, job["reason"]), job["reason"]
    assert line in log, log[-2000:]
    if status == "timeout":  # killed at the deadline, not later
        assert DEADLINE_S <= job["duration_s"] < DEADLINE_S + 6.0, job


@pytest.mark.parametrize("model", MODELS)
def test_every_model_container_had_the_hardening_profile(cc_run: CcRun, model: str) -> None:
    """MedPerf's invocation (its mounts at the declared paths, ``/tmp`` a host folder) with fedsim's hardening."""
    from fedsim.runtimes.docker import container_user

    uid, gid = container_user()
    attrs = cc_run.attrs(model)
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Init"] is True and host["ReadonlyRootfs"] is True
    assert host["PidsLimit"] == MAX_PIDS
    assert host["Memory"] == host["MemorySwap"] == RAM_GB * 1024**3
    assert attrs["Config"]["User"] == f"{uid}:{gid}" and uid != 0
    mounts = {m["Destination"]: (m["Source"], m["RW"]) for m in attrs["Mounts"]}
    site = cc_run.site_dir
    if model == "baseline":  # the MLCube baseline: MLCube's scheme, a tmpfs at /tmp
        assert mounts == {
            "/mlcube_io0": (str(site / "prepared"), False),
            "/mlcube_io1": (str(site / "predictions" / model), True),
        }
        assert "nosuid" in host["Tmpfs"]["/tmp"]
        return
    expected = {  # the prepared cases read-only, its own output, its own /tmp folder; never the labels
        DATA: (str(site / "prepared"), False),
        PREDICTIONS: (str(site / "predictions" / model), True),
        "/tmp": (str(site / "work" / f"infer.{model}" / "tmp"), True),
    }
    if model == "write_mounts":  # its registered files, from its own directory
        cube = cc_run.cubes / model / "workspace"
        expected |= {PARAMETERS: (str(cube / "parameters.yaml"), False), EXTRA: (str(cube / "additional_files"), False)}
    assert mounts == expected
    assert not host.get("Tmpfs"), host.get("Tmpfs")


# ---------------------------------------------------------------- what each attack saw, from inside and outside


def test_every_input_mount_is_read_only_and_nothing_changed(cc_run: CcRun) -> None:
    observed = cc_run.observed
    assert observed.inputs_before and observed.labels_before
    assert _digest(cc_run.site_dir / "prepared") == observed.inputs_before
    assert _digest(cc_run.site_dir / "labels") == observed.labels_before
    assert _digest(cc_run.cubes) == cc_run.cube_files_before  # its parameters file and additional files
    probes = dict(re.findall(r"^probe (\S+): blocked \((\w+):", cc_run.log("write_mounts"), re.MULTILINE))
    folder_probes = ("create", "mkdir", "overwrite", "append", "chmod", "rename", "delete")
    file_probes = ("overwrite", "append", "truncate", "chmod", "rename", "delete")
    assert set(probes) == {f"{d}:{p}" for d in (DATA, EXTRA) for p in folder_probes} | {
        f"{PARAMETERS}:{p}" for p in file_probes
    }, probes
    # the read-only mount (EROFS); an open for writing may be refused by the file's mode first (EACCES); a file
    # mounted by itself cannot be renamed or removed (EBUSY) — nor can anything in the read-only image around it
    assert set(probes.values()) <= {"EROFS", "EACCES", "EBUSY"}, probes
    for folder in (DATA, EXTRA):
        assert {probes[f"{folder}:{p}"] for p in ("create", "mkdir", "rename", "delete")} == {"EROFS"}, probes
    assert f"volume {EXTRA}: weights.txt\n" in cc_run.log("write_mounts")  # the image's own folder is hidden


def test_network_only_loopback(cc_run: CcRun) -> None:
    log = cc_run.log("network")
    assert "interfaces: lo\n" in log and "default route: none\n" in log
    refused = re.findall(r"^probe (.+?): blocked ", log, re.MULTILINE)
    assert refused == [
        "tcp 1.1.1.1:53",
        "tcp 172.17.0.1:2375",
        "udp 8.8.8.8:53",
        "dns example.com",
        "dns pypi.org",
        "engine socket",
    ], log


def test_no_root_and_no_labels(cc_run: CcRun) -> None:
    from fedsim.runtimes.docker import container_user

    uid, gid = container_user()
    log = cc_run.log("root_labels")
    root = next(ln for ln in log.splitlines() if ln.startswith("ROOT:"))
    assert f"uid={uid} euid={uid} gid={gid} " in root, root
    assert "CapEff=0000000000000000 CapPrm=0000000000000000 NoNewPrivs=1 setuid(0)=PermissionError" in root, root
    assert "su-mode=0o4755" in root, root  # the setuid-root vector is really there ...
    assert "su gave root" not in root  # ... and useless (no-new-privileges)
    # of the host: the data (ro), its output and its /tmp folder; never the labels
    assert f"mounts: {DATA}:ro,{PREDICTIONS}:rw,/tmp:rw\n" in log, log
    searched = re.search(r"^LABELS: none found \(searched (\d+) files under /\)$", log, re.MULTILINE)
    assert searched is not None and int(searched.group(1)) > 100, log[-500:]
    assert len(list((cc_run.site_dir / "labels").iterdir())) == CASES  # they are there on the host


def test_memory_hog_reached_the_limit(cc_run: CcRun) -> None:
    held = [int(n) for n in re.findall(r"^holding (\d+) MiB", cc_run.log("memory_hog"), re.MULTILINE)]
    assert held and max(held) >= 0.9 * RAM_GB * 1024, held[-3:]


def test_fork_bomb_hits_the_pid_limit(cc_run: CcRun) -> None:
    """Seen from the host: the bomb's tree grew to the job's PID limit and never past it."""
    seen = cc_run.observed.tree_sizes.get(f"{SITE}/infer.fork_bomb", [])
    assert seen and 0.85 * MAX_PIDS <= max(seen) <= MAX_PIDS, sorted(seen)[-5:]
    hit = re.search(r"^FORK_BOMB: pids limit hit .* pids\.max=(\S+) ", cc_run.log("fork_bomb"), re.MULTILINE)
    if hit is not None:  # the bomb's own report (it may come too late)
        assert hit.group(1) == str(MAX_PIDS), hit.group(0)


def test_tmp_fill_is_stopped_at_the_bound_and_the_run_goes_on(cc_run: CcRun) -> None:
    job = cc_run.jobs["infer.tmp_fill"]
    written = int(re.fullmatch(KILLED["tmp_fill"][1], job["reason"]).group(1))  # type: ignore[union-attr]
    assert TMP_LIMIT_MIB < written < 2 * TMP_LIMIT_MIB, job["reason"]  # bounded overshoot: one guard interval
    steps = [int(n) for n in re.findall(r"^TMP_FILL: (\d+) MiB$", cc_run.log("tmp_fill"), re.MULTILINE)]
    assert steps and steps[-1] >= TMP_LIMIT_MIB, steps[-3:]
    assert "stopped by the file system" not in cc_run.log("tmp_fill")  # the guard stopped it, not a full disk
    # the writes went into the job's host folder (the one the guard watched and names), removed after the job
    assert not (cc_run.site_dir / "work" / "infer.tmp_fill" / "tmp").exists()
    assert list((cc_run.site_dir / "predictions" / "tmp_fill").iterdir()) == []
    # the jobs after it went on: its evaluation and the baseline
    assert cc_run.jobs["evaluate.tmp_fill"]["status"] == "succeeded"
    assert cc_run.jobs["infer.baseline"]["status"] == "succeeded"


def test_no_container_of_the_run_remains(cc_run: CcRun) -> None:
    assert containers_of_run(cc_run.report.run.run_id) == []


def test_no_process_of_a_model_job_survives(cc_run: CcRun) -> None:
    assert [key for key, handle in cc_run.observed.launched if handle.host_pids()] == []
    for key, handle in cc_run.observed.launched:
        pid = handle.root_pid()
        assert pid is None or not os.path.exists(f"/proc/{pid}") or _zombie(pid), (key, pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# ---------------------------------------------------------------- metrics: penalty rows; the baseline scored


def test_hostile_models_score_the_penalty_row(cc_run: CcRun) -> None:
    rows = cc_run.report.site_metrics[SITE]
    assert len(rows) == CASES
    for case, by_model in rows.items():
        for model in HOSTILE:
            row = by_model[model]
            assert row["missing_pred"] is True, (case, model, row)
            for region in ("ET", "TC", "WT"):
                assert row[f"Dice_{region}"] == 0 and row[f"Hausdorff95_{region}"] == 374, (case, model, row)
    for model in HOSTILE:  # the metrics cube itself survived every one of them
        assert cc_run.jobs[f"evaluate.{model}"]["status"] == "succeeded", cc_run.jobs[f"evaluate.{model}"]


def test_baseline_still_scored(cc_run: CcRun) -> None:
    assert cc_run.jobs["infer.baseline"]["status"] == "succeeded"
    assert cc_run.jobs["evaluate.baseline"]["status"] == "succeeded"
    rows = cc_run.report.site_metrics[SITE]
    assert len(rows) == CASES
    for case, by_model in rows.items():
        row = by_model["baseline"]
        assert row["missing_pred"] is False and row["Dice_WT"] > 0.7, (case, row)
    assert cc_run.report.ranking is not None
