"""MLCube conformance: fedsim's container commands against MLCube 0.0.9's own runners (issue 13, part 3).

Every call in ``CALLS`` runs ``mlcube run --mlcube=DIR --task=T --platform=docker|singularity key=value ...``
in a process of its own, the way MedPerf calls it (see ``FORK_SERVER`` for how the import is shared), with
recording fakes of ``docker`` and ``singularity`` first on PATH (``tests/fixtures/conformance/bin``, bash;
see ``fake.sh`` there): each fake appends its argv to
``$FEDSIM_RECORD`` and answers MLCube's probes (``docker inspect`` succeeds, so nothing is pulled or built
unless the cube's build strategy is ``always``; ``singularity --version`` answers 3.8.7; ``singularity
build`` creates the SIF). The task's recorded ``docker run`` / ``singularity run|exec`` is then compared
with fedsim's command for the same cube, task and ``key=value`` arguments:

- docker: ``docker_argv(container_config(bind(cube, task, overrides), image, (uid, gid)))``;
- singularity: ``SingularityRuntime(binary=<the fake>).argv(bind(cube, task, overrides))``.

Both are normalised (``normalise_docker`` / ``normalise_singularity``: image, entrypoint, command, mounts
as (host, container, mode) with host paths resolved through symlinks, environment, every other option);
fedsim's side then loses exactly the options listed in ``HARDENING_FLAGS`` that MLCube's side does not
also have — plus, for untrusted calls (a model's ``infer``), the read-only mode of input-only mounts
(``UNTRUSTED_READ_ONLY_INPUTS``). Everything else must be equal, including options MLCube adds that fedsim
lacks. A call MLCube refuses (``expect_error``) must be refused by fedsim with one of its own errors.

Two more comparisons per call: the host folders each side creates before the container starts (MLCube:
every directory parameter and every file parameter's folder, and the inputs it copies into a custom
``--workspace``; fedsim: what ``Invocation.create_directories()`` creates, which the pipeline calls before
launching), and, where MLCube builds the image (``build_strategy: always``), the ``docker build``
against fedsim's ``ImageBuilder`` talking to a recording docker client.

To extend the suite, add a cube under ``tests/fixtures/conformance/cubes/<name>/`` and a ``Call`` to
``CALLS``; ``FEDSIM_CONFORMANCE_SPAWN=1`` runs every call as a fresh ``python -m mlcube`` process instead.

Every MLCube call runs in its own sandbox (a fresh copy of the cube, its own HOME, ``$FEDSIM_CONF_DIR``,
working directory and MLCube system-settings file); fedsim's side gets an identical sandbox elsewhere and
host paths are compared relative to the sandbox root (``<ROOT>``). No docker engine or singularity binary
is needed, so nothing here is skipped; a missing or broken MLCube installation fails the suite.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import inspect
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedsim.cube import Isolation, bind, load_cube
from fedsim.errors import FedsimError
from fedsim.runtimes.docker import container_config, docker_argv
from fedsim.runtimes.singularity import SingularityRuntime

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "conformance"
CUBES = FIXTURES / "cubes"
FAKE_BIN = FIXTURES / "bin"
ROOT_MARK = "<ROOT>"
ANY = "*"  # a HARDENING_FLAGS value pattern matching any value

# Options fedsim may add that MLCube does not, and only these: they are dropped from fedsim's side before
# the comparison unless MLCube's side has the very same option. Keys are (canonical option name, value
# pattern: fnmatch glob, or None for a flag without value); values say why the departure is deliberate.
HARDENING_FLAGS: dict[str, dict[tuple[str, str | None], str]] = {
    "docker": {
        # a submission must not reach the network: the federation's data never leaves the site
        ("--network", "none"): "no network for untrusted code (docs/mlcube-compatibility.md, README containment)",
        # no Linux capabilities: nothing a segmentation model needs, everything an escape needs
        ("--cap-drop", "ALL"): "all capabilities dropped",
        # setuid binaries in the image cannot raise privileges
        ("--security-opt", "no-new-privileges"): "no new privileges",
        # a fork bomb is stopped by the PID cgroup instead of taking the host down
        ("--pids-limit", ANY): "PID limit",
        # never root in the container: the invoking user (or nobody), as singularity at a site does
        ("--user", ANY): "non-root user",
        # the image is read-only, as a SIF is at the sites; writes go to output_path or /tmp
        ("--read-only", None): "read-only image",
        # a bounded /tmp charged to the memory limit replaces the unbounded writable layer
        ("--tmpfs", "/tmp*"): "bounded /tmp tmpfs",
        # an init process reaps zombies and forwards signals, so a timeout kill stops the whole tree
        ("--init", None): "init process",
        # the federation's RAM limit, with swap equal to it so the limit is real
        ("--memory", ANY): "RAM limit (limits.ram_gb)",
        ("--memory-swap", ANY): "swap equal to the RAM limit",
        # the site's CPU count as a quota
        ("--cpus", ANY): "CPU quota (site hardware.cpus)",
        # bookkeeping so leftover containers of a killed run are found and removed; invisible to the cube
        ("--label", ANY): "fedsim's container label",
        # the engine-side log is capped; fedsim streams and caps the job log itself
        ("--log-driver", ANY): "capped engine log",
        ("--log-opt", ANY): "capped engine log",
        # fedsim removes the container itself, after it has read the exit status and the whole log
        ("--rm", None): "container removed by fedsim after the job",
    },
    "singularity": {
        # contained /tmp, $HOME and /dev, own PID and IPC namespaces, clean environment (FeTS sites' flags)
        ("--containall", None): "-C: contained run, as at the FeTS sites",
        # the host environment does not leak into the container
        ("--cleanenv", None): "clean environment",
        # read-only image with a small writable tmpfs, as at the FeTS sites
        ("--writable-tmpfs", None): "writable tmpfs over a read-only image",
        # a network namespace with loopback only
        ("--net", None): "own network namespace",
        ("--network", "none"): "no network",
        # singularity starts in the caller's cwd; the sites' cubes must not rely on it (nor on WORKDIR)
        ("--pwd", "/"): "working directory / (no host cwd)",
        # FeTS passed --nv to every model; fedsim narrows CUDA_VISIBLE_DEVICES to the job's GPUs
        ("--nv", None): "NVIDIA driver libraries for submissions, as at the FeTS sites",
        # a fork bomb is stopped by the PID cgroup (the benchmark's limits.max_pids), as under docker
        ("--pids-limit", ANY): "PID limit",
    },
}

# Environment fedsim adds to every cube: unbuffered Python, so a job's log streams while it runs (and
# survives a timeout kill). Dropped from fedsim's side unless MLCube's has the same variable.
HARDENING_ENV: dict[str, str] = {"PYTHONUNBUFFERED": "streamed job logs"}

# Options of a cube's gpu_args/cpu_args that fedsim leaves out for a submission because they would undo the
# hardening above (untrusted calls only; fedsim writes them into the job log).
UNTRUSTED_DROPPED: dict[str, str] = {
    "--ipc": "no shared IPC namespace with the host for untrusted code",
    "--network": "no network for untrusted code",
    "--privileged": "never privileged",
    "--cap-add": "no capabilities",
    "--device": "no host devices beyond the assigned GPUs",
    "--volume": "no extra host paths",
    "--user": "non-root user chosen by fedsim",
    "--pid": "no host PID namespace",
    "--security-opt": "hardening security options",
}

# GPUs: MLCube passes gpu_args' `--gpus all`; fedsim gives each job the GPUs it assigned (by UUID, through
# device requests) and none when none is assigned. Compared as "a --gpus option" on both sides.
DEVICE_ASSIGNMENT = "--gpus"

# For untrusted calls only (a model's ``infer``): fedsim mounts a folder that only inputs use read-only
# where MLCube mounts it read-write (MLCube honours only explicit ``opts``). docs/mlcube-compatibility.md
# lists read-only inputs among the deliberate hardening of untrusted model cubes; it never changes paths or arguments.
UNTRUSTED_READ_ONLY_INPUTS = True

# Singularity images: MLCube converts a docker-only cube's image with ``singularity build
# <workspace>/.image/<name>.sif docker://IMAGE`` and runs that SIF; fedsim converts the same image from the
# local engine (``docker-daemon://IMAGE``, cached by digest). Both are compared as "the SIF of docker image
# IMAGE[:latest]"; a SIF the cube declares (``singularity: {image, image_dir}``) is compared by its path.

UNTRUSTED_ISOLATION = {"untrusted": True, "ram_bytes": 8 * 2**30, "cpus": 2.0}


@dataclasses.dataclass(frozen=True)
class Call:
    """One ``mlcube run``: ``{root}`` in values stands for the sandbox root."""

    id: str
    cube: str
    task: str
    args: dict[str, str] = dataclasses.field(default_factory=dict)
    platforms: tuple[str, ...] = ("docker", "singularity")
    workspace: str | None = None  # --workspace
    untrusted: bool = False  # fedsim's side runs with the untrusted isolation (a model's infer)
    expect_error: bool = False  # MLCube refuses the call: fedsim must refuse it too
    dirs: tuple[str, ...] = ()  # folders (each with a file) created under the sandbox root first
    files: tuple[str, ...] = ()  # files created under the sandbox root first
    note: str = ""


MP = "{root}/medperf"  # where a MedPerf client keeps a dataset's folders
BOTH = ("docker", "singularity")
DOCKER = ("docker",)
SING = ("singularity",)

# fmt: off  (a table: one call per entry reads better than the formatter's layout)
CALLS: tuple[Call, ...] = (
    # --- FeTS 2022 task 2 data preparation, with the keys MedPerf passes (docs/fets-contract.md) ---
    Call(
        "fets-prep-prepare",
        "fets_data_prep",
        "prepare",
        {
            "data_path": f"{MP}/raw",
            "labels_path": f"{MP}/raw",
            "output_path": f"{MP}/prepared",
            "output_labels_path": f"{MP}/labels",
        },
        BOTH,
        dirs=("medperf/raw",),
    ),
    Call(
        "fets-prep-sanity",
        "fets_data_prep",
        "sanity_check",
        {"data_path": f"{MP}/prepared", "labels_path": f"{MP}/labels"},
        BOTH,
        dirs=("medperf/prepared", "medperf/labels"),
    ),
    Call(
        "fets-prep-statistics",
        "fets_data_prep",
        "statistics",
        {"data_path": f"{MP}/prepared", "labels_path": f"{MP}/labels"},
        BOTH,
        dirs=("medperf/prepared", "medperf/labels"),
    ),
    Call(
        "fets-prep-prepare-slashes",
        "fets_data_prep",
        "prepare",
        {
            "data_path": f"{MP}/raw/",
            "labels_path": f"{MP}/raw/",
            "output_path": f"{MP}/prepared/",
            "output_labels_path": f"{MP}/labels/",
        },
        DOCKER,
        dirs=("medperf/raw",),
    ),
    Call("fets-prep-prepare-defaults", "fets_data_prep", "prepare", {}, DOCKER),
    Call(
        "fets-prep-statistics-relative",
        "fets_data_prep",
        "statistics",
        {"data_path": "prepped_other", "labels_path": "labels_rel/", "output_path": "stats/out.yaml"},
        DOCKER,
        note="relative values resolve against the workspace, not the working directory",
    ),
    # --- FeTS model template: MedPerf passes data_path and output_path only ---
    Call(
        "fets-model-infer",
        "fets_model",
        "infer",
        {"data_path": f"{MP}/prepared", "output_path": f"{MP}/predictions/fets_model"},
        BOTH,
        untrusted=True,
        dirs=("medperf/prepared",),
    ),
    Call(
        "fets-model-infer-slashes",
        "fets_model",
        "infer",
        {"data_path": f"{MP}/prepared/", "output_path": f"{MP}/predictions/fets_model/"},
        DOCKER,
        untrusted=True,
        dirs=("medperf/prepared",),
    ),
    Call(
        "fets-model-infer-relative",
        "fets_model",
        "infer",
        {"data_path": "cases", "output_path": "preds/run1"},
        DOCKER,
        untrusted=True,
    ),
    Call("fets-model-infer-defaults", "fets_model", "infer", {}, BOTH, untrusted=True),
    # --- FeTS metrics ---
    Call(
        "fets-metrics-evaluate",
        "fets_metrics",
        "evaluate",
        {"predictions": f"{MP}/predictions/m1", "labels": f"{MP}/labels", "output_path": f"{MP}/results/m1.yaml"},
        BOTH,
        dirs=("medperf/predictions/m1", "medperf/labels"),
    ),
    Call("fets-metrics-evaluate-defaults", "fets_metrics", "evaluate", {}, DOCKER),
    # --- MedPerf tutorial-style data preparator (untyped inputs, metadata_path) ---
    Call(
        "medperf-prep-prepare",
        "medperf_prep",
        "prepare",
        {
            "data_path": f"{MP}/raw/images",
            "labels_path": f"{MP}/raw/labels",
            "output_path": f"{MP}/prepared",
            "output_labels_path": f"{MP}/labels",
        },
        BOTH,
        dirs=("medperf/raw/images", "medperf/raw/labels"),
    ),
    Call(
        "medperf-prep-sanity",
        "medperf_prep",
        "sanity_check",
        {"data_path": f"{MP}/prepared", "labels_path": f"{MP}/labels"},
        BOTH,
        dirs=("medperf/prepared", "medperf/labels"),
    ),
    Call(
        "medperf-prep-statistics",
        "medperf_prep",
        "statistics",
        {"data_path": f"{MP}/prepared", "labels_path": f"{MP}/labels"},
        DOCKER,
        dirs=("medperf/prepared", "medperf/labels"),
    ),
    Call("medperf-prep-prepare-defaults", "medperf_prep", "prepare", {}, DOCKER),
    Call(
        "medperf-prep-prepare-file-data",
        "medperf_prep",
        "prepare",
        {"data_path": f"{MP}/raw/list.csv", "labels_path": f"{MP}/raw/labels", "output_path": f"{MP}/prepared"},
        DOCKER,
        dirs=("medperf/raw/labels",),
        files=("medperf/raw/list.csv",),
        note="an untyped input given an existing file on the command line is a file",
    ),
    # --- MedPerf tutorial-style models ---
    Call(
        "medperf-model-infer",
        "medperf_model",
        "infer",
        {"data_path": f"{MP}/prepared", "output_path": f"{MP}/predictions/hello"},
        BOTH,
        untrusted=True,
        dirs=("medperf/prepared",),
    ),
    Call("medperf-model-infer-defaults", "medperf_model", "infer", {}, DOCKER, untrusted=True),
    Call(
        "medperf-model-infer-undeclared-key",
        "medperf_model",
        "infer",
        {"data_path": f"{MP}/prepared", "output_path": f"{MP}/predictions/hello", "labels_path": f"{MP}/labels"},
        DOCKER,
        untrusted=True,
        dirs=("medperf/prepared", "medperf/labels"),
        note="MLCube ignores key=value pairs the task does not declare",
    ),
    Call(
        "medperf-model-weights-infer",
        "medperf_model_weights",
        "infer",
        {"data_path": f"{MP}/prepared", "output_path": f"{MP}/predictions/weights"},
        BOTH,
        untrusted=True,
        dirs=("medperf/prepared",),
    ),
    # --- MedPerf tutorial-style metrics ---
    Call(
        "medperf-metrics-evaluate",
        "medperf_metrics",
        "evaluate",
        {"predictions": f"{MP}/predictions/hello", "labels": f"{MP}/labels", "output_path": f"{MP}/results/hello.yaml"},
        BOTH,
        dirs=("medperf/predictions/hello", "medperf/labels"),
    ),
    Call(
        "medperf-metrics-evaluate-defaults",
        "medperf_metrics",
        "evaluate",
        {},
        DOCKER,
        expect_error=True,
        note="untyped inputs that exist nowhere: MLCube cannot tell directory from file",
    ),
    Call(
        "medperf-metrics-evaluate-missing-predictions",
        "medperf_metrics",
        "evaluate",
        {"predictions": f"{MP}/nowhere", "labels": f"{MP}/labels", "output_path": f"{MP}/results/x.yaml"},
        DOCKER,
        expect_error=True,
        dirs=("medperf/labels",),
    ),
    # --- mlcube_examples hello_world and mnist ---
    Call("hello-world-hello", "hello_world", "hello", {}, BOTH),
    Call("hello-world-bye", "hello_world", "bye", {}, BOTH),
    Call("hello-world-hello-relative-name", "hello_world", "hello", {"name": "names/bob.txt"}, DOCKER),
    Call("hello-world-bye-absolute-chat", "hello_world", "bye", {"chat": "{root}/chats/bob.txt"}, DOCKER),
    Call("mnist-download", "mnist", "download", {}, BOTH),
    Call("mnist-train", "mnist", "train", {}, BOTH),
    Call(
        "mnist-train-override",
        "mnist",
        "train",
        {"data_dir": "{root}/mnist/data/", "model_dir": "{root}/mnist/model"},
        DOCKER,
    ),
    # --- task entrypoints ---
    Call("entrypoint-multi-download", "entrypoint_multi", "download", {}, BOTH),
    Call("entrypoint-multi-train", "entrypoint_multi", "train", {}, DOCKER),
    Call(
        "entrypoint-single-infer",
        "entrypoint_single",
        "infer",
        {"data_path": f"{MP}/prepared", "output_path": f"{MP}/predictions/single"},
        BOTH,
        untrusted=True,
        dirs=("medperf/prepared",),
    ),
    Call("entrypoint-null-plain", "entrypoint_single", "plain", {}, BOTH),
    # --- docker section: gpu_args / cpu_args / env_args / build_args / extra options ---
    Call("gpu-args-infer", "gpu_args", "infer", {}, DOCKER, untrusted=True),
    Call("accel-null-run", "accel_null", "run", {}, DOCKER),
    Call("accel-zero-run", "accel_zero", "run", {}, DOCKER),
    Call("no-platform-run", "no_platform", "run", {}, DOCKER),
    Call("env-args-dict-run", "env_args_dict", "run", {}, DOCKER),
    Call("env-args-string-run", "env_args_string", "run", {}, DOCKER),
    Call("build-args-dict-run", "build_args_dict", "run", {}, DOCKER),
    Call("build-args-string-run", "build_args_string", "run", {}, DOCKER),
    Call("docker-extra-opts-run", "docker_extra_opts", "run", {}, DOCKER),
    # --- parameter forms ---
    Call("param-forms-run", "param_forms", "run", {}, BOTH),
    Call("param-forms-noop", "param_forms", "noop", {}, DOCKER),
    Call("param-nodefault-run", "param_nodefault", "run", {}, DOCKER),
    Call("untyped-inputs-run", "untyped_inputs", "run", {}, BOTH),
    Call(
        "untyped-inputs-dir-as-file",
        "untyped_inputs",
        "run",
        {"ref_dir": "{root}/ext/ref.txt"},
        DOCKER,
        files=("ext/ref.txt",),
    ),
    Call(
        "untyped-inputs-slash-override",
        "untyped_inputs",
        "run",
        {"config": "cfgdir/"},
        DOCKER,
        note="a value ending in / makes an untyped input a directory",
    ),
    Call("untyped-outputs-with-slash", "untyped_outputs", "with_slash", {}, DOCKER),
    Call("untyped-outputs-without-slash", "untyped_outputs", "without_slash", {}, DOCKER, expect_error=True),
    Call(
        "untyped-outputs-without-slash-cli-slash",
        "untyped_outputs",
        "without_slash",
        {"out": "results_cli/"},
        DOCKER,
        note="the command line's trailing slash types an untyped output",
    ),
    Call("untyped-outputs-with-slash-cli-plain", "untyped_outputs", "with_slash", {"out": "{root}/abs_out"}, DOCKER),
    Call("typed-files-run", "typed_files", "run", {}, BOTH),
    Call(
        "typed-files-override",
        "typed_files",
        "run",
        {"weights": "{root}/ext/w.bin", "report": "out/r.json"},
        DOCKER,
        files=("ext/w.bin",),
    ),
    Call("shared-dirs-run", "shared_dirs", "run", {}, BOTH),
    Call(
        "shared-dirs-override", "shared_dirs", "run", {"data": "{root}/ext/shared", "out": "{root}/ext/shared/"}, DOCKER
    ),
    Call("mode-merge-ro-rw", "mode_merge", "ro_rw", {}, DOCKER),
    Call("mode-merge-ro-plain", "mode_merge", "ro_plain", {}, DOCKER),
    Call("mode-merge-plain-inputs", "mode_merge", "plain_inputs", {}, DOCKER),
    Call("mode-merge-output-ro", "mode_merge", "output_ro", {}, DOCKER),
    Call("absolute-defaults-run", "absolute_defaults", "run", {}, BOTH),
    Call("home-and-env-run", "home_and_env", "run", {}, DOCKER, files=("conf/params.yaml",)),
    Call(
        "home-and-env-cli",
        "home_and_env",
        "run",
        {"out": "~/other-out/", "params": "$FEDSIM_CONF_DIR/other.yaml"},
        SING,
        files=("conf/params.yaml", "conf/other.yaml"),
    ),
    Call("omegaconf-interp-run", "omegaconf_interp", "run", {}, BOTH),
    Call(
        "omegaconf-interp-workspace",
        "omegaconf_interp",
        "run",
        {"data": "${runtime.workspace}/cli_data/"},
        DOCKER,
        workspace="{root}/ws_interp",
    ),
    Call("missing-input-dir-run", "missing_input_dir", "run", {}, DOCKER),
    Call("missing-input-dir-override", "missing_input_dir", "run", {"data": "{root}/nowhere/data"}, DOCKER),
    Call("custom-workspace-absolute", "custom_workspace", "run", {}, BOTH, workspace="{root}/ws2"),
    Call(
        "custom-workspace-relative",
        "custom_workspace",
        "run",
        {},
        DOCKER,
        workspace="ws_rel",
        note="MLCube resolves a relative --workspace against the working directory",
    ),
    Call("singularity-section-run", "singularity_section", "run", {}, BOTH),
    Call(
        "fets-singularity-infer",
        "fets_singularity_model",
        "infer",
        {"data_path": f"{MP}/prepared", "output_path": f"{MP}/predictions/fets_sing"},
        SING,
        untrusted=True,
        dirs=("medperf/prepared",),
    ),
)

# fmt: on
PARAMS = [pytest.param(c, p, id=f"{c.id}-{p}") for c in CALLS for p in c.platforms]
DOCKER_PARAMS = [pytest.param(c, id=c.id) for c in CALLS if "docker" in c.platforms and not c.expect_error]


# ----------------------------------------------------------------------------------------------------
# sandboxes and the MLCube side


def subst(value: str, root: Path) -> str:
    return value.replace("{root}", str(root))


def make_sandbox(root: Path, call: Call) -> None:
    """A fresh copy of the cube plus HOME, $FEDSIM_CONF_DIR, a working directory and the call's data."""
    shutil.copytree(CUBES / call.cube, root / "cubes" / call.cube, symlinks=True)
    for sub in ("home", "conf", "cwd"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for d in call.dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d / "item.txt").write_text("x\n")
    for f in call.files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("x\n")


