"""Each diagnosis rule fires on the evidence it claims, and only on it (fedsim.jobs.diagnose).

A row is (log, phrases the hint must contain) — or None where no rule may claim the log — plus phrases the
hint must not contain. Logs are real messages of Python, coreutils, dash/bash and the dynamic loader.
"""

from __future__ import annotations

import pytest

from fedsim.cube import Isolation
from fedsim.jobs.diagnose import EACCES, ENOENT, EXEC, READ, WRITE, explain_failure, file_errors

FIDELITY = Isolation(untrusted=True, singularity_fidelity=True)
WORKDIR = "relies on the image's WORKDIR"
ENTRYPOINT = "absolute path in ENTRYPOINT/CMD"
GPU = "needs a GPU driver"
OUTSIDE = "outside output_path"
ROOT_ONLY = "readable only by root"


def tb(*frames: str, error: str) -> str:
    """A Python traceback: (file line, source line) frames, then the error; indented as Python prints it."""
    body = "".join(f'  File "{f}", line 1, in f\n    {code}\n' for f, code in (fr.split(" :: ") for fr in frames))
    return f"Traceback (most recent call last):\n{body}{error}\n"


LIBCUDA = "libcuda.so.1: cannot open shared object file: No such file or directory"

# name -> (log, phrases that must be in the hint, or None for no hint; phrases that must not be)
CASES: dict[str, tuple[str, list[str] | None, list[str]]] = {
    # ---- relative path / WORKDIR
    "relative open": (
        tb(
            "/app/mlcube.py :: with open('model.txt') as fh:",
            error="FileNotFoundError: [Errno 2] No such file or directory: 'model.txt'",
        ),
        ["'model.txt' by a relative path", WORKDIR, "use absolute paths"],
        [],
    ),
    "relative open, nested directory": (
        "OSError: [Errno 2] No such file or directory: 'weights/fold0/model.pth'",
        ["'weights/fold0/model.pth'", WORKDIR],
        [],
    ),
    "relative open, nibabel": (
        "FileNotFoundError: No such file or no access: 'atlas/sri24.nii.gz'",
        ["'atlas/sri24.nii.gz'", WORKDIR],
        [],
    ),
    "relative open, coreutils": ("cat: model.txt: No such file or directory", ["'model.txt'", WORKDIR], []),
    "relative open, ls": ("ls: cannot access 'weights': No such file or directory", ["'weights'", WORKDIR], []),
    "relative open, dash redirect": ("sh: 1: cannot open params.yaml: No such file", ["'params.yaml'", WORKDIR], []),
    "relative open, ANSI colours": (
        "\x1b[31mFileNotFoundError\x1b[0m: [Errno 2] No such file or directory: \x1b[1m'model.txt'\x1b[0m",
        ["'model.txt'", WORKDIR],
        [],
    ),
    "relative entrypoint, cwd /": (
        "python3: can't open file '//mlcube.py': [Errno 2] No such file or directory",
        ["entrypoint", "WORKDIR", ENTRYPOINT],
        [],
    ),
    "relative entrypoint": (
        "python: can't open file 'mlcube.py': [Errno 2] No such file or directory",
        ["'mlcube.py'", ENTRYPOINT],
        [],
    ),
    "relative script run by sh": ("/bin/sh: 1: ./run.sh: not found", ["'./run.sh'", "WORKDIR", ENTRYPOINT], []),
    "relative script run by bash": (
        "/entrypoint.sh: line 3: ./predict.sh: No such file or directory",
        ["'./predict.sh'", "WORKDIR"],
        [],
    ),
    "not relative: libcuda (dynamic loader)": (LIBCUDA, [GPU], ["WORKDIR", "'file'"]),
    "not relative: ImportError from the loader": (
        "ImportError: libGL.so.1: cannot open shared object file: No such file or directory",
        ["needs libGL.so.1, which is not in the image"],
        ["WORKDIR"],
    ),
    "not relative: missing input": (
        "FileNotFoundError: [Errno 2] No such file or directory: '/mlcube_io0/case/case_brain_t1.nii.gz'",
        None,
        [],
    ),
    "not relative: absolute path in the image": (
        "FileNotFoundError: [Errno 2] No such file or directory: '/app/model.txt'",
        None,
        [],
    ),
    "not relative: absolute entrypoint script": (
        "python3: can't open file '/opt/app/mlcube.py': [Errno 2] No such file or directory",
        None,
        [],
    ),
    "not relative: a command missing from PATH": ("sh: 1: nnUNet_predict: not found", None, []),
    "not relative: bash command not found": ("bash: line 1: nvidia-smi: command not found", None, []),
    # ---- HOME
    "HOME: cache under the missing HOME": (
        "OSError: [Errno 30] Read-only file system: '/home/fedsim-nohome/.cache'",
        ["/home/fedsim-nohome/.cache under HOME", "XDG_CACHE_HOME"],
        [],
    ),
    "HOME: mkdir": (
        "mkdir: cannot create directory \u2018/home/fedsim-nohome\u2019: Permission denied",
        ["under HOME"],
        [],
    ),
    "not HOME: reading there": ("PermissionError: [Errno 13] Permission denied: '/home/fedsim-nohome/x'", None, []),
    # ---- no space left
    "no space: bare errno": ("[Errno 28] No space left on device", ["wrote outside output_path: no space left"], []),
    "no space: scratch in /tmp": (
        tb(
            "/mlcube_project/mlcube.py :: fh.write(chunk)",
            error="OSError: [Errno 28] No space left on device: '/tmp/scratch.bin'",
        ),
        ["no space left", "64 MiB", "output_path only"],
        [],
    ),
    "no space: dd": ("dd: error writing '/tmp/x.bin': No space left on device", ["no space left"], []),
    "no space: cat write error": ("cat: write error: No space left on device", ["no space left"], []),
    "no space: quota": ("OSError: [Errno 122] Disk quota exceeded", ["no space left"], []),
    "not no space: output_path on a full disk": (
        "OSError: [Errno 28] No space left on device: '/mlcube_io1/case.nii.gz'",
        None,
        [],
    ),
    "not no space: torch shared memory": (
        "RuntimeError: unable to write to file </torch_18_2071531829_0>: No space left on device (28)",
        ["DataLoader", "shared memory", "num_workers=0"],
        ["wrote outside output_path"],
    ),
    # ---- writes outside output_path (read-only, or denied writes)
    "read-only image": (
        "OSError: [Errno 30] Read-only file system: '/app/cache'",
        ["wrote to /app/cache, outside output_path", "read-only under singularity"],
        [],
    ),
    "read-only input": (
        "OSError: [Errno 30] Read-only file system: '/mlcube_io0/tmp.nii.gz'",
        ["read-only input (/mlcube_io0/tmp.nii.gz)"],
        [],
    ),
    "read-only, relative scratch dir": (
        tb(
            '/app/mlcube.py :: os.makedirs("scratch", exist_ok=True)',
            "<frozen os> :: mkdir(name, mode)",
            error="OSError: [Errno 30] Read-only file system: 'scratch'",
        ),
        ["wrote to scratch, outside output_path"],
        [],
    ),
    "read-only, touch": ("touch: cannot touch '/root/.cache': Read-only file system", ["/root/.cache", OUTSIDE], []),
    "denied write: makedirs": (
        tb(
            "/app/mlcube.py :: os.makedirs('/opt/cache')",
            "<frozen os> :: mkdir(name, mode)",
            error="PermissionError: [Errno 13] Permission denied: '/opt/cache'",
        ),
        ["wrote to /opt/cache, outside output_path", "permission denied"],
        [ROOT_ONLY],
    ),
    "denied write: pathlib write_text": (
        tb(
            "/app/mlcube.py :: Path('/app/done.txt').write_text('ok')",
            "/usr/lib/python3.11/pathlib.py :: with self.open(mode='w', encoding=encoding) as f:",
            "/usr/lib/python3.11/pathlib.py :: return io.open(self, mode, buffering, encoding, errors, newline)",
            error="PermissionError: [Errno 13] Permission denied: '/app/done.txt'",
        ),
        ["wrote to /app/done.txt"],
        [ROOT_ONLY],
    ),
    "denied write: open for writing": (
        tb(
            "/app/mlcube.py :: with open('/app/log.txt', 'a') as fh:",
            error="PermissionError: [Errno 13] Permission denied: '/app/log.txt'",
        ),
        ["wrote to /app/log.txt"],
        [ROOT_ONLY],
    ),
    "denied write: tee": ("tee: /var/log/app.log: Permission denied", ["wrote to /var/log/app.log"], [ROOT_ONLY]),
    "denied write: dash redirect": (
        "sh: 1: cannot create /app/out.txt: Permission denied",
        ["wrote to /app/out.txt"],
        [ROOT_ONLY],
    ),
    "not outside: denied write into output_path": (
        tb(
            "/app/mlcube.py :: nib.save(img, out)",
            error="PermissionError: [Errno 13] Permission denied: '/mlcube_io1/case.nii.gz'",
        ),
        None,
        [],
    ),
    # ---- root-only files in the image
    "root-only: bare": (
        "PermissionError: [Errno 13] Permission denied: '/mlcube_project/checkpoint.bin'",
        ["/mlcube_project/checkpoint.bin", ROOT_ONLY, "chmod a+r it in the Dockerfile"],
        [],
    ),
    "root-only: pathlib read_text": (
        tb(
            "/mlcube_project/mlcube.py :: weights = CHECKPOINT.read_text().strip()",
            "/usr/lib/python3.11/pathlib.py :: with self.open(mode='r', encoding=encoding, errors=errors) as f:",
            "/usr/lib/python3.11/pathlib.py :: return io.open(self, mode, buffering, encoding, errors, newline)",
            error="PermissionError: [Errno 13] Permission denied: '/mlcube_project/checkpoint.bin'",
        ),
        [ROOT_ONLY],
        [OUTSIDE],
    ),
    "root-only: numpy load": (
        tb(
            "/mlcube_project/mlcube.py :: scale = float(np.load(CHECKPOINT)[0])",
            "numpy/lib/npyio.py :: fid = stack.enter_context(open(os_fspath(file), 'rb'))",
            error="PermissionError: [Errno 13] Permission denied: '/mlcube_project/checkpoint.npy'",
        ),
        ["/mlcube_project/checkpoint.npy", ROOT_ONLY],
        [],
    ),
    "root-only: interpreter": (
        "python3: can't open file '/app/mlcube.py': [Errno 13] Permission denied",
        ["/app/mlcube.py", ROOT_ONLY, "chmod a+r it"],
        [],
    ),
    "root-only: coreutils read": ("cat: /opt/model/labels.json: Permission denied", [ROOT_ONLY], []),
    "root-only: script run by sh": ("sh: 1: /app/run.sh: Permission denied", ["/app/run.sh", ROOT_ONLY, "a+rx"], []),
    "not root-only: output_path": (
        "PermissionError: [Errno 13] Permission denied: '/mlcube_io1/case.nii.gz'",
        None,
        [],
    ),
    "not root-only: /tmp": ("PermissionError: [Errno 13] Permission denied: '/tmp/lock'", None, []),
    "not root-only: /proc": ("cat: /proc/1/environ: Permission denied", None, []),
    "not root-only: relative path": ("PermissionError: [Errno 13] Permission denied: 'model.txt'", None, []),
    # ---- shared objects and GPUs
    "libcuda, exit 3 (the reported misfire)": (
        "loading model\n" + LIBCUDA + "\n",
        [GPU, "libcuda.so.1", "--nv / device requests", "accelerator_count", "fall back to CPU"],
        ["WORKDIR"],
    ),
    "libcuda via ctypes": (
        "OSError: libcuda.so.1: cannot open shared object file: No such file or directory",
        [GPU, "libcuda.so.1"],
        [],
    ),
    "libnvidia-ml": (
        "ImportError: libnvidia-ml.so.1: cannot open shared object file: No such file or directory",
        [GPU],
        [],
    ),
    "a library missing from the image": (
        "python3: error while loading shared libraries: libpython3.10.so.1.0: cannot open shared object file: "
        "No such file or directory",
        ["needs libpython3.10.so.1.0, which is not in the image", "Dockerfile"],
        [GPU],
    ),
    "not a missing library: TensorFlow's warning": (
        "2024-03-01 10:00:00.123456: W tensorflow/stream_executor/platform/default/dso_loader.cc:64] Could not "
        "load dynamic library 'libcudart.so.11.0'; dlerror: libcudart.so.11.0: cannot open shared object file: "
        "No such file or directory",
        None,
        [],
    ),
    "no GPU: torch without a driver": (
        "RuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and "
        "installed a driver from http://www.nvidia.com/Download/index.aspx",
        [GPU, "accelerator_count"],
        [],
    ),
    "no GPU: no device": ("RuntimeError: No CUDA GPUs are available", [GPU], []),
    "not no GPU: wrong CUDA architecture": (
        "RuntimeError: CUDA error: no kernel image is available for execution on the device",
        None,
        [],
    ),
    # ---- shared memory
    "shared memory: bus error": (
        "ERROR: Unexpected bus error encountered in worker. This might be caused by insufficient shared memory (shm).",
        ["shared memory", "num_workers=0"],
        [],
    ),
    "not shared memory: a worker that died otherwise": (
        "RuntimeError: DataLoader worker (pid 12) exited unexpectedly with exit code 1.",
        None,
        [],
    ),
    # ---- nothing known
    "empty": ("", None, []),
    "a plain exception": ("ValueError: checkpoint has 3 classes, expected 4", None, []),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rule_matches_its_evidence(name: str) -> None:
    log, phrases, forbidden = CASES[name]
    hint = explain_failure(log, FIDELITY)
    if phrases is None:
        assert hint is None, hint
        return
    assert hint is not None and "\n" not in hint
    for phrase in phrases:
        assert phrase in hint, hint
    for phrase in forbidden:
        assert phrase not in hint, hint


def test_the_last_error_wins_over_earlier_warnings() -> None:
    log = (
        "2024-03-01 W tensorflow] Could not load dynamic library 'libcudart.so.11.0'; dlerror: libcudart.so.11.0: "
        "cannot open shared object file: No such file or directory\n"
        "warning: cannot write cache: OSError: [Errno 30] Read-only file system: '/root/.cache/x'\n"
        + tb(
            "/app/mlcube.py :: with open('model.txt') as fh:",
            error="FileNotFoundError: [Errno 2] No such file or directory: 'model.txt'",
        )
    )
    hint = explain_failure(log, FIDELITY)
    assert hint is not None and hint.startswith("opens 'model.txt' by a relative path")


def test_pipe_joined_tails_are_still_read() -> None:
    log = " | ".join(["$ docker run --read-only img", "starting", LIBCUDA])
    hint = explain_failure(log, FIDELITY)
    assert hint is not None and hint.startswith(GPU)


@pytest.mark.parametrize(
    ("line", "errno", "path", "op"),
    [
        ("FileNotFoundError: [Errno 2] No such file or directory: 'a' -> 'b'", ENOENT, "a", READ),
        ('PermissionError: [Errno 13] Permission denied: "it\'s.txt"', EACCES, "it's.txt", READ),
        ("cp: cannot create regular file '/opt/x': Permission denied", EACCES, "/opt/x", WRITE),
        ("sh: 1: /app/run.sh: Permission denied", EACCES, "/app/run.sh", EXEC),
        ("cat: /app/x: Permission denied", EACCES, "/app/x", READ),
    ],
)
def test_file_errors_parse_errno_path_and_operation(line: str, errno: str, path: str, op: str) -> None:
    [err] = file_errors([line], 0)
    assert (err.errno, err.path, err.op) == (errno, path, op)


@pytest.mark.parametrize("line", [LIBCUDA, "ImportError: libGL.so.1: cannot open shared object file: No such file"])
def test_loader_messages_are_not_file_errors(line: str) -> None:
    assert file_errors([line], 0) == []


def test_shutil_copy_with_both_modes_falls_back_to_the_caller() -> None:
    log = tb(
        "/app/mlcube.py :: shutil.copyfile('/app/template.nii.gz', out)",
        "/usr/lib/python3.11/shutil.py :: with open(src, 'rb') as fsrc, open(dst, 'wb') as fdst:",
        error="PermissionError: [Errno 13] Permission denied: '/app/template.nii.gz'",
    )
    hint = explain_failure(log, FIDELITY)
    assert hint is not None and ROOT_ONLY in hint  # copyfile is not a write call by itself: read by default


def test_rename_over_a_file_mount_names_the_cause() -> None:
    """A container config's file output is mounted alone (MedPerf's -v host_file:/…/results.yaml): an atomic
    write's rename over it fails with EBUSY, and the hint says how to write it instead."""
    tail = (
        "Traceback (most recent call last):\n"
        "OSError: [Errno 16] Device or resource busy: '/mlcommons/volumes/results/.results.yaml.x1.tmp' -> "
        "'/mlcommons/volumes/results/results.yaml'"
    )
    hint = explain_failure(tail, Isolation())
    assert hint == (
        "/mlcommons/volumes/results/results.yaml is a file output mounted by itself (as MedPerf mounts it), so a "
        "temporary file cannot be renamed over it: write the file in place (open it for writing), or write "
        "elsewhere and copy"
    )
