"""MLCube's docker CLI fragments (``gpu_args``, ``cpu_args``, ``env_args``, ``--key: value`` entries and a
``build_args`` string) turned into docker SDK options, so fedsim runs a cube with the options ``mlcube run``
would give ``docker run``/``docker build``.

Only options whose meaning is clear are accepted; anything else is a one-line error naming the option, never
silently dropped. For submissions, options that would undo fedsim's hardening are left out and listed.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from fedsim.errors import SpecError

# docker run flag -> (SDK keyword, takes a value, repeatable)
_RUN_OPTIONS: dict[str, tuple[str, bool, bool]] = {
    "--gpus": ("gpus", True, False),
    "-e": ("environment", True, True),
    "--env": ("environment", True, True),
    "--shm-size": ("shm_size", True, False),
    "--ipc": ("ipc_mode", True, False),
    "--network": ("network_mode", True, False),
    "--net": ("network_mode", True, False),
    "--privileged": ("privileged", False, False),
    "-u": ("user", True, False),
    "--user": ("user", True, False),
    "-m": ("mem_limit", True, False),
    "--memory": ("mem_limit", True, False),
    "--memory-swap": ("memswap_limit", True, False),
    "--cpus": ("nano_cpus", True, False),
    "--cpuset-cpus": ("cpuset_cpus", True, False),
    "--security-opt": ("security_opt", True, True),
    "--ulimit": ("ulimits", True, True),
    "--runtime": ("runtime", True, False),
    "-v": ("volumes", True, True),
    "--volume": ("volumes", True, True),
    "--device": ("devices", True, True),
    "--cap-add": ("cap_add", True, True),
    "--cap-drop": ("cap_drop", True, True),
    "--pid": ("pid_mode", True, False),
    "-w": ("working_dir", True, False),
    "--workdir": ("working_dir", True, False),
    "--entrypoint": ("entrypoint", True, False),
    "--group-add": ("group_add", True, True),
    "--add-host": ("extra_hosts", True, True),
    "--hostname": ("hostname", True, False),
    "-h": ("hostname", True, False),
    "--pids-limit": ("pids_limit", True, False),
}
# flags that only matter to an interactive CLI run; fedsim never allocates a TTY and always removes
_NO_EFFECT = {"--rm", "-i", "-t", "-it", "-ti", "--interactive", "--tty", "-d", "--detach", "--init"}
# what a submission may set for itself; everything else would loosen the hardening
UNTRUSTED_ALLOWED = {"environment", "shm_size", "ulimits", "gpus", "working_dir"}


@dataclass
class RunOptions:
    """``docker run`` options from a cube's fragments: SDK keywords plus the CLI words they came from."""

    sdk: dict[str, Any] = field(default_factory=dict)
    cli: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def _size(text: str) -> int:
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower()
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def _value(key: str, raw: str) -> Any:
    if key == "nano_cpus":
        return int(float(raw) * 1e9)
    if key in {"mem_limit", "memswap_limit"}:
        return raw if raw == "-1" else _size(raw)
    if key == "pids_limit":
        return int(raw)
    return raw


def _option_value(
    words: list[str], i: int, inline: str | None, what: str, file: str | None, source: str
) -> tuple[str, int]:
    """An option's value: ``--opt=value`` or the next word; returns it and the index of the word it ended at."""
    if inline is not None:
        return inline, i
    if i + 1 < len(words):
        return words[i + 1], i + 1
    raise SpecError(f"{what} needs a value", file=file, field=source)


def parse_run_fragment(fragment: str, *, source: str, file: str | None = None, untrusted: bool = False) -> RunOptions:
    """Parse a ``docker run`` fragment (``"--gpus all --shm-size=1g -e A=1"``) into :class:`RunOptions`."""
    out = RunOptions()
    try:
        words = shlex.split(fragment)
    except ValueError as exc:
        raise SpecError(f"cannot split {fragment!r}: {exc}", file=file, field=source) from exc
    i = 0
    while i < len(words):
        word = words[i]
        flag, eq, inline = word.partition("=")
        if word in _NO_EFFECT:
            i += 1
            continue
        if flag not in _RUN_OPTIONS:
            raise SpecError(
                f"docker option {word!r} is not supported by fedsim (supported: "
                f"{', '.join(sorted(k for k in _RUN_OPTIONS if k.startswith('--')))})",
                file=file,
                field=source,
            )
        key, takes_value, repeatable = _RUN_OPTIONS[flag]
        if takes_value:
            raw, i = _option_value(words, i, inline if eq else None, f"docker option {flag}", file, source)
            words_used = [f"{flag}={raw}"]
        else:
            raw, words_used = "true", [flag]
        i += 1
        if untrusted and key not in UNTRUSTED_ALLOWED:
            out.dropped.extend(words_used)
            continue
        out.cli.extend(words_used)
        value: Any = True if not takes_value else _value(key, raw)
        if key == "environment":
            name, _, val = raw.partition("=")
            out.sdk.setdefault("environment", {})[name] = val
        elif key == "ulimits":
            name, _, limits = raw.partition("=")
            soft, _, hard = limits.partition(":")
            out.sdk.setdefault("ulimits", []).append((name, int(soft), int(hard or soft)))
        elif repeatable:
            out.sdk.setdefault(key, []).append(value)
        else:
            out.sdk[key] = value
    return out


@dataclass(frozen=True)
class BuildOptions:
    """``docker build`` options from a cube's ``build_args`` (a mapping, or MLCube's CLI string)."""

    buildargs: dict[str, str]
    nocache: bool = False
    pull: bool = False
    target: str | None = None
    network_mode: str | None = None


def parse_build_args(value: dict[str, str] | str, *, file: str | None = None) -> BuildOptions:
    if isinstance(value, dict):
        return BuildOptions(dict(value))
    args: dict[str, str] = {}
    opts: dict[str, Any] = {}
    words = shlex.split(value)
    i = 0
    while i < len(words):
        flag, eq, inline = words[i].partition("=")
        if flag in {"--no-cache", "--pull", "--rm", "-q", "--quiet", "--force-rm"}:
            if flag == "--no-cache":
                opts["nocache"] = True
            elif flag == "--pull":
                opts["pull"] = True
            i += 1
            continue
        if flag not in {"--build-arg", "--target", "--network"}:
            raise SpecError(
                f"docker build option {words[i]!r} is not supported by fedsim "
                "(supported: --build-arg, --no-cache, --pull, --target, --network)",
                file=file,
                field="docker.build_args",
            )
        raw, i = _option_value(
            words, i, inline if eq else None, f"docker build option {flag}", file, "docker.build_args"
        )
        i += 1
        if flag == "--build-arg":
            k, _, v = raw.partition("=")
            args[k] = v
        elif flag == "--target":
            opts["target"] = raw
        else:
            opts["network_mode"] = raw
    return BuildOptions(args, **opts)