SANDBOX_META = {".calls.jsonl", ".mlcube-settings.yaml", ".mlcube-output.log", ".fedsim-sif"}


def snapshot(root: Path) -> set[str]:
    """Relative paths under the sandbox (folders end with /), without the harness's own files."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel.parts and rel.parts[0] in SANDBOX_META:
            continue
        for d in dirnames:
            out.add(f"{(rel / d).as_posix()}/")
        for f in filenames:
            if not (not rel.parts and f in SANDBOX_META):
                out.add((rel / f).as_posix())
    return out


@dataclasses.dataclass
class MlcubeRun:
    call: Call
    platform: str
    root: Path
    argv: list[str]
    returncode: int
    output: str
    calls: list[dict[str, Any]]
    created: set[str]

    def container_call(self) -> list[str] | None:
        """The recorded argv of the task's container (without the executable), or None."""
        verbs = {"docker": ("run",), "singularity": ("run", "exec")}[self.platform]
        mine = [c["argv"] for c in self.calls if c["tool"] == self.platform]
        found = [argv for argv in mine if argv and argv[0] in verbs]
        return found[-1] if found else None

    def build_call(self) -> list[str] | None:
        found = [c["argv"] for c in self.calls if c["tool"] == self.platform and c["argv"][:1] == ["build"]]
        return found[-1] if found else None

    def describe(self) -> str:
        tail = "\n".join(self.output.strip().splitlines()[-8:])
        return f"$ {shlex.join(self.argv)}\n(exit code {self.returncode}; last output lines:)\n{tail}"


