"""What each site's jobs actually got, for the report's sites table: the runtime(s) they ran on (``auto`` resolved)
and the effective limits — RAM ``min(benchmark, site, machine)``, GPU memory ``min(benchmark, site)`` when a job had
a GPU, the models' wall clock — as the jobs recorded them (``JobResult.limits``), not as the files configured them.

Runs recorded before jobs kept their limits fall back to ``min(benchmark, site)`` from the run's configuration,
marked as configured rather than observed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fedsim.jobs.job import JobResult
from fedsim.report.loader import finite_int, finite_number
from fedsim.report.runview import RecordedBenchmark, RecordedSite, recorded

__all__ = ["SiteEffective", "site_effective"]

GiB = 1024**3


@dataclass(frozen=True)
class SiteEffective:
    runtime: str  # "docker", "local (submissions in bwrap)", ...; the configured one when nothing ran
    configured_runtime: str | None  # the site file's runtime when it differs from what ran (e.g. "auto")
    ram_bytes: int | None
    gpu_memory_bytes: int | None  # None: no job of the site had a GPU
    gpus: int | None
    model_timeout_s: float | None  # an infer job's wall clock (num_cases × timeout_per_case_s)
    observed: bool  # from the jobs' records (False: computed from the configuration of an older run)


def _runtime_label(jobs: list[JobResult]) -> tuple[str, set[str]]:
    """``docker``, ``local (submissions in bwrap)``, ``docker, local`` ...: the runtimes the jobs ran on, and how
    the submissions were held when that differs from their runtime. Also the plain runtime names."""
    runtimes: list[str] = []
    for j in jobs:
        if j.runtime and j.runtime not in runtimes:
            runtimes.append(j.runtime)
    held = []
    for j in jobs:
        containment = j.containment
        if j.kind == "infer" and containment not in (None, "", j.runtime) and containment not in held:
            held.append(str(containment))
    label = ", ".join(runtimes)
    if held:
        how = ", ".join("UNSANDBOXED" if c == "none" else c for c in held)
        label += f" (submissions in {how})" if "none" not in held else f" (submissions {how})"
    return label, set(runtimes)


def site_effective(
    jobs: Iterable[JobResult], benchmark: RecordedBenchmark, site_config: RecordedSite | None, site: str
) -> SiteEffective:
    """What ``site``'s jobs (out of ``jobs``, every job of the run) ran on and under."""
    own = [j for j in jobs if j.site == site]
    label, plain = _runtime_label(own)
    configured = (site_config.runtime if site_config is not None else None) or "?"
    runtime = label or configured
    shown_configured = configured if plain and plain != {configured} else None

    infer = [j for j in own if j.kind == "infer" and j.limits is not None]
    with_limits = infer or [j for j in own if j.limits is not None]
    if with_limits:
        limits = [j.limits for j in with_limits if j.limits is not None]
        rams = [r for r in (finite_int(lim.get("ram_bytes")) for lim in limits) if r is not None]
        gpu_mems = [g for g in (finite_int(lim.get("gpu_memory_bytes")) for lim in limits) if g is not None]
        gpus = [g for g in (finite_int(lim.get("gpus")) for lim in limits) if g is not None]
        timeouts = [t for t in (finite_number((j.limits or {}).get("timeout_s")) for j in infer) if t is not None]
        return SiteEffective(
            runtime=runtime,
            configured_runtime=shown_configured,
            ram_bytes=max(rams) if rams else None,
            gpu_memory_bytes=max(gpu_mems) if gpu_mems else None,
            gpus=max(gpus) if gpus else None,
            model_timeout_s=max(timeouts) if timeouts else None,
            observed=True,
        )
    # only what the files recorded (an older run's defaults may not be today's)
    hw = site_config.hardware if site_config is not None else None
    ram = [v for v in (recorded(benchmark.limits, "ram_gb"), recorded(hw, "ram_gb")) if v is not None]
    gpu = [v for v in (recorded(benchmark.limits, "gpu_memory_gb"), recorded(hw, "gpu_memory_gb")) if v is not None]
    site_gpus = finite_int(recorded(hw, "gpus"))
    return SiteEffective(
        runtime=runtime,
        configured_runtime=shown_configured,
        ram_bytes=int(min(ram) * GiB) if ram else None,
        gpu_memory_bytes=int(min(gpu) * GiB) if gpu and site_gpus else None,
        gpus=site_gpus,
        model_timeout_s=None,
        observed=False,
    )
