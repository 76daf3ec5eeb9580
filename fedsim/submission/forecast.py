"""Time-budget forecast: would this submission fit each site's deadline, RAM and GPU memory?

No challenge tool has one. From the check's own run (a few small cases) it predicts, for every site of a
benchmark, the wall time of ``infer`` over the site's cases against the deadline fedsim and the federation
impose (``cases × timeout_per_case_s``), and the measured peaks against the site's limits
(``min(benchmark limit, site hardware)``, as :func:`fedsim.jobs.factory.model_limits`), each with its
headroom in %; below :data:`HEADROOM_PCT` it warns.

What the numbers rest on (the output says so too):

- **time per case** = the job's wall clock / its cases (start-up, i.e. loading the model, is counted as per-case
  time, so the forecast errs on the slow side); the **spread** is the fastest and slowest case, from the
  write times of the predictions (written one by one; the first case includes the start-up);
- **case size**: times scale linearly with the voxel count, from the check's cases to the benchmark's
  ``data.expected_shape`` (the shape every prepared case has after the data-prep sanity check) — ×15 for the
  default 96×96×64 toy cases against 240×240×155; with ``--data`` on full-size cases the factor is 1;
- **memory** peaks are as measured, not scaled: they depend on the model's patching as much as on the case size,
  so small cases understate them (the bundled baseline: 0.06 GiB on 96×96×64, 0.40 GiB on 240×240×155);
  ``--data`` with full-size cases measures them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedsim.submission.report import Check, passed, skipped, warning

if TYPE_CHECKING:
    from fedsim.spec import BenchmarkSpec, SiteSpec

GiB = 1024**3
HEADROOM_PCT = 25.0  # below this much headroom a limit is a warning


@dataclass(frozen=True)
class SiteBudget:
    """What one site gives a submission: its cases (of ``shape``) and its limits (``gpu_memory_gb`` None: no GPU)."""

    site: str
    cases: int
    timeout_per_case_s: float
    ram_gb: float
    gpu_memory_gb: float | None
    shape: tuple[int, int, int] | None = None

    @property
    def budget_s(self) -> float:
        return self.cases * self.timeout_per_case_s


@dataclass(frozen=True)
class Measured:
    """What the check's run measured: wall clock over ``num_cases`` cases of ``voxels`` voxels (mean)."""

    duration_s: float
    num_cases: int
    case_seconds: tuple[float, ...] = ()  # per case, from the predictions' write times
    voxels: float | None = None
    shape: str = ""  # the check's case shape, for the output ("96x96x64")
    peak_ram_bytes: int | None = None
    peak_gpu_bytes: int | None = None

    @property
    def seconds_per_case(self) -> float:
        return self.duration_s / self.num_cases


def margin_pct(used: float | None, limit: float | None) -> float | None:
    """Headroom left under ``limit``, in % of it (negative: over the limit); None when either is unknown."""
    if used is None or limit is None or limit <= 0:
        return None
    return (limit - used) / limit * 100.0


