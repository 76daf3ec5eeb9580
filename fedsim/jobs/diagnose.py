"""Turn the tail of a failed job's log into one line naming the likely cause and the fix.

Containers that work under ``docker run`` fail at hospitals for a handful of classic reasons (docs/fets-contract.md):
relying on WORKDIR, writing outside ``output_path``, files readable only by root, needing a GPU that was not
given. Recognising them here lets the job record say *why* and *what to change*, not just "exit code 1".

Each rule names a cause only on the evidence for it. File errors are parsed first into (errno, path, operation,
reporter): a Python ``OSError`` line (the operation from the traceback's frames: ``open(p, "w")``, ``mkdir``,
``save`` write; ``open(p)``, ``load``, ``import`` read), the interpreter's ``can't open file``, or a shell or
coreutils message (``cat: x: ...``, ``touch: cannot touch 'x': ...``, ``sh: 1: x: not found``). Dynamic-loader
messages (``libcuda.so.1: cannot open shared object file``) are never file errors of the cube's own code.

- relative path: ENOENT on a *relative* path that Python, the interpreter or a shell tool reported
- HOME: a write under the fidelity HOME, which does not exist
- no space: ENOSPC/EDQUOT on a write, unless the path is a mount (output_path on a full disk)
- read-only / denied write: EROFS, or EACCES on a write, to a path outside the MLCube mounts
- root-only: EACCES on *reading* (or running) an absolute path inside the image (not a mount, /tmp, /proc ...)
- missing shared object: a driver library (libcuda, libnvidia-*) means no GPU was given; others a missing package
- no GPU: CUDA/NVML saying there is no driver or no device
- shared memory: PyTorch DataLoader workers out of /dev/shm

The log is read from its end: the last recognisable error is the one that killed the job (a traceback ends
with it), while earlier lines may hold warnings the cube survived.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from fedsim.cube import Isolation
from fedsim.runtimes.hardening import FIDELITY_HOME
from fedsim.store.reason import clean_lines

MOUNT_PREFIX = "/mlcube_io"
# tmpfs and kernel filesystems: a permission error there is not about a file baked into the image
NOT_IMAGE = ("/tmp/", "/proc/", "/sys/", "/dev/", "/run/", "/var/tmp/")

ENOENT, EACCES, EROFS, ENOSPC = "ENOENT", "EACCES", "EROFS", "ENOSPC"
_ERRNO = {"2": ENOENT, "13": EACCES, "30": EROFS, "28": ENOSPC, "122": ENOSPC}
_STRERROR = {
    "no such file or directory": ENOENT,
    "no such file": ENOENT,  # dash
    "not found": ENOENT,  # sh: 1: x: not found
    "command not found": ENOENT,
    "permission denied": EACCES,
    "read-only file system": EROFS,
    "no space left on device": ENOSPC,
    "disk quota exceeded": ENOSPC,
}
READ, WRITE, EXEC = "read", "write", "exec"


@dataclass(frozen=True)
class FileError:
    """One failed file operation as the log reports it."""

    errno: str  # ENOENT, EACCES, EROFS or ENOSPC (EDQUOT counts as ENOSPC)
    path: str | None
    op: str  # read, write or exec
    via: str  # python, interpreter (python3: can't open file) or shell (sh, bash, coreutils)


# ---------------------------------------------------------------- parsing the evidence

_LOADER = re.compile(r"cannot open shared object file|error while loading shared libraries", re.I)
_Q = r"""(?:'(?P<q1>[^']+)'|"(?P<q2>[^"]+)"|\u2018(?P<q3>[^\u2019]+)\u2019)"""
_INTERPRETER = re.compile(
    r"""^(?:\S*/)?python[\d.]*: can't open file (?:'(?P<q1>[^']+)'|"(?P<q2>[^"]+)"): \[Errno (?P<num>\d+)\]"""
)
_PY_OSERROR = re.compile(
    r"""(?:\b(?P<exc>[A-Za-z_][\w.]*)\s*:\s*)?\[Errno (?P<num>\d+)\] (?P<msg>[^:'"]*?)"""
    r"""(?:: (?:'(?P<q1>[^']*)'|"(?P<q2>[^"]*)")(?: -> .*)?)?\s*$"""
)
_NIBABEL = re.compile(r"""FileNotFoundError: No such file or no access: (?:'(?P<q1>[^']+)'|"(?P<q2>[^"]+)")""")
_SHELL = re.compile(
    r"^(?P<tool>[^\s:]+):(?P<where> \d+:| line \d+:)? "
    r"(?:(?P<verb>(?:cannot|can't|could not|couldn't|failed to|unable to) [a-z ]+?"
    r"|error (?:writing|reading|opening)) )?"
    rf"""(?:{_Q}|(?P<bare>[^\s'"\u2018:][^\s:]*)): """
    r"(?P<msg>No such file(?: or directory)?|Permission denied|Read-only file system|No space left on device|"
    r"Disk quota exceeded|(?:command )?not found)$"
)
_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded")
_READ_ONLY = re.compile(r"Read-only file system")