def fake_bin(base: Path) -> Path:
    """A copy of the fakes with their execute bits set (whatever the checkout did to file modes)."""
    out = base / "bin"
    out.mkdir()
    for src in FAKE_BIN.iterdir():
        if src.is_file():
            shutil.copyfile(src, out / src.name)
            (out / src.name).chmod(0o755)
    return out


# ``mlcube run`` spends most of its CPU time importing (click, omegaconf, setuptools' distutils): ~0.4 s a
# call. By default a small server imports MLCube once and forks one child per call, which runs MLCube's
# console entry point (``mlcube.__main__.cli``, what the ``mlcube`` script calls) with its own argv, working
# directory, environment and output file: the same code on the same arguments, minus the import.
# FEDSIM_CONFORMANCE_SPAWN=1 starts ``python -m mlcube`` afresh for every call instead.
FORK_SERVER = r"""
import json, os, sys, traceback
jobs = json.load(sys.stdin)
from mlcube.__main__ import cli
import mlcube_docker.docker_run, mlcube_singularity.singularity_run  # what --platform loads

def child(job):
    code = 1
    try:
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        sys.argv = ["mlcube", *job["args"]]
        try:
            cli.main(args=job["args"], prog_name="mlcube")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)

limit, pending, running, codes = int(sys.argv[1]), list(range(len(jobs))), {}, {}
while pending or running:
    while pending and len(running) < limit:
        i = pending.pop(0)
        pid = os.fork()
        if pid == 0:
            child(jobs[i])
        running[pid] = i
    pid, status = os.wait()
    codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
json.dump([codes[i] for i in range(len(jobs))], sys.stdout)
"""
WORKERS = 4


