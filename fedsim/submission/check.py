"""Check one submission end to end: static checks, image checks, the ``infer`` run, its outputs, metrics.

Checks run from the cheapest to the most expensive and all of them run (every problem is listed), except that
nothing runs once the cube's file (``mlcube.yaml`` or ``container_config.yaml``) is unusable or the image is not
there (not built, pulled or loaded).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from fedsim.cube import CubeSpec, ImageKind, image_only_cube, with_image_settings
from fedsim.errors import RuntimeUnavailable, SpecError
from fedsim.executors.base import Executor
from fedsim.jobs.job import JobStatus
from fedsim.runtimes.images import ImageMissing
from fedsim.runtimes.policy import resolve
from fedsim.runtimes.select import RuntimePool, docker_available
from fedsim.submission import dynamic, forecast, image, localenv, outputs, static
from fedsim.submission.attempts import attempt_checks
from fedsim.submission.locate import default_name, locate_cube
from fedsim.submission.options import CheckOptions
from fedsim.submission.report import Check, SubmissionReport, failed, passed, skipped
from fedsim.submission.toydata import CheckData

PhaseSink = Callable[[str, str], None]  # (submission, phase)
GiB = 1024**3
RAM_SHARE = 0.5  # a check never gets a memory limit above this share of the machine's RAM
_IMAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")
# how an image was to be made ready -> (what failed, the fix)
BUILD_FAILURE = {
    "image": ("pull or find", "load the image locally (docker load)"),
    "archive": ("load", "give a docker save tar of the image (docker save -o FILE IMAGE) beside the config"),
    "dockerfile": ("build", "fix the Dockerfile where the build failed"),
}
METRIC_KEYS = ("Dice_ET", "Dice_TC", "Dice_WT", "Hausdorff95_ET", "Hausdorff95_TC", "Hausdorff95_WT")


@dataclass(frozen=True)
class Target:
    """A submission: a cube (``cube_dir``, the folder holding its ``mlcube.yaml`` or ``container_config.yaml``;
    ``cube_file``, the declaring file when it was named itself) or a bare image that follows the FeTS infer
    contract."""

    name: str
    spec: str
    cube_dir: Path | None = None
    image: str | None = None
    cube_file: Path | None = None

    @property
    def cube_path(self) -> Path | None:
        """What :func:`fedsim.cube.load_cube` reads: the named file, else the folder."""
        return self.cube_file or self.cube_dir


def resolve_target(spec: str, *, base: Path | None = None, name: str | None = None) -> Target:
    """A path to a cube (an MLCube or MedPerf container folder, or the file that declares it), else an image
    reference; anything else is an error."""
    path = Path(spec).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if path.exists():
        location = locate_cube(path, "submission")
        cube_file = location.resolve() if location.is_file() else None
        cube_dir = cube_file.parent if cube_file is not None else location.resolve()
        return Target(name or default_name(location), spec, cube_dir=cube_dir, cube_file=cube_file)
    looks_like_path = spec.startswith((".", "/", "~")) or spec.endswith((".yaml", ".yml"))
    if looks_like_path or not _IMAGE_REF.match(spec):
        raise SpecError(
            "no such MLCube folder or container config (nor an image reference)", file=spec, field="submission"
        )
    short = spec.rsplit("/", 1)[-1]
    return Target(name or re.sub(r"[^A-Za-z0-9_.-]", "_", short), spec, image=spec)


def _ram_gb(options: CheckOptions, report: SubmissionReport) -> float:
    cap = float(RAM_SHARE * psutil.virtual_memory().total / GiB)
    if options.ram_gb <= cap:
        return options.ram_gb
    report.notes.append(
        f"RAM limit lowered from {options.ram_gb:g} GB to {cap:.1f} GB: half of this machine's memory "
        "(a larger limit could exhaust the host before the container's own limit acts)"
    )
    return cap


def _copy_data(source: Path, target: Path) -> None:
    """A private copy of the cases: the local runtime could otherwise write into the cache."""
    shutil.copytree(source, target, symlinks=False)
    for dirpath, _dirnames, filenames in os.walk(target):
        os.chmod(dirpath, 0o755)
        for n in filenames:
            os.chmod(os.path.join(dirpath, n), 0o644)


def _container_checks(
    report: SubmissionReport, cube: CubeSpec, target: Target, options: CheckOptions, runtimes: RuntimePool, key: str
) -> bool:
    """Build, pull or load the image, then the permission and size checks (and, when no Dockerfile told what the
    image runs, the entrypoint and workdir checks on its config); False when the image is not there."""
    from fedsim.runtimes.docker import container_user

    runtime = runtimes.get("docker")
    archive = cube.image_source is not None and cube.image_source.kind is ImageKind.ARCHIVE
    try:
        prepared = runtime.prepare(cube, options.base_image)
    except ImageMissing as exc:  # not built (build_strategy pull) and not pullable: the fix names both ways out
        report.checks.append(failed("build", exc.cause, exc.fix))
        return False
    except RuntimeUnavailable as exc:
        kind = "image" if target.image else "archive" if archive else "dockerfile"
        what, fix = BUILD_FAILURE[kind]
        report.checks.append(failed("build", f"cannot {what} the image: {exc}", fix))
        return False
    assert prepared is not None  # the docker runtime always has an image to prepare
    tag = prepared.image
    client = runtime.client  # type: ignore[attr-defined]
    attrs = client.images.get(tag).attrs
    source = cube.image_source
    loaded = f" (loaded from {Path(source.location).name})" if archive and source is not None else ""
    report.checks.append(passed("build", tag + loaded))
    if target.image is not None or static.without_dockerfile(cube):
        # what the image runs is in its config (a bare image, a pulled one, a loaded archive): check it there
        report.checks = [c for c in report.checks if c.name not in ("entrypoint", "workdir")]
        report.checks += static.command_checks(None if target.image else cube, image.config_command(attrs), None)
    report.checks.append(image.permissions_check(client, tag, container_user(), {"fedsim.check": key}))
    report.checks.append(image.size_check(attrs, options.max_image_gb))
    return True


def _metrics(report: SubmissionReport, predictions: Path, data: CheckData) -> None:
    if data.labels_dir is None:
        report.checks.append(skipped("metrics", "no labels given (--labels): nothing to score against"))
        return
    from fedsim.metrics import evaluate_dir

    rows = evaluate_dir(predictions, data.labels_dir)
    for key in METRIC_KEYS:
        values = [float(r[key]) for r in rows.values() if r.get(key) is not None and r[key] == r[key]]
        if values:
            report.metrics[key] = sum(values) / len(values)
    dice = ", ".join(f"{k[5:]} {report.metrics[k]:.3f}" for k in METRIC_KEYS[:3] if k in report.metrics)
    report.checks.append(passed("metrics", f"mean Dice {dice} over {len(rows)} cases"))


def with_key(cube: CubeSpec, key: Path | None) -> CubeSpec:
    """The submission with its ``--decryption-key``: needed by an encrypted image, an error for any other (a key
    that cannot take effect), each a one-line error (exit 2: fedsim cannot run the check as asked)."""
    src = cube.image_source
    encrypted = src is not None and src.encrypted
    if encrypted and key is None:
        raise SpecError(
            f"{cube.name!r} is an encrypted image ({cube.spec_file}); fix: pass --decryption-key FILE, the gpg "
            "passphrase file it was encrypted with",
            field="--decryption-key",
        )
    if key is not None and not encrypted:
        raise SpecError(
            f"--decryption-key cannot take effect: {cube.name!r}'s image is not encrypted; fix: leave it out",
            field="--decryption-key",
        )
    return with_image_settings(cube, key, None, None, "--decryption-key") if encrypted else cube


def check_submission(
    target: Target,
    options: CheckOptions,
    data: CheckData,
    executor: Executor,
    *,
    on_phase: PhaseSink | None = None,
    stop_event: threading.Event | None = None,
) -> SubmissionReport:
    """Every check of one submission; job-level failures are in the report, fedsim's own errors raise."""
    started = time.monotonic()
    phase = on_phase or (lambda _n, _p: None)
    report = SubmissionReport(
        target.name, target.spec, limits=options.limits(), data=data.description, num_cases=len(data.cases)
    )
    phase(target.name, "static checks")
    cube: CubeSpec | None
    if target.image is not None:
        if options.decryption_key is not None:
            raise SpecError(
                f"--decryption-key cannot take effect: {target.spec} is a registry image, never encrypted; fix: "
                "leave it out, or give the container config of the encrypted archive",
                field="--decryption-key",
            )
        cube = image_only_cube(target.name, target.image)
        why = "a bare image: the FeTS infer contract (data_path, output_path) is assumed"
        report.checks.append(skipped("mlcube", why))
    else:
        assert target.cube_path is not None
        cube, spec_check = static.load_cube_check(target.cube_path)
        report.checks.append(spec_check)
        if spec_check.status.value == "failed" or cube is None:
            what = "container_config.yaml" if spec_check.name == static.CONTAINER_CONFIG_CHECK else "mlcube.yaml"
            report.checks.append(skipped("run", f"{what} is unusable"))
            report.check_duration_s = time.monotonic() - started
            return report
        cube = with_key(cube, options.decryption_key)
        report.checks += static.dockerfile_checks(cube)

    policy = resolve(options.runtime, cube, untrusted=True, options=options.containment)
    if not policy.refused_unsandboxed:
        policy.check()  # no runtime for the check: fedsim's own error (a refusal to run it plainly is the run's)
    runtimes: RuntimePool = getattr(executor, "runtimes", None) or RuntimePool()
    if policy.runs_image and docker_available():
        phase(target.name, "building")
        key = _key(target.name)
        if not _container_checks(report, cube, target, options, runtimes, key):
            report.check_duration_s = time.monotonic() - started
            return report
    else:
        if target.image is not None:
            raise RuntimeUnavailable(f"{target.spec} is an image: checking it needs a Docker engine")
        why = "container-only check, not run: " + (
            "no Docker engine answers" if policy.runs_image else "the local runtime runs no image"
        )
        report.checks += [skipped("image_permissions", why), skipped("image_size", why)]
        key = _key(target.name)

    root = (options.work_dir or Path(tempfile.gettempdir()) / "fedsim-checks").resolve() / key
    layout = dynamic.RunLayout(root)
    layout.sandbox.mkdir(parents=True, exist_ok=True)
    layout.cwd.mkdir()
    _copy_data(data.data_dir, layout.data)
    data_before = outputs.snapshot(layout.data)
    ram_gb = _ram_gb(options, report)
    job = dynamic.make_job(cube, key, options.runtime, layout, options, ram_gb, policy)
    if not policy.runs_image:
        localenv.build_environment(job, executor, lambda p: phase(target.name, p))
        note = localenv.run_made_note(cube)
        report.notes += [note] if note else []
    phase(target.name, "running")
    result, probed = dynamic.run_check(job, executor, stop_event)
    report.work_dir, report.log = str(root), result.log
    report.runtime = result.runtime or policy.runtime or options.runtime
    if result.runtime == policy.runtime and policy.singularity_fidelity:
        report.runtime = f"{policy.runtime} (singularity fidelity)"
    report.containment = result.containment or ""
    if result.containment == "none":
        report.notes.append(
            "the submission ran UNSANDBOXED, as a plain host process with your user's rights (network, files): "
            f"the local runtime's sandbox cannot run here ({_sandbox_reason()})"
        )
    if result.exit_code is not None or result.status is not JobStatus.FAILED:
        report.duration_s = result.duration_s
    report.peak_rss_bytes = result.peak_rss_bytes or probed
    report.peak_gpu_memory_bytes = result.peak_gpu_memory_bytes
    report.checks.append(dynamic.run_verdict(result, options, ram_gb))

    phase(target.name, "validating")
    ok = result.status is JobStatus.SUCCEEDED
    if ok:
        report.case_seconds = dynamic.case_seconds(layout.predictions, data.cases, time.time() - result.duration_s)
        files_check, present = outputs.check_files(layout.predictions, data.cases)
        report.checks.append(files_check)
        report.checks += outputs.check_volumes(layout.predictions, layout.data, present, options.labels)
    else:
        report.checks += [skipped(n, "the run failed") for n in ("output_files", "output_geometry", "output_labels")]
    report.checks.append(
        outputs.check_containment(
            layout.sandbox, {"predictions", "cwd"}, layout.data, data_before, result.containment not in (None, "none")
        )
    )
    report.checks += attempt_checks(result.log, ran=ok, sandboxed=result.containment not in (None, "none"))
    if ok:
        _metrics(report, layout.predictions, data)
    else:
        report.checks.append(skipped("metrics", "the run failed"))
    report.checks.append(_forecast(report, options, data, result.duration_s if ok else None))
    if report.verdict == "PASS" and not options.keep:
        with contextlib.suppress(OSError):
            shutil.rmtree(root)
        report.work_dir = report.log = None
    report.check_duration_s = time.monotonic() - started
    return report


def _forecast(report: SubmissionReport, options: CheckOptions, data: CheckData, duration_s: float | None) -> Check:
    """Each site's predicted time and memory headroom (:mod:`.forecast`), from this run's measurements."""
    if not options.sites:
        return forecast.forecast_skipped("no benchmark sites to forecast for")
    if duration_s is None or not data.cases:
        return forecast.forecast_skipped("the run failed: nothing measured")
    voxels, shape = forecast.input_grid(data.data_dir, data.cases)
    measured = forecast.Measured(
        duration_s=duration_s,
        num_cases=len(data.cases),
        case_seconds=tuple(report.case_seconds.values()),
        voxels=voxels,
        shape=shape,
        peak_ram_bytes=report.peak_rss_bytes,
        peak_gpu_bytes=report.peak_gpu_memory_bytes,
    )
    report.forecast = forecast.forecast(measured, list(options.sites))
    return forecast.forecast_check(report.forecast)


def _sandbox_reason() -> str:
    from fedsim.runtimes.sandbox import probe

    found = probe()
    return f"{found.reason or 'unknown'}; fix: {found.fix}" if found.fix else found.reason or "unknown"


def _key(name: str) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:40]}-{secrets.token_hex(3)}"