_SHELLS = {"sh", "bash", "dash", "ash", "zsh", "ksh", "busybox"}
_WRITING_TOOLS = {"tee", "touch", "mkdir", "rm", "rmdir", "mv", "ln", "chmod", "chown", "install", "truncate", "dd"}
_WRITING_VERB = re.compile(r"creat|touch|writ|make|remove|move|renam|overwrit|link|chang|set|truncat|append")

# the traceback's frames: ``File "...", line N, in f`` followed by the source line (indentation may be gone)
_FRAME = re.compile(r'^File ".*", line \d+')
_MARKERS = re.compile(r"^[\s^~]+$|^\[Previous line repeated")
_OPEN = re.compile(r"open\w*\s*\(")
_MODE = re.compile(r"""(['"])([rwxabtU+]{1,4})\1""")
_WRITE_CALL = re.compile(
    r"\b(?:mkdir|makedirs|write|write_text|write_bytes|writelines|save|savez\w*|savetxt|imwrite|to_filename|"
    r"to_csv|to_json|touch|move|rename|unlink|remove|rmtree|symlink\w*|chmod|chown|mkstemp|mkdtemp|"
    r"NamedTemporaryFile|TemporaryFile|TemporaryDirectory|SpooledTemporaryFile)\s*\(|\bO_(?:WRONLY|RDWR|CREAT)\b"
)
_EXEC_CALL = re.compile(r"\b(?:Popen|run|call|check_call|check_output|system|exec\w*|spawn\w*|_execute_child)\s*\(")
_READ_CALL = re.compile(
    r"\b(?:read|read_text|read_bytes|readlines|load|loadtxt|imread|listdir|scandir|iterdir|glob|rglob|stat|"
    r"import_module|ReadImage)\s*\(|^(?:import|from)\s|\bO_RDONLY\b"
)


def _quoted(m: re.Match[str]) -> str | None:
    for group in ("q1", "q2", "q3", "bare"):
        if group in m.re.groupindex and m.group(group) is not None:
            return m.group(group)
    return None


def _frame_code(lines: list[str], i: int) -> list[str]:
    """The source lines of the traceback frames right above ``lines[i]``, innermost first."""
    code: list[str] = []
    j = i - 1
    while j >= 0:
        line = lines[j]
        if _MARKERS.match(line):
            j -= 1
        elif _FRAME.match(line):
            j -= 1  # a frame without its source line
        elif j >= 1 and _FRAME.match(lines[j - 1]):
            code.append(line)
            j -= 2
        else:
            break
    return code


def _code_op(code: str) -> str | None:
    """What a source line does to a file, when it says so."""
    if _WRITE_CALL.search(code):
        return WRITE
    if _OPEN.search(code):
        modes = {WRITE if set(m.group(2)) & set("wax+") else READ for m in _MODE.finditer(code)}
        if len(modes) == 1:
            return modes.pop()
        if modes or "mode" in code:
            return None  # open(src, "rb") and open(dst, "wb") on one line, or a mode passed through
        return READ
    if _EXEC_CALL.search(code):
        return EXEC
    if _READ_CALL.search(code):
        return READ
    return None


def _traceback_op(lines: list[str], i: int) -> str:
    for code in _frame_code(lines, i):
        op = _code_op(code)
        if op is not None:
            return op
    return READ


def _shell_error(m: re.Match[str]) -> FileError | None:
    errno = _STRERROR[m.group("msg").lower()]
    tool = m.group("tool").rsplit("/", 1)[-1]
    verb = m.group("verb") or ""
    if errno in (EROFS, ENOSPC) or _WRITING_VERB.search(verb) or (not verb and tool in _WRITING_TOOLS):
        op = WRITE
    elif verb:
        op = READ  # cannot open / cannot access / cannot stat, and sh's `< file`
    elif tool in _SHELLS or m.group("where"):
        op = EXEC  # a shell (or a script, "file: 3: ...") ran it as a command
    else:
        op = READ  # cat x, head x, python x ...: a tool reading its argument
    if m.group("msg").endswith("not found") and op is not EXEC:
        return None  # "not found" is the shell's word for a missing command only
    return FileError(errno, _quoted(m), op, "shell")