@dataclasses.dataclass
class Job:
    call: Call
    platform: str
    root: Path
    argv: list[str]  # mlcube's arguments, after the program name
    env: dict[str, str]

    @property
    def log(self) -> Path:
        return self.root / ".mlcube-output.log"


def prepare_job(call: Call, platform: str, base: Path, bin_dir: Path) -> Job:
    root = (base / "mlcube" / f"{call.id}--{platform}").resolve()
    make_sandbox(root, call)
    argv = ["run", f"--mlcube={root / 'cubes' / call.cube}", f"--task={call.task}", f"--platform={platform}"]
    if call.workspace is not None:
        argv.append(f"--workspace={subst(call.workspace, root)}")
    argv += [f"{k}={subst(v, root)}" for k, v in call.args.items()]
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "HOME": str(root / "home"),
        "FEDSIM_CONF_DIR": str(root / "conf"),
        "MLCUBE_SYSTEM_SETTINGS": str(root / ".mlcube-settings.yaml"),
        "FEDSIM_RECORD": str(root / ".calls.jsonl"),
    }
    return Job(call, platform, root, argv, env)


def spawn_all(jobs: list[Job]) -> list[int]:
    def one(job: Job) -> int:
        with open(job.log, "w") as log:
            return subprocess.run(
                [sys.executable, "-m", "mlcube", *job.argv],
                cwd=job.root / "cwd",
                env=job.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=180,
                check=False,
            ).returncode

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(one, jobs))


