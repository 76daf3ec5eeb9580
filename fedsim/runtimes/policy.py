"""The containment policy: how one job is held, decided once by :func:`resolve` and carried on the job.

Every command that runs a cube (``run``, ``stress``, ``check-submission``, ``dry-run``) asks :func:`resolve`; the
job then carries the frozen :class:`ContainmentPolicy` (``Job.policy``), which ``execute_job``, the build phase
and the records read as it is. Decisions read each runtime's :class:`~fedsim.runtimes.base.Capabilities`, never
its name.

The rule for untrusted code (submissions): a job that lands on the local runtime runs in the bubblewrap sandbox;
where the sandbox cannot run it is refused (:class:`Unsandboxed`, one line naming the cause and the fix) unless
the user allowed unsandboxed runs (``--allow-unsandboxed``; ``check-submission`` of one's own cube) or the cube
is one of fedsim's own bundled reference cubes (:class:`fedsim.cube.CubeOrigin`), which then run as plain
processes, said once (:func:`refuse_unsandboxed`'s note) and recorded as containment ``none``. Trusted cubes
(data prep, metrics) run plainly unless the benchmark asks for the sandbox (``sandbox_trusted_cubes``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from fedsim.cube import CallConvention, CubeSpec, ImageKind, image_only_cube
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes import select
from fedsim.runtimes.base import Capabilities
from fedsim.runtimes.sandbox import Probe

UNSANDBOXED_FIX = "or pass --allow-unsandboxed"  # the last resort, after the probe's own fix
CHECK_RUNTIMES = ("auto", "docker", "singularity", "local")  # check-submission's and dry-run's --runtime values
SANDBOX = "sandbox"  # the pool's key of the local runtime in bubblewrap

# why a job may run with containment "none": the user said so, fedsim's own code, or a trusted cube left plain
ALLOWED, BUNDLED, TRUSTED = "allow-unsandboxed", "bundled", "trusted"


class Unsandboxed(RuntimeUnavailable):
    """A submission would run as a plain host process: refused unless the user allowed it."""


def unsandboxed_refusal(found: Probe, where: str = "") -> Unsandboxed:
    """The one-line refusal: what stops the sandbox (``where``: why no container runtime was chosen, then the
    probe's cause), and the fix."""
    fix = f"fix: {found.fix}, {UNSANDBOXED_FIX}" if found.fix else f"fix: {UNSANDBOXED_FIX}"
    return Unsandboxed(f"refusing to run submissions as plain host processes: {where}{found.reason}; {fix}")


@dataclass(frozen=True)
class ContainmentOptions:
    """What a command says about containment, beside the runtime it asks for.

    ``allow_unsandboxed``: ``--allow-unsandboxed`` (check-submission: always, one's own cube). ``as_sites``:
    check-submission and dry-run hold a container as the sites' singularity does — a real singularity where
    installed, else docker in its singularity-fidelity mode — for ``auto``, ``docker`` and ``singularity`` alike."""

    allow_unsandboxed: bool = False
    as_sites: bool = False


DEFAULT_OPTIONS = ContainmentOptions()  # a run without --allow-unsandboxed


@dataclass(frozen=True)
class ContainmentPolicy:
    """How one job is held, as :func:`resolve` decided it.

    ``runtime``: what the job record says (docker, singularity, local); ``instance``: the runtime pool's key
    (``sandbox`` for the local runtime in bwrap); ``containment``: docker, singularity, bwrap or none;
    ``untrusted``: a submission (the hardening profile); ``unsandboxed``: why containment ``none`` is allowed
    (:data:`ALLOWED`, :data:`BUNDLED`, :data:`TRUSTED`; empty when contained); ``singularity_fidelity``: docker
    holds the job as the sites' singularity would; ``bwrap``: the sandbox binary when known; ``refusal``: why no
    runtime may run the job (the job fails with it; ``refused_unsandboxed``: an :class:`Unsandboxed` one)."""

    runtime: str = "local"
    instance: str = "local"
    containment: str = "none"
    untrusted: bool = False
    unsandboxed: str = TRUSTED
    singularity_fidelity: bool = False
    bwrap: str | None = None
    runs_image: bool = False  # the runtime runs the cube's image (docker, singularity): it has one to prepare
    refusal: str = ""
    refused_unsandboxed: bool = False

    @property
    def sandboxed(self) -> bool:
        """The local runtime in bubblewrap."""
        return self.instance == SANDBOX

    def check(self) -> None:
        """Raise the refusal (:class:`Unsandboxed` or :class:`RuntimeUnavailable`), if any."""
        if self.refused_unsandboxed:
            raise Unsandboxed(self.refusal)
        if self.refusal:
            raise RuntimeUnavailable(self.refusal)

    def record(self) -> dict[str, Any]:
        """What ``summary.json`` records of the policy (``JobResult.policy``)."""
        out = asdict(self)
        for key in ("instance", "runs_image", "refused_unsandboxed"):
            out.pop(key)
        return out


def _refused(exc: RuntimeUnavailable, untrusted: bool, runtime: str) -> ContainmentPolicy:
    """A job no runtime may run; ``runtime``: the one it would have had, when known (a refused plain run)."""
    return ContainmentPolicy(
        runtime=runtime, instance="", containment="", untrusted=untrusted, unsandboxed="", refusal=str(exc),
        refused_unsandboxed=isinstance(exc, Unsandboxed),
    )  # fmt: skip


def _as_sites(requested: str, cube: CubeSpec) -> str:
    """check-submission's runtime: ``singularity`` (docker's fidelity mode without the binary) or ``local``."""
    if requested not in CHECK_RUNTIMES:
        raise RuntimeUnavailable(f"unknown runtime {requested!r}; choose one of {', '.join(CHECK_RUNTIMES)}")
    if requested == "local":
        return "local"
    container_ok = cube.docker_runnable and (select.docker_available() or select.singularity_binary() is not None)
    if requested == "auto":
        return "singularity" if container_ok else "local"
    if not select.docker_available() and not (requested == "singularity" and select.singularity_binary()):
        raise RuntimeUnavailable(f"--runtime {requested}: no Docker engine answers (use --runtime local)")
    return "singularity"


def check_image(cube: CubeSpec, caps: Capabilities, runtime: str) -> None:
    """Refuse, in one line, a cube whose image or call convention the runtime cannot give it (a SIF on docker,
    a ``docker save`` archive where no root file system is unpacked, declared mount paths without binds)."""
    kind = cube.image_source.kind if cube.image_source is not None else ImageKind.REGISTRY
    if kind not in caps.image_kinds:
        able = ", ".join(k.value for k in caps.image_kinds)
        what = {ImageKind.SIF: "a Singularity file", ImageKind.ARCHIVE: "a docker save archive"}.get(kind, "an image")
        raise RuntimeUnavailable(
            f"cube {cube.name!r} is {what}, which the {runtime} runtime cannot run (it runs: {able}); fix: "
            + ("use the singularity runtime" if kind is ImageKind.SIF else "use the docker or the singularity runtime")
        )
    if cube.convention is CallConvention.MOUNT_PATHS and not caps.mounts_at_paths:
        raise RuntimeUnavailable(
            f"cube {cube.name!r} declares the paths its volumes are mounted at, which the {runtime} runtime cannot "
            "give; fix: use docker, singularity or the local runtime's sandbox"
        )


def _holds_itself(caps: Capabilities) -> bool:
    """A runtime whose engine isolates the task by itself (a container), so no sandbox is needed around it."""
    return caps.isolates_filesystem


def resolve(
    requested: str,
    cube: CubeSpec,
    *,
    untrusted: bool,
    sandbox_trusted: bool = False,
    options: ContainmentOptions = DEFAULT_OPTIONS,
) -> ContainmentPolicy:
    """The policy of one job: ``requested`` (the CLI's ``--runtime``, else the site's ``runtime``), the cube,
    its trust (``untrusted``: a submission), the benchmark's ``sandbox_trusted_cubes`` and the command's
    :class:`ContainmentOptions`. Never raises: a job no runtime may run carries its ``refusal``."""
    name = ""
    try:
        asked = _as_sites(requested, cube) if options.as_sites else requested
        name = select.runtime_for(asked, cube)
        caps = select.runtime_capabilities(name)
        fidelity = untrusted and asked == "singularity" and caps.singularity_fidelity
        at_paths = cube.convention is CallConvention.MOUNT_PATHS and not caps.mounts_at_paths  # needs the sandbox
        if _holds_itself(caps) or not (untrusted or sandbox_trusted or at_paths):
            check_image(cube, caps, name)
            plain = not _holds_itself(caps)
            return ContainmentPolicy(
                runtime=name, instance=name, containment=caps.containment, untrusted=untrusted,
                unsandboxed=TRUSTED if plain else "", singularity_fidelity=fidelity, runs_image=caps.runs_images,
            )  # fmt: skip
        from fedsim.runtimes.sandbox import probe

        found = probe()
        if found.ok:
            binary = found.binary.label if found.binary is not None else found.bwrap
            held = select.runtime_capabilities(SANDBOX)
            check_image(cube, held, f"{name} (in its bubblewrap sandbox)")
            return ContainmentPolicy(
                runtime=name, instance=SANDBOX, containment=held.containment, untrusted=untrusted, unsandboxed="",
                bwrap=binary,
            )  # fmt: skip
        if at_paths:
            raise RuntimeUnavailable(
                f"cube {cube.name!r} declares the paths its volumes are mounted at, which the {name} runtime can "
                f"give only inside its bubblewrap sandbox, and the sandbox cannot run here: {found.reason}; fix: "
                f"{found.fix or 'install bubblewrap'}, or use the docker runtime"
            )
        if options.allow_unsandboxed or cube.origin.trusted_code:
            why = ALLOWED if options.allow_unsandboxed else BUNDLED
            return ContainmentPolicy(runtime=name, instance=name, untrusted=untrusted, unsandboxed=why)
        where = ""
        if options.as_sites:
            where = "no Docker engine answers and " if requested == "auto" and cube.docker is not None else ""
        elif requested == "auto":
            where = "the cube has no docker section and " if cube.docker is None else "no Docker engine answers and "
        raise unsandboxed_refusal(found, where)
    except RuntimeUnavailable as exc:
        return _refused(exc, untrusted, name)


@dataclass(frozen=True)
class Choice:
    """``runtime``: what the job record says (docker, local, singularity); ``instance``: the pool's key
    (``sandbox`` for the local runtime in bwrap)."""

    runtime: str
    instance: str

    @property
    def sandboxed(self) -> bool:
        return self.instance == SANDBOX


def choose(requested: str, cube: CubeSpec, *, sandbox: bool, allow_unsandboxed: bool = False) -> Choice:
    """:func:`resolve` for a job that must not run as a plain host process (``sandbox``) or may, raising its
    refusal; the runtime and the pool's key."""
    policy = resolve(requested, cube, untrusted=False, sandbox_trusted=sandbox,
                     options=ContainmentOptions(allow_unsandboxed=allow_unsandboxed))  # fmt: skip
    policy.check()
    return Choice(policy.runtime, policy.instance)


def refuse_unsandboxed(policies: Iterable[tuple[CubeSpec, ContainmentPolicy]]) -> str | None:
    """Raise :class:`Unsandboxed` before anything starts when any submission's policy would run it as a plain
    host process without the user's leave. Other runtime problems are each job's to report.

    Returns the one note to show on the console when fedsim's own bundled cubes will run without containment
    because no sandbox can start here (``None`` otherwise)."""
    bundled: list[str] = []
    for cube, policy in policies:
        if policy.refused_unsandboxed:
            policy.check()
        if policy.unsandboxed == BUNDLED:
            bundled.append(cube.name)
    if not bundled:
        return None
    from fedsim.runtimes.sandbox import probe

    found = probe()
    return (
        f"fedsim's own bundled reference cubes ({', '.join(dict.fromkeys(bundled))}) run without containment "
        f"(recorded as containment: none; other submissions are refused) because no sandbox can start here: "
        f"{found.reason}; fix: {found.fix}"
    )


def refuse_unsandboxed_checks(runtime: str, options: ContainmentOptions) -> None:
    """dry-run: raise :class:`Unsandboxed` before any check starts when a submission image would run as a
    plain host process under ``runtime`` (the cubes are not loaded yet: a bare image stands for them)."""
    policy = resolve(runtime, image_only_cube("submission", "submission"), untrusted=True, options=options)
    if policy.refused_unsandboxed:
        policy.check()


__all__ = [
    "ALLOWED",
    "BUNDLED",
    "CHECK_RUNTIMES",
    "DEFAULT_OPTIONS",
    "TRUSTED",
    "UNSANDBOXED_FIX",
    "Choice",
    "ContainmentOptions",
    "ContainmentPolicy",
    "Unsandboxed",
    "check_image",
    "choose",
    "refuse_unsandboxed",
    "refuse_unsandboxed_checks",
    "resolve",
    "unsandboxed_refusal",
]