def file_errors(lines: list[str], i: int) -> list[FileError]:
    """The failed file operations that ``lines[i]`` reports (its traceback above it gives the operation)."""
    line = lines[i]
    if _LOADER.search(line):
        return []  # the dynamic loader, not the cube's code, failed to open a library
    m = _INTERPRETER.match(line)
    if m:
        errno = _ERRNO.get(m.group("num"))
        return [FileError(errno, _quoted(m), READ, "interpreter")] if errno else []  # python reads the script
    found: list[FileError] = []
    m = _PY_OSERROR.search(line)
    if m:
        errno = _ERRNO.get(m.group("num")) or _STRERROR.get(m.group("msg").strip().lower())
        if errno:
            op = WRITE if errno in (EROFS, ENOSPC) else _traceback_op(lines, i)
            found.append(FileError(errno, _quoted(m), op, "python"))
        return found
    m = _NIBABEL.search(line)
    if m:
        return [FileError(ENOENT, _quoted(m), READ, "python")]
    m = _SHELL.match(line)
    if m:
        err = _shell_error(m)
        return [err] if err else []
    if _NO_SPACE.search(line):
        found.append(FileError(ENOSPC, None, WRITE, "shell"))
    elif _READ_ONLY.search(line):
        found.append(FileError(EROFS, None, WRITE, "shell"))
    return found


# ---------------------------------------------------------------- rules

Rule = Callable[[str, list[FileError], Isolation], "str | None"]  # (line, its file errors, isolation) -> hint


def _in_mount(path: str | None) -> bool:
    return bool(path) and path.startswith(MOUNT_PREFIX)  # type: ignore[union-attr]


def _relative(path: str | None) -> bool:
    return bool(path) and not path.startswith(("/", "~", "$"))  # type: ignore[union-attr]


def _relative_path(line: str, errors: list[FileError], iso: Isolation) -> str | None:
    """Singularity starts in the caller's cwd, not the image's WORKDIR: relative paths break."""
    for e in errors:
        if e.errno != ENOENT or not e.path:
            continue
        if e.via == "interpreter" and (_relative(e.path) or e.path.startswith("//")):  # '//x.py': cwd / + 'x.py'
            return (
                f"the entrypoint runs {e.path!r} relative to the image's WORKDIR: singularity ignores it; "
                "use an absolute path in ENTRYPOINT/CMD"
            )
        if e.via == "shell" and e.op == EXEC and "/" in e.path and _relative(e.path):
            return (
                f"runs {e.path!r} relative to the image's WORKDIR: singularity ignores it; "
                "use an absolute path in ENTRYPOINT/CMD and scripts"
            )
        if e.via in ("python", "shell") and e.op != EXEC and _relative(e.path):
            return (
                f"opens {e.path!r} by a relative path: relies on the image's WORKDIR: singularity ignores it; "
                "use absolute paths (e.g. from __file__)"
            )
    return None


def _home(line: str, errors: list[FileError], iso: Isolation) -> str | None:
    """Fidelity mode points HOME at a directory that does not exist, as a site without a writable HOME does."""
    for e in errors:
        if e.path and e.path.startswith(FIDELITY_HOME) and e.op == WRITE:
            return (
                f"writes to {e.path} under HOME, which is not writable at a site: bake caches into the image or "
                "point them (XDG_CACHE_HOME, TORCH_HOME, MPLCONFIGDIR) at /tmp"
            )
    return None


def _no_space(line: str, errors: list[FileError], iso: Isolation) -> str | None:
    """Singularity's writable overlay is a small tmpfs; big scratch data outside output_path fills it."""
    if not any(e.errno == ENOSPC and not _in_mount(e.path) for e in errors):
        return None  # ENOSPC inside a mount is output_path on a full disk, not the cube's mistake
    mib = iso.tmpfs_bytes // (1 << 20)
    return (
        f"wrote outside output_path: no space left (under singularity only output_path is writable and /tmp "
        f"holds {mib} MiB); write results and scratch data to output_path only"
    )


def _wrote_outside(line: str, errors: list[FileError], iso: Isolation) -> str | None:
    """The image and the inputs are read-only under singularity; only output_path takes writes."""
    for e in errors:
        if e.errno == EROFS:
            if _in_mount(e.path):
                where = f"into a read-only input ({e.path})"
            elif e.path:
                where = f"to {e.path}, outside output_path"
            else:
                where = "outside output_path"
            return (
                f"wrote {where}: the image and inputs are read-only under singularity; "
                "write results to output_path only"
            )
        if e.errno == EACCES and e.op == WRITE and e.path and not _in_mount(e.path):
            return (
                f"wrote to {e.path}, outside output_path: permission denied (under singularity the image is "
                "read-only and the cube runs as the calling user); write results to output_path only"
            )
    return None