@dataclass(frozen=True)
class SiteForecast:
    """The forecast for one site. Times in seconds, memory in GiB (fedsim's ``GB`` limits are GiB)."""

    site: str
    cases: int
    scale: float  # site voxels / check voxels
    predicted_s: float
    low_s: float
    high_s: float
    budget_s: float
    ram_peak_gb: float | None
    ram_limit_gb: float
    gpu_peak_gb: float | None
    gpu_limit_gb: float | None  # None: the site has no GPU

    @property
    def time_margin_pct(self) -> float | None:
        return margin_pct(self.predicted_s, self.budget_s)

    @property
    def ram_margin_pct(self) -> float | None:
        return margin_pct(self.ram_peak_gb, self.ram_limit_gb)

    @property
    def gpu_margin_pct(self) -> float | None:
        return margin_pct(self.gpu_peak_gb, self.gpu_limit_gb)

    def warnings(self) -> list[str]:
        """One line per limit with less than :data:`HEADROOM_PCT` headroom (or a GPU the site lacks)."""
        out: list[str] = []
        t = self.time_margin_pct
        if t is not None and t < HEADROOM_PCT:
            out.append(
                f"{self.site}: predicted {self.predicted_s:,.0f} s of a {self.budget_s:,.0f} s budget "
                f"({self.cases} cases): {_pct(t)} headroom"
            )
        r = self.ram_margin_pct
        if r is not None and r < HEADROOM_PCT:
            out.append(f"{self.site}: peak RAM {self.ram_peak_gb:.2f} of {self.ram_limit_gb:g} GB: {_pct(r)} headroom")
        if self.gpu_limit_gb is None:
            if self.gpu_peak_gb:
                out.append(
                    f"{self.site}: has no GPU, and this model used {self.gpu_peak_gb:.2f} GB of GPU memory here "
                    "(there it runs on the CPU: slower than forecast)"
                )
        else:
            g = self.gpu_margin_pct
            if g is not None and g < HEADROOM_PCT:
                out.append(
                    f"{self.site}: peak GPU memory {self.gpu_peak_gb:.2f} of {self.gpu_limit_gb:g} GB: "
                    f"{_pct(g)} headroom"
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "cases": self.cases,
            "scale": _r(self.scale),
            "predicted_s": _r(self.predicted_s),
            "predicted_low_s": _r(self.low_s),
            "predicted_high_s": _r(self.high_s),
            "budget_s": _r(self.budget_s),
            "time_margin_pct": _r(self.time_margin_pct),
            "ram_peak_gb": _r(self.ram_peak_gb),
            "ram_limit_gb": _r(self.ram_limit_gb),
            "ram_margin_pct": _r(self.ram_margin_pct),
            "gpu_peak_gb": _r(self.gpu_peak_gb),
            "gpu_limit_gb": _r(self.gpu_limit_gb),
            "gpu_margin_pct": _r(self.gpu_margin_pct),
            "warnings": self.warnings(),
        }


def _pct(value: float) -> str:
    return f"{value:.0f} %"


def _r(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 2)


def _voxels(shape: tuple[int, int, int] | None) -> int | None:
    return None if shape is None else shape[0] * shape[1] * shape[2]


def forecast_site(measured: Measured, site: SiteBudget) -> SiteForecast:
    """The arithmetic: time per case × voxel ratio × the site's cases; spread from the fastest and slowest case."""
    site_voxels = _voxels(site.shape)
    scale = site_voxels / measured.voxels if site_voxels and measured.voxels else 1.0
    per_case = measured.seconds_per_case
    samples = measured.case_seconds if len(measured.case_seconds) >= 2 else ()
    low, high = (min(samples), max(samples)) if samples else (per_case, per_case)
    factor = scale * site.cases
    gpu_peak = None if measured.peak_gpu_bytes is None else measured.peak_gpu_bytes / GiB
    return SiteForecast(
        site=site.site,
        cases=site.cases,
        scale=scale,
        predicted_s=per_case * factor,
        low_s=min(low, per_case) * factor,
        high_s=max(high, per_case) * factor,
        budget_s=site.budget_s,
        ram_peak_gb=None if measured.peak_ram_bytes is None else measured.peak_ram_bytes / GiB,
        ram_limit_gb=site.ram_gb,
        gpu_peak_gb=gpu_peak,
        gpu_limit_gb=site.gpu_memory_gb,
    )


@dataclass(frozen=True)
class Forecast:
    """Every site's forecast and the one-line basis it rests on."""

    sites: tuple[SiteForecast, ...]
    basis: str
    method: str = ""

    def warnings(self) -> list[str]:
        return [w for s in self.sites for w in s.warnings()]

    def to_dict(self) -> dict[str, Any]:
        return {"headroom_warning_pct": HEADROOM_PCT, "basis": self.basis, "sites": [s.to_dict() for s in self.sites]}


def method(measured: Measured, sites: list[SiteBudget]) -> str:
    """How the forecast is made, in one line: scaling, start-up, spread, memory (the same for every submission
    checked on the same cases)."""
    parts = ["time = s/case (the run's wall clock / its cases; start-up counted as case time) × site cases"]
    shapes = sorted({s.shape for s in sites if s.shape is not None})
    scales = sorted({round(math.prod(s) / measured.voxels, 2) for s in shapes}) if measured.voxels else []
    if scales and scales != [1.0]:
        site_shapes = ", ".join("x".join(map(str, s)) for s in shapes)
        factor = ", ".join(f"×{x:g}" for x in scales)
        parts.append(f"scaled {factor} by voxel count from {measured.shape or 'the check cases'} to {site_shapes}")
    parts.append(
        "spread: fastest to slowest case (prediction write times)"
        if len(measured.case_seconds) >= 2
        else "no spread (per-case times need 2+ cases)"
    )
    scaled = bool(scales) and scales != [1.0]
    parts.append(
        "memory peaks as measured, not scaled (on smaller cases they understate full-size arrays: "
        "measure them with --data on full-size cases)"
        if scaled
        else "memory peaks as measured"
    )
    return "; ".join(parts)