def fork_all(jobs: list[Job]) -> list[int]:
    payload = [{"args": j.argv, "cwd": str(j.root / "cwd"), "env": j.env, "log": str(j.log)} for j in jobs]
    proc = subprocess.run(
        [sys.executable, "-c", FORK_SERVER, str(WORKERS)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"the MLCube fork server failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", pytrace=False)
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def mlcube_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], MlcubeRun]:
    """Every call of CALLS on each of its platforms, through MLCube's own CLI."""
    check = subprocess.run(
        [sys.executable, "-c", "import mlcube.__main__, mlcube_docker.docker_run, mlcube_singularity.singularity_run"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        pytest.fail(
            "MLCube 0.0.9 with its docker and singularity runners must be importable for the conformance suite "
            "(pip install -e '.[test]'; mlcube-singularity 0.0.9 needs spython==0.2.1):\n" + check.stderr[-2000:],
            pytrace=False,
        )
    base = tmp_path_factory.mktemp("mlcube-conformance")
    bin_dir = fake_bin(base)
    jobs = [prepare_job(c, p, base, bin_dir) for c in CALLS for p in c.platforms]
    before = {j.root: snapshot(j.root) for j in jobs}
    codes = spawn_all(jobs) if os.environ.get("FEDSIM_CONFORMANCE_SPAWN") == "1" else fork_all(jobs)
    runs = {}
    for job, code in zip(jobs, codes, strict=True):
        record = job.root / ".calls.jsonl"
        calls = [json.loads(line) for line in record.read_text().splitlines()] if record.is_file() else []
        runs[(job.call.id, job.platform)] = MlcubeRun(
            job.call,
            job.platform,
            job.root,
            ["mlcube", *job.argv],
            code,
            job.log.read_text(errors="replace") if job.log.is_file() else "",
            calls,
            snapshot(job.root) - before[job.root],
        )
    return runs


# ----------------------------------------------------------------------------------------------------
# the fedsim side


@dataclasses.dataclass
class FedsimSide:
    root: Path
    argv: list[str] | None = None
    error: BaseException | None = None
    invocation: Any = None
    cube: Any = None
    before: set[str] = dataclasses.field(default_factory=set)


def fedsim_cube(cube_dir: Path, workspace: str | None) -> Any:
    """``load_cube``, with the custom workspace given the way ``mlcube run --workspace`` takes it."""
    if workspace is None:
        return load_cube(cube_dir)
    if "workspace" in inspect.signature(load_cube).parameters:
        return load_cube(cube_dir, workspace=workspace)  # type: ignore[call-arg]
    return load_cube(cube_dir).model_copy(update={"workspace": Path(workspace)})


def fedsim_invocation(call: Call, root: Path) -> tuple[Any, Any]:
    cube = fedsim_cube(root / "cubes" / call.cube, subst(call.workspace, root) if call.workspace else None)
    overrides = {k: subst(v, root) for k, v in call.args.items()}
    isolation = Isolation(**UNTRUSTED_ISOLATION) if call.untrusted else Isolation()
    return cube, bind(cube, call.task, overrides, isolation=isolation)


def fedsim_side(
    call: Call, platform: str, base: Path, bin_dir: Path, monkeypatch: pytest.MonkeyPatch, *, kind: str = "cmd"
) -> FedsimSide:
    """fedsim's command for ``call`` in a sandbox of its own, with the same HOME, variables and cwd."""
    root = (base / f"fedsim-{kind}" / f"{call.id}--{platform}").resolve()
    if root.exists():
        shutil.rmtree(root)
    make_sandbox(root, call)
    monkeypatch.setenv("HOME", str(root / "home"))
    monkeypatch.setenv("FEDSIM_CONF_DIR", str(root / "conf"))
    monkeypatch.chdir(root / "cwd")
    side = FedsimSide(root, before=snapshot(root))  # binding may already copy inputs (custom workspace)
    try:
        side.cube, side.invocation = fedsim_invocation(call, root)
        if kind != "cmd":
            return side
        if platform == "docker":
            image = side.cube.docker.image if side.cube.docker else "<no docker image>"
            side.argv = docker_argv(container_config(side.invocation, image, (os.getuid(), os.getgid())))
        else:
            runtime = SingularityRuntime(binary=str(bin_dir / "singularity"), cache_dir=root / ".fedsim-sif")
            side.argv = runtime.argv(side.invocation)
    except Exception as exc:  # refusals are compared with MLCube's below; anything else is reported
        side.error = exc
    return side


@pytest.fixture(scope="session")
def fedsim_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("fedsim-conformance")
    return base, fake_bin(base)


# ----------------------------------------------------------------------------------------------------
# normalisers


def norm_host(path: str, roots: Iterable[Path]) -> str:
    """A host path resolved through symlinks, relative to the sandbox root when inside it."""
    real = os.path.realpath(os.path.expanduser(path))
    for root in roots:
        r = os.path.realpath(root)
        if real == r or real.startswith(r + os.sep):
            return ROOT_MARK + real[len(r) :]
    return real


DOCKER_SHORT = {
    "-e": "--env",
    "-v": "--volume",
    "-u": "--user",
    "-w": "--workdir",
    "-m": "--memory",
    "-p": "--publish",
    "-l": "--label",
    "-h": "--hostname",
    "-d": "--detach",
    "-i": "--interactive",
    "-t": "--tty",
    "-P": "--publish-all",
    "-c": "--cpu-shares",
    "-a": "--attach",
}
DOCKER_ALIASES = {"--net": "--network"}
DOCKER_FLAGS = {
    "--rm",
    "--init",
    "--read-only",
    "--privileged",
    "--detach",
    "--interactive",
    "--tty",
    "--no-healthcheck",
    "--oom-kill-disable",
    "--publish-all",
    "--disable-content-trust",
    "--help",
    "--force-rm",
    "--no-cache",
    "--pull",
    "--quiet",
    "--squash",
    "--compress",
}
SING_SHORT = {
    "-C": "--containall",
    "-c": "--contain",
    "-e": "--cleanenv",
    "-B": "--bind",
    "-H": "--home",
    "-W": "--workdir",
    "-u": "--userns",
    "-i": "--ipc",
    "-p": "--pid",
    "-S": "--scratch",
    "-o": "--overlay",
}
SING_FLAGS = {
    "--containall",
    "--contain",
    "--cleanenv",
    "--writable-tmpfs",
    "--writable",
    "--nv",
    "--nvccli",
    "--rocm",
    "--net",
    "--userns",
    "--no-home",
    "--no-init",
    "--fakeroot",
    "--compat",
    "--no-privs",
    "--keep-privs",
    "--allow-setuid",
    "--pid",
    "--ipc",
    "--uts",
    "--no-umask",
    "--no-eval",
    "--nohttps",
    "--no-https",
    "--disable-cache",
    "--boot",
    "--unsquash",
}


def parse_options(
    argv: list[str],
    short: dict[str, str],
    aliases: dict[str, str],
    flags: set[str],
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Split ``argv`` into (canonical option name, value) pairs and the positional rest."""
    options: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        tok = argv[i]
        if tok == "--":
            i += 1
            break
        if tok.startswith("--"):
            name, eq, val = tok.partition("=")
            name = aliases.get(name, name)
            if name in flags:
                value = None if (not eq or val in ("", "true")) else val
            elif eq:
                value = val
            else:
                i += 1
                value = argv[i] if i < len(argv) else None
            options.append((name, value))
        elif all(f"-{c}" in short and short[f"-{c}"] in flags for c in tok[1:]):
            options += [(short[f"-{c}"], None) for c in tok[1:]]  # clustered flags: -it
        else:
            name = short.get(tok[:2], tok[:2])
            rest = tok[2:]
            if name in flags:
                value = None
            elif rest:
                value = rest[1:] if rest.startswith("=") else rest
            else:
                i += 1
                value = argv[i] if i < len(argv) else None
            options.append((name, value))
        i += 1
    return options, argv[i:]


def split_mount(spec: str) -> tuple[str, str, str]:
    """``host[:container[:mode]]``, read from the right so that a stray ':' stays in the host path."""
    parts = spec.split(":")
    if len(parts) >= 3 and parts[-2].startswith("/") and not parts[-1].startswith("/"):
        return ":".join(parts[:-2]), parts[-2], parts[-1] or "rw"
    if len(parts) >= 2 and parts[-1].startswith("/"):
        return ":".join(parts[:-1]), parts[-1], "rw"
    return spec, spec, "rw"


def normalise_docker(argv: list[str], roots: Iterable[Path]) -> dict[str, Any]:
    """``docker run`` argv (without the executable) -> {image, entrypoint, command, volumes, env, options}."""
    roots = list(roots)
    assert argv[:1] == ["run"], argv
    options, rest = parse_options(argv[1:], DOCKER_SHORT, DOCKER_ALIASES, DOCKER_FLAGS)
    volumes, env, others, entrypoint = [], {}, [], None
    for name, value in options:
        if name == "--volume" and value is not None:
            host, target, mode = split_mount(value)
            volumes.append((norm_host(host, roots), target, mode))
        elif name == "--mount" and value is not None:
            fields = dict(f.partition("=")[::2] for f in value.split(","))
            ro = "readonly" in value.split(",") or fields.get("readonly") in ("true", "1")
            volumes.append(
                (
                    norm_host(fields.get("source", fields.get("src", "")), roots),
                    fields.get("target", fields.get("dst", fields.get("destination", ""))),
                    "ro" if ro else "rw",
                )
            )
        elif name == "--env" and value is not None:
            key, eq, val = value.partition("=")
            env[key] = val if eq else None
        elif name == "--entrypoint":
            entrypoint = value
        elif name == "--ulimit" and value is not None and "=" in value and ":" not in value:
            limit, _, soft = value.partition("=")
            others.append((name, f"{limit}={soft}:{soft}"))  # docker: a hard limit defaults to the soft one
        else:
            others.append((name, value))
    return {
        "image": rest[0] if rest else None,
        "entrypoint": entrypoint,
        "command": rest[1:],
        "volumes": sorted(volumes),
        "env": env,
        "options": sorted(others, key=lambda o: (o[0], o[1] or "")),
    }


def docker_ref(ref: str) -> str:
    name = ref.rsplit("/", 1)[-1]
    return ref if (":" in name or "@" in name) else f"{ref}:latest"


def sif_identity(image: str, roots: Iterable[Path], build: list[str] | None) -> tuple[str, str]:
    """("docker image", REF) for a SIF converted from a docker image, else ("sif", normalised path)."""
    for scheme in ("docker-daemon://", "docker://"):
        if image.startswith(scheme):
            return ("docker image", docker_ref(image[len(scheme) :]))
    if build is not None:
        _opts, positional = parse_options(build[1:], SING_SHORT, {}, SING_FLAGS)
        if len(positional) >= 2 and os.path.realpath(positional[0]) == os.path.realpath(image):
            source = positional[1]
            for scheme in ("docker-daemon://", "docker://"):
                if source.startswith(scheme):
                    return ("docker image", docker_ref(source[len(scheme) :]))
    return ("sif", norm_host(image, roots))


def normalise_singularity(argv: list[str], roots: Iterable[Path], build: list[str] | None = None) -> dict[str, Any]:
    """``singularity run|exec`` argv (without the executable) -> {subcommand, image, binds, command, env, options}."""
    roots = list(roots)
    options, rest = parse_options(argv[1:], SING_SHORT, {}, SING_FLAGS)
    binds, env, others = [], {}, []
    for name, value in options:
        if name == "--bind" and value is not None:
            for spec in value.split(","):
                host, target, mode = split_mount(spec)
                binds.append((norm_host(host, roots), target, mode))
        elif name == "--env" and value is not None:
            for item in next(csv.reader([value])):
                key, eq, val = item.partition("=")
                env[key] = val if eq else None
        else:
            others.append((name, value))
    return {
        "subcommand": argv[0] if argv else None,
        "image": sif_identity(rest[0], roots, build) if rest else None,
        "command": rest[1:],
        "volumes": sorted(binds),
        "env": env,
        "options": sorted(others, key=lambda o: (o[0], o[1] or "")),
    }


def hardening_reason(platform: str, option: tuple[str, str | None]) -> str | None:
    name, value = option
    for (flag, pattern), why in HARDENING_FLAGS[platform].items():
        if flag != name:
            continue
        if pattern is None and value is None:
            return why
        if pattern is not None and value is not None and fnmatch.fnmatchcase(value, pattern):
            return why
    return None


def output_folders(invocation: Any, roots: list[Path]) -> set[str] | None:
    """Normalised host folders that hold an output of fedsim's invocation (a file output: its folder)."""
    try:
        return {
            norm_host(str(p.host_path if p.type == "directory" else p.host_path.parent), roots)
            for p in invocation.parameters
            if p.io == "output"
        }
    except AttributeError:  # the invocation's shape changed: fall back to reading the command
        return None


def input_only_targets(command: list[str], inputs: set[str]) -> set[str]:
    """Container mount points that only input parameters use, read from ``--name=/mlcube_ioN[/file]``."""
    users: dict[str, set[str]] = {}
    for arg in command:
        if not arg.startswith("--") or "=" not in arg:
            continue
        name, _, value = arg[2:].partition("=")
        if value.startswith("/mlcube_io"):
            point = "/".join(value.split("/")[:2])
            users.setdefault(point, set()).add(name)
    return {point for point, names in users.items() if names <= inputs}


def drop_hardening(
    platform: str,
    ours: dict[str, Any],
    theirs: dict[str, Any],
    call: Call,
    outputs: set[str] | None = None,
    inputs: Iterable[str] = (),
) -> list[str]:
    """Remove from fedsim's structure (``ours``) what HARDENING_FLAGS allow; returns what was removed.

    For an untrusted call, a read-only fedsim mount that MLCube mounts read-write is accepted when no output
    lives in it: ``outputs`` are the host folders of outputs (else the command's ``--name=`` arguments and
    the task's ``inputs`` tell which mount points only inputs use).
    """
    dropped: list[str] = []
    kept = []
    for side in (ours, theirs):
        if any(o[0] == DEVICE_ASSIGNMENT for o in side["options"]):
            side["options"] = [o for o in side["options"] if o[0] != DEVICE_ASSIGNMENT]
            dropped.append(f"{DEVICE_ASSIGNMENT} (GPUs assigned by fedsim)")
    for key, why in HARDENING_ENV.items():
        if key in ours.get("env", {}) and key not in theirs.get("env", {}):
            del ours["env"][key]
            dropped.append(f"env {key} ({why})")
    if call.untrusted:
        for opt in [o for o in theirs["options"] if o[0] in UNTRUSTED_DROPPED and o not in ours["options"]]:
            theirs["options"].remove(opt)
            dropped.append(f"{opt[0]} left out for a submission ({UNTRUSTED_DROPPED[opt[0]]})")
    for opt in ours["options"]:
        why = hardening_reason(platform, opt)
        if why is not None and opt not in theirs["options"]:
            dropped.append(f"{opt[0]}{'' if opt[1] is None else '=' + opt[1]} ({why})")
        else:
            kept.append(opt)
    ours["options"] = kept
    if call.untrusted and UNTRUSTED_READ_ONLY_INPUTS:
        only_inputs = input_only_targets(ours["command"], set(inputs))
        volumes = []
        for host, target, mode in ours["volumes"]:
            input_only = host not in outputs if outputs is not None else target in only_inputs
            if mode == "ro" and input_only and (host, target, "rw") in theirs["volumes"]:
                dropped.append(f"{target} read-only (input-only mount of an untrusted cube)")
                mode = "rw"
            volumes.append((host, target, mode))
        ours["volumes"] = sorted(volumes)
    return dropped


def task_inputs(cube_dir: Path, task: str) -> set[str]:
    data = yaml.safe_load((cube_dir / "mlcube.yaml").read_text())
    params = ((data.get("tasks") or {}).get(task) or {}).get("parameters") or {}
    return set(params.get("inputs") or {})


def difference(mlcube: dict[str, Any], fedsim: dict[str, Any]) -> list[str]:
    lines = []
    for key in mlcube:
        a, b = mlcube[key], fedsim.get(key)
        if a == b:
            continue
        if key in ("volumes", "options"):
            only_m = [x for x in a if x not in b]
            only_f = [x for x in b if x not in a]
            if only_m:
                lines.append(f"  {key} only in MLCube: {only_m}")
            if only_f:
                lines.append(f"  {key} only in fedsim: {only_f}")
        elif key == "env":
            only_m = {k: v for k, v in a.items() if b.get(k, object()) != v}
            only_f = {k: v for k, v in b.items() if a.get(k, object()) != v}
            lines.append(f"  env: MLCube has {only_m or '{}'}, fedsim has {only_f or '{}'}")
        else:
            lines.append(f"  {key}:\n    MLCube: {a!r}\n    fedsim: {b!r}")
    return lines


def shown(command: str, root: Path) -> str:
    """A command line for a failure message, with the sandbox root written as <ROOT>."""
    fake = str(root.parent.parent / "bin") + os.sep
    return command.replace(fake, "").replace(str(root), ROOT_MARK)


def label(call: Call, platform: str) -> str:
    trust = "untrusted" if call.untrusted else "trusted"
    args = " ".join(f"{k}={v}" for k, v in call.args.items())
    ws = f" --workspace={call.workspace}" if call.workspace else ""
    note = f" [{call.note}]" if call.note else ""
    return f"{call.id} (cube {call.cube}, task {call.task}, {platform}, {trust}{ws}{' ' + args if args else ''}){note}"


# ----------------------------------------------------------------------------------------------------
# the tests


@pytest.mark.parametrize(("call", "platform"), PARAMS)
def test_fedsim_runs_the_command_mlcube_runs(
    call: Call, platform: str, mlcube_runs: dict, fedsim_base: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    run: MlcubeRun = mlcube_runs[(call.id, platform)]
    side = fedsim_side(call, platform, *fedsim_base, monkeypatch)
    recorded = run.container_call()

    if call.expect_error:
        assert run.returncode != 0 and recorded is None, (
            f"corpus error: MLCube was expected to refuse {label(call, platform)} but ran it:\n{run.describe()}"
        )
        if side.error is None:
            pytest.fail(
                f"MLCube refuses {label(call, platform)}, fedsim runs it:\n"
                f"  $ {shown(shlex.join(side.argv or []), side.root)}\nMLCube said:\n{run.describe()}",
                pytrace=False,
            )
        assert isinstance(side.error, FedsimError), (
            f"fedsim refuses {label(call, platform)} as MLCube does, but with {type(side.error).__name__} "
            f"instead of one of its own errors (SpecError): {side.error}"
        )
        return

    assert run.returncode == 0 and recorded is not None, (
        f"harness or corpus error: MLCube did not run {label(call, platform)}:\n{run.describe()}"
    )
    mlcube_cmd = shown(f"{platform} {shlex.join(recorded)}", run.root)
    if side.error is not None:
        pytest.fail(
            f"fedsim refuses a call MLCube runs: {label(call, platform)}\n"
            f"  fedsim: {type(side.error).__name__}: {shown(str(side.error), side.root)}\n  MLCube ran: {mlcube_cmd}",
            pytrace=False,
        )
    assert side.argv is not None
    if platform == "docker":
        theirs = normalise_docker(recorded, [run.root])
        ours = normalise_docker(side.argv[1:], [side.root])
    else:
        theirs = normalise_singularity(recorded, [run.root], run.build_call())
        ours = normalise_singularity(side.argv[1:], [side.root])
    dropped = drop_hardening(
        platform,
        ours,
        theirs,
        call,
        output_folders(side.invocation, [side.root]),
        task_inputs(run.root / "cubes" / call.cube, call.task),
    )
    lines = difference(theirs, ours)
    if lines:
        pytest.fail(
            f"fedsim's {platform} command differs from MLCube's for {label(call, platform)}:\n"
            + "\n".join(lines)
            + f"\n  (dropped from fedsim's side as hardening: {', '.join(dropped) or 'nothing'})"
            + f"\n  MLCube ran:  {mlcube_cmd}\n  fedsim runs: {shown(shlex.join(side.argv), side.root)}",
            pytrace=False,
        )


def workspace_folder(call: Call) -> str:
    """The call's workspace as a snapshot entry. MLCube creates it on every run (``sync_workspace``), even
    when no parameter uses it; an unused empty folder is no difference worth reporting, so it is ignored."""
    if call.workspace is None:
        return f"cubes/{call.cube}/workspace/"
    if call.workspace.startswith("{root}/"):
        return call.workspace.removeprefix("{root}/") + "/"
    return f"cwd/{call.workspace}/"  # MLCube resolves a relative --workspace against the working directory


@pytest.mark.parametrize("call", DOCKER_PARAMS)
def test_fedsim_creates_the_host_folders_mlcube_creates(
    call: Call, mlcube_runs: dict, fedsim_base: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the container starts: MLCube creates every directory parameter's folder (inputs too) and every
    file parameter's parent, and copies inputs into a custom workspace; fedsim must leave the same tree."""
    run: MlcubeRun = mlcube_runs[(call.id, "docker")]
    assert run.returncode == 0, (
        f"harness or corpus error: MLCube did not run {label(call, 'docker')}:\n{run.describe()}"
    )
    side = fedsim_side(call, "docker", *fedsim_base, monkeypatch, kind="fs")
    if side.error is not None:
        pytest.fail(
            f"fedsim refuses a call MLCube runs: {label(call, 'docker')}\n  fedsim: "
            f"{type(side.error).__name__}: {shown(str(side.error), side.root)}",
            pytrace=False,
        )
    before = side.before
    side.invocation.create_directories()
    created = snapshot(side.root) - before
    mlcube_created = run.created - {workspace_folder(call)}
    created -= {workspace_folder(call)}
    if created != mlcube_created:
        pytest.fail(
            f"host folders and files created before the run differ for {label(call, 'docker')}:\n"
            f"  only MLCube creates: {sorted(mlcube_created - created)}\n"
            f"  only fedsim creates: {sorted(created - mlcube_created)}",
            pytrace=False,
        )


class _RecordingApi:
    def __init__(self) -> None:
        self.builds: list[dict[str, Any]] = []

    def build(self, **kwargs: Any) -> Iterable[dict[str, str]]:
        self.builds.append(kwargs)
        return iter([{"stream": "Successfully built 0123456789ab\n"}])


class _Image:
    id = "sha256:0123456789ab"
    labels: dict[str, str] = {}  # noqa: RUF012


class _Images:
    def get(self, tag: str) -> _Image:
        return _Image()

    def pull(self, tag: str, *args: Any, **kwargs: Any) -> _Image:
        return _Image()


class RecordingDockerClient:
    """Just enough of docker-py's client for ``ImageBuilder``: images exist, builds are recorded."""

    def __init__(self) -> None:
        self.api = _RecordingApi()
        self.images = _Images()


def normalise_build_cli(argv: list[str], roots: list[Path]) -> dict[str, Any]:
    options, rest = parse_options(argv[1:], {"-t": "--tag", "-f": "--file"}, {}, DOCKER_FLAGS)
    build_args, others, tag, dockerfile = {}, [], None, None
    for name, value in options:
        if name == "--build-arg" and value is not None:
            key, _, val = value.partition("=")
            build_args[key] = val
        elif name == "--tag":
            tag = value
        elif name == "--file":
            dockerfile = norm_host(value or "", roots)
        else:
            others.append((name, value))
    context = norm_host(rest[0], roots) if rest else None
    return {
        "tag": tag,
        "dockerfile": dockerfile,
        "context": context,
        "build_args": build_args,
        "options": sorted(others, key=lambda o: (o[0], o[1] or "")),
    }


def normalise_build_sdk(kwargs: dict[str, Any], roots: list[Path]) -> dict[str, Any]:
    """docker-py ``api.build`` keyword arguments in the terms of the ``docker build`` command line."""
    context = str(kwargs.get("path"))
    others: list[tuple[str, str | None]] = []
    others += [("--label", f"{k}={v}") for k, v in (kwargs.get("labels") or {}).items()]
    if kwargs.get("forcerm"):
        others.append(("--force-rm", None))
    if kwargs.get("rm") is False:
        others.append(("--rm", "false"))  # the CLI's default is --rm=true
    if kwargs.get("nocache"):
        others.append(("--no-cache", None))
    if kwargs.get("pull"):
        others.append(("--pull", None))
    return {
        "tag": kwargs.get("tag"),
        "dockerfile": norm_host(os.path.join(context, kwargs.get("dockerfile") or "Dockerfile"), roots),
        "context": norm_host(context, roots),
        "build_args": dict(kwargs.get("buildargs") or {}),
        "options": sorted(others, key=lambda o: (o[0], o[1] or "")),
    }


BUILD_PARAMS = [
    pytest.param(c, id=c.id)
    for c in CALLS
    if "docker" in c.platforms and (CUBES / c.cube / "mlcube.yaml").read_text().find("build_strategy: always") >= 0
]


@pytest.mark.parametrize("call", BUILD_PARAMS)
def test_fedsim_builds_the_image_mlcube_builds(
    call: Call, mlcube_runs: dict, fedsim_base: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedsim.runtimes.images import ImageBuilder

    run: MlcubeRun = mlcube_runs[(call.id, "docker")]
    recorded = run.build_call()
    assert recorded is not None, f"corpus error: MLCube built nothing for {label(call, 'docker')}:\n{run.describe()}"
    side = fedsim_side(call, "docker", *fedsim_base, monkeypatch, kind="build")
    mlcube_cmd = shown(f"docker {shlex.join(recorded)}", run.root)
    if side.error is not None:
        pytest.fail(
            f"fedsim refuses a cube MLCube builds: {label(call, 'docker')}\n  fedsim: "
            f"{type(side.error).__name__}: {shown(str(side.error), side.root)}\n  MLCube ran: {mlcube_cmd}",
            pytrace=False,
        )
    client = RecordingDockerClient()
    ImageBuilder(client).ensure(side.cube, None)
    assert len(client.api.builds) == 1, f"fedsim built {len(client.api.builds)} images for {call.id}"
    theirs = normalise_build_cli(recorded, [run.root])
    ours = normalise_build_sdk(client.api.builds[0], [side.root])
    dropped = drop_hardening("docker", ours, theirs, dataclasses.replace(call, untrusted=False))
    lines = difference(theirs, ours)
    if lines:
        pytest.fail(
            f"fedsim's image build differs from MLCube's for {label(call, 'docker')}:\n"
            + "\n".join(lines)
            + f"\n  (dropped from fedsim's side as hardening: {', '.join(dropped) or 'nothing'})"
            + f"\n  MLCube ran: {mlcube_cmd}\n  fedsim: api.build({shown(repr(client.api.builds[0]), side.root)})",
            pytrace=False,
        )


def test_the_corpus_is_large_and_used() -> None:
    cubes = sorted(p.parent.name for p in CUBES.glob("*/mlcube.yaml"))
    used = {c.cube for c in CALLS}
    assert len(cubes) >= 25, cubes
    assert len(CALLS) >= 40, len(CALLS)
    assert sorted(used) == cubes, f"cubes without a call: {sorted(set(cubes) - used)}"
    assert len({c.id for c in CALLS}) == len(CALLS), "duplicate call ids"


def test_mlcube_ran_each_call_once(mlcube_runs: dict) -> None:
    """The fakes kept MLCube on its straight path: one container call per run, no pull, at most one build."""
    problems = []
    for (cid, platform), run in sorted(mlcube_runs.items()):
        if run.call.expect_error:
            continue
        verbs = [c["argv"][0] for c in run.calls if c["tool"] == platform and c["argv"]]
        containers = [v for v in verbs if v in ("run", "exec")]
        if len(containers) != 1 or "pull" in verbs or verbs.count("build") > 1:
            problems.append(f"{cid}-{platform}: {verbs} (exit {run.returncode})")
    assert not problems, "\n".join(problems)


def test_hardening_flags_are_documented() -> None:
    for platform, flags in HARDENING_FLAGS.items():
        for (flag, _pattern), why in flags.items():
            assert flag.startswith("--") and why.strip(), (platform, flag)


def test_the_normalisers_accept_equivalent_spellings_and_drop_only_hardening() -> None:
    """The comparison itself: spellings docker and singularity treat alike normalise alike, and only the
    HARDENING_FLAGS leave fedsim's side."""
    root = Path("/sandbox")
    mlcube = shlex.split("run --gpus all -e A=1 --volume /sandbox/d:/mlcube_io0 img:1 t --p=/mlcube_io0")
    fedsim = shlex.split(
        "run --rm --init --user=1:1 --network=none --gpus=device=GPU-1 --env=A=1 --env=PYTHONUNBUFFERED=1 "
        "--volume=/sandbox/d:/mlcube_io0:rw --shm-size=1g img:1 t --p=/mlcube_io0"
    )
    theirs, ours = normalise_docker(mlcube, [root]), normalise_docker(fedsim, [root])
    call = Call("self-test", "param_forms", "run", untrusted=True)
    dropped = drop_hardening("docker", ours, theirs, call, outputs=set())
    assert sorted(d.split(" ")[0] for d in dropped) == [
        "--gpus",
        "--gpus",
        "--init",
        "--network=none",
        "--rm",
        "--user=1:1",
        "env",
    ]
    assert difference(theirs, ours) == ["  options only in fedsim: [('--shm-size', '1g')]"]
    assert theirs["volumes"] == [("<ROOT>/d", "/mlcube_io0", "rw")]

    untrusted_ro = normalise_docker(["run", "--volume=/sandbox/d:/mlcube_io0:ro", "img:1"], [root])
    plain = normalise_docker(["run", "--volume", "/sandbox/d:/mlcube_io0", "img:1"], [root])
    drop_hardening("docker", untrusted_ro, plain, call, outputs=set())
    assert difference(plain, untrusted_ro) == []  # read-only inputs: accepted for untrusted calls only
    trusted_ro = normalise_docker(["run", "--volume=/sandbox/d:/mlcube_io0:ro", "img:1"], [root])
    drop_hardening("docker", trusted_ro, plain, dataclasses.replace(call, untrusted=False), outputs=set())
    assert difference(plain, trusted_ro) != []

    s_mlcube = ["run", "-C", "-B", "/sandbox/a:/mlcube_io0,/sandbox/b:/mlcube_io1:ro", "/sandbox/x.sif", "t"]
    s_fedsim = shlex.split(
        "run --containall --bind /sandbox/b:/mlcube_io1:ro --bind /sandbox/a:/mlcube_io0 /sandbox/x.sif t"
    )
    assert difference(normalise_singularity(s_mlcube, [root]), normalise_singularity(s_fedsim, [root])) == []
    built = ["build", "--fakeroot", "/sandbox/ws/.image/img1.sif", "docker://img:1"]
    assert normalise_singularity(["run", "/sandbox/ws/.image/img1.sif"], [root], built)["image"] == (
        "docker image",
        "img:1",
    )
    assert normalise_singularity(["run", "docker-daemon://img:1"], [root])["image"] == ("docker image", "img:1")
