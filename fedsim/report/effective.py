"""What each site's jobs actually got, for the report's sites table: the runtime(s) they ran on (``auto`` resolved)
and the effective limits — RAM ``min(benchmark, site, machine)``, GPU memory ``min(benchmark, site)`` when a job had
a GPU, the models' wall clock — as the jobs recorded them (``JobResult.limits``), not as the files configured them.

Runs recorded before jobs kept their limits fall back to ``min(benchmark, site)`` from the run's configuration,
marked as configured rather than observed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedsim.report.loader import _int, _number

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


def _runtime_label(jobs: list[dict[str, Any]]) -> tuple[str, set[str]]:
    """``docker``, ``local (submissions in bwrap)``, ``docker, local`` ...: the runtimes the jobs ran on, and how
    the submissions were held when that differs from their runtime. Also the plain runtime names."""
    runtimes: list[str] = []
    for j in jobs:
        if j.get("runtime") and str(j["runtime"]) not in runtimes:
            runtimes.append(str(j["runtime"]))
    held = []
    for j in jobs:
        containment = j.get("containment")
        if j.get("kind") == "infer" and containment not in (None, "", j.get("runtime")) and containment not in held:
            held.append(str(containment))
    label = ", ".join(runtimes)
    if held:
        how = ", ".join("UNSANDBOXED" if c == "none" else c for c in held)
        label += f" (submissions in {how})" if "none" not in held else f" (submissions {how})"
    return label, set(runtimes)


def site_effective(
    summary: dict[str, Any], benchmark: dict[str, Any], site_config: dict[str, Any], site: str
) -> SiteEffective:
    jobs = [j for j in summary.get("jobs") or [] if isinstance(j, dict) and j.get("site") == site]
    label, plain = _runtime_label(jobs)
    configured = str(site_config.get("runtime") or "?")
    runtime = label or configured
    shown_configured = configured if plain and plain != {configured} else None

    infer = [j for j in jobs if j.get("kind") == "infer" and isinstance(j.get("limits"), dict)]
    recorded = infer or [j for j in jobs if isinstance(j.get("limits"), dict)]
    if recorded:
        limits = [j["limits"] for j in recorded]
        rams = [r for r in (_int(lim.get("ram_bytes")) for lim in limits) if r is not None]
        gpu_mems = [g for g in (_int(lim.get("gpu_memory_bytes")) for lim in limits) if g is not None]
        gpus = [g for g in (_int(lim.get("gpus")) for lim in limits) if g is not None]
        timeouts = [t for t in (_number(j["limits"].get("timeout_s")) for j in infer) if t is not None]
        return SiteEffective(
            runtime=runtime,
            configured_runtime=shown_configured,
            ram_bytes=max(rams) if rams else None,
            gpu_memory_bytes=max(gpu_mems) if gpu_mems else None,
            gpus=max(gpus) if gpus else None,
            model_timeout_s=max(timeouts) if timeouts else None,
            observed=True,
        )
    bench_limits = benchmark.get("limits") or {}
    hw = site_config.get("hardware") or {}
    ram = [v for v in (_number(bench_limits.get("ram_gb")), _number(hw.get("ram_gb"))) if v is not None]
    gpu = [v for v in (_number(bench_limits.get("gpu_memory_gb")), _number(hw.get("gpu_memory_gb"))) if v is not None]
    site_gpus = _int(hw.get("gpus"))
    return SiteEffective(
        runtime=runtime,
        configured_runtime=shown_configured,
        ram_bytes=int(min(ram) * GiB) if ram else None,
        gpu_memory_bytes=int(min(gpu) * GiB) if gpu and site_gpus else None,
        gpus=site_gpus,
        model_timeout_s=None,
        observed=False,
    )