def basis(measured: Measured, sites: list[SiteBudget]) -> str:
    """What this forecast rests on, in one line (printed under its table)."""
    n = measured.num_cases
    head = f"{measured.seconds_per_case:.2f} s/case measured over {n} case{'s' if n != 1 else ''}"
    return f"{head}; {method(measured, sites)}"


def forecast(measured: Measured, sites: list[SiteBudget]) -> Forecast:
    sites_ = tuple(forecast_site(measured, s) for s in sites)
    return Forecast(sites_, basis(measured, sites), method(measured, sites))


def forecast_check(result: Forecast) -> Check:
    """``forecast``: a warning when any site has less than :data:`HEADROOM_PCT` headroom on any limit."""
    found = result.warnings()
    if found:
        return warning(
            "forecast",
            "; ".join(found[:3]) + (f" (+{len(found) - 3} more)" if len(found) > 3 else ""),
            f"keep at least {HEADROOM_PCT:.0f} % headroom: a site's disk, CPU or GPU can be slower and busier "
            "than this machine (faster inference, or less memory)",
            found,
        )
    times = [s.time_margin_pct for s in result.sites if s.time_margin_pct is not None]
    rams = [s.ram_margin_pct for s in result.sites if s.ram_margin_pct is not None]
    worst = [f"time {min(times):.0f} %"] if times else []
    worst += [f"RAM {min(rams):.0f} %"] if rams else []
    note = f"{len(result.sites)} site(s), every headroom ≥ {HEADROOM_PCT:.0f} %"
    return passed("forecast", note + (f" (tightest: {', '.join(worst)})" if worst else ""))


def forecast_skipped(why: str) -> Check:
    return skipped("forecast", why)


def input_grid(data_dir: Path, cases: tuple[str, ...]) -> tuple[float | None, str]:
    """Mean voxel count of the cases' first input volume (headers only) and the shape(s) as text."""
    import nibabel as nib

    voxels: list[int] = []
    shapes: list[str] = []
    for case in cases:
        for path in sorted((data_dir / case).glob("*.nii*")):
            try:
                shape = tuple(int(s) for s in nib.load(str(path)).shape[:3])  # type: ignore[attr-defined]
            except Exception:  # inputs are ours or the caller's: an unreadable one is just not measured
                continue
            voxels.append(math.prod(shape))
            text = "x".join(map(str, shape))
            if text not in shapes:
                shapes.append(text)
            break
    if not voxels:
        return None, ""
    return sum(voxels) / len(voxels), ", ".join(shapes)


def site_budgets(bench: BenchmarkSpec, sites: list[SiteSpec]) -> list[SiteBudget]:
    """Each site's cases and limits: ``data.synthesize.cases`` or the case folders in ``data.path``; limits as
    :func:`fedsim.jobs.factory.model_limits` narrows the benchmark's to the site's hardware."""
    from fedsim.jobs.factory import model_limits

    out: list[SiteBudget] = []
    for site in sites:
        limits = model_limits(bench.limits, site.hardware)
        out.append(
            SiteBudget(
                site=site.name,
                cases=_case_count(site),
                timeout_per_case_s=limits.timeout_per_case_s,
                ram_gb=limits.ram_gb,
                gpu_memory_gb=limits.gpu_memory_gb if site.hardware.gpus > 0 else None,
                shape=tuple(bench.data.expected_shape),  # type: ignore[arg-type]
            )
        )
    return out


def _case_count(site: SiteSpec) -> int:
    path = site.data.path
    if path is not None and path.is_dir():
        found = sum(1 for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if found or site.data.synthesize is None:
            return found
    return site.data.synthesize.cases if site.data.synthesize is not None else 0


def load_site_budgets(benchmark: Path) -> list[SiteBudget]:
    """The sites of a benchmark directory (or ``benchmark.yaml``), with the fedsim spec loader."""
    from fedsim.spec import load_benchmark, load_sites

    bench = load_benchmark(benchmark)
    return site_budgets(bench, load_sites(list(bench.sites)))