def _root_only(line: str, errors: list[FileError], iso: Isolation) -> str | None:
    """Singularity runs as the calling (non-root) user: files readable only by root are unreadable."""
    for e in errors:
        if e.errno != EACCES or e.op == WRITE or not e.path or not e.path.startswith("/"):
            continue
        if _in_mount(e.path) or e.path.startswith(NOT_IMAGE) or e.path.startswith(FIDELITY_HOME):
            continue
        if e.op == EXEC:
            return (
                f"{e.path}: a file in the image is readable only by root or not executable by others; singularity "
                "runs as the calling user: chmod a+rx it in the Dockerfile"
            )
        return (
            f"{e.path}: a file in the image is readable only by root; singularity runs as the calling user: "
            "chmod a+r it in the Dockerfile"
        )
    return None


_SHARED_OBJECT = re.compile(
    r"(?:^|(?:Error|Exception): |error while loading shared libraries: )"
    r"(?P<lib>(?:/\S*/)?lib[\w.+-]*?\.so[\w.]*): cannot open shared object file"
)
_DRIVER_LIB = re.compile(r"(?:^|/)lib(?:cuda\.so|nvidia-|nvcuvid|nvoptix)")
_NO_GPU = re.compile(
    r"Found no NVIDIA driver on your system|NVML Shared Library Not Found|NVMLError_LibraryNotFound|"
    r"No CUDA GPUs are available|no CUDA-capable device is detected|CUDA driver initialization failed"
)
_GPU_FIX = (
    "the federation's GPU and its driver are given through --nv / device requests only to cubes that declare "
    "platform.accelerator_count; declare it, or fall back to CPU when no GPU is visible"
)


def _shared_object(line: str, errors: list[FileError], iso: Isolation) -> str | None:
    """A library the dynamic loader could not find; TensorFlow's 'Could not load dynamic library' is a warning."""
    m = _SHARED_OBJECT.search(line)
    if not m or "Could not load dynamic library" in line:
        return None
    lib = m.group("lib")
    if _DRIVER_LIB.search(lib):
        return f"needs a GPU driver ({lib} not found): {_GPU_FIX}"
    return f"needs {lib}, which is not in the image: install the package that provides it in the Dockerfile"


def _no_gpu(line: str, errors: list[FileError], iso: Isolation) -> str | None:
    m = _NO_GPU.search(line)
    return f"needs a GPU driver ({m.group(0)}): {_GPU_FIX}" if m else None


_SHM = re.compile(
    r"unable to write to file </torch_|insufficient shared memory \(shm\)|"
    r"DataLoader worker \(pid \d+\) is killed by signal: Bus error"
)


def _shared_memory(line: str, errors: list[FileError], iso: Isolation) -> str | None:
    if not _SHM.search(line):
        return None
    return "PyTorch DataLoader workers ran out of shared memory (/dev/shm is small in a container): use num_workers=0"


_BUSY_RENAME = re.compile(r"\[Errno 16\] Device or resource busy: .*-> '(?P<target>[^']+)'")


def _file_mount_rename(line: str, errors: list[FileError], iso: Isolation) -> str | None:
    """A container config's file output is mounted by itself (MedPerf mounts it so): renaming a temporary file
    over it fails with EBUSY, under MedPerf exactly as here."""
    m = _BUSY_RENAME.search(line)
    if not m:
        return None
    return (
        f"{m.group('target')} is a file output mounted by itself (as MedPerf mounts it), so a temporary file "
        "cannot be renamed over it: write the file in place (open it for writing), or write elsewhere and copy"
    )


# Checked in this order on each line, from the last line backwards; the first hit wins.
_RULES: list[Rule] = [
    _file_mount_rename,
    _shared_object,
    _no_gpu,
    _shared_memory,
    _relative_path,
    _home,
    _no_space,
    _wrote_outside,
    _root_only,
]


def explain_failure(log_tail: str, isolation: Isolation) -> str | None:
    """A one-line cause and fix for a failed job, or None when nothing known matches.

    ``log_tail`` is the end of the log, one line per log line (lines joined with " | " are split again).
    """
    lines = [part.strip() for line in clean_lines(log_tail) for part in line.split(" | ") if part.strip()]
    for i in range(len(lines) - 1, -1, -1):
        errors = file_errors(lines, i)
        for rule in _RULES:
            hint = rule(lines[i], errors, isolation)
            if hint:
                return " ".join(hint.split())
    return None
