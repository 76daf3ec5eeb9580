"""The Configuration section: the run's settings, the benchmark's limits and models, what each site's jobs ran
on and under, and the recorded benchmark and site files."""

from __future__ import annotations

from html import escape

from fedsim.report.effective import site_effective
from fedsim.report.html.markup import NUM, num, section, size, table
from fedsim.report.runview import RecordedSite, RunView, recorded

__all__ = ["configuration"]

_NEUTRAL_SHIFT = {"intensity_scale": 1.0, "contrast_gamma": 1.0}  # every other shift is neutral at 0


def _data(site: RecordedSite | None) -> tuple[str, str]:
    """A site's data (synthetic: how many cases, which seed; else its path) and its non-neutral domain shift."""
    data = site.data if site is not None else None
    synth = data.synthesize if data is not None else None
    if synth is None:
        return str(data.path if data is not None and data.path is not None else "?"), ""
    described = f"synthetic: {synth.cases} cases, seed {synth.seed}"
    shift = ", ".join(f"{k}={v:g}" for k, v in synth.shift.model_dump().items() if v != _NEUTRAL_SHIFT.get(k, 0.0))
    return described, shift


def _sites(data: RunView) -> list[str]:
    rows = []
    any_configured = False
    for name in data.sites:
        cfg = data.sites_config.get(name)
        hw = cfg.hardware if cfg is not None else None
        got = site_effective(data.jobs, data.benchmark, cfg, name)  # what the jobs ran on and under
        any_configured |= not got.observed
        mark = "" if got.observed else " *"
        ran_on = escape(got.runtime) + (
            f' <span class="muted">(configured: {escape(got.configured_runtime)})</span>'
            if got.configured_runtime
            else ""
        )
        described, shift = _data(cfg)
        rows.append(
            [
                escape(name),
                ran_on,
                num(recorded(hw, "gpus"), "{}"),
                size(got.gpu_memory_bytes) + mark if got.gpu_memory_bytes is not None else NUM + "no GPU",
                size(got.ram_bytes) + mark,
                num(got.model_timeout_s, "{:g} s"),
                num(recorded(hw, "cpus"), "{}"),
                escape(described),
                escape(shift or "none"),
                num(len(data.institutions[name].cases) if name in data.institutions else None, "{}"),
            ]
        )
    header = ["site", "ran on", "GPUs", "GPU mem limit", "RAM limit", "model wall clock", "CPUs", "data"]
    parts = [table([*header, "domain shift", "cases scored"], rows)]
    if any_configured:
        parts.append('<p class="muted">* as configured: this run\'s jobs did not record their limits.</p>')
    return parts


def configuration(data: RunView, version: str) -> str:
    bench = data.benchmark
    limits = bench.limit_rows
    parts = [
        table(
            ["setting", "value"],
            [
                ["benchmark", escape(bench.name or data.summary.benchmark or "?")],
                ["run id", escape(data.run_id)],
                ["fedsim (run)", escape(data.summary.fedsim_version or "?")],
                ["fedsim (report)", escape(version)],
                ["ranking method", escape(data.method)],
                ["metric set", escape(bench.metric_set or "?")],
                ["run directory", escape(str(data.root))],
            ],
        ),
        "<h3>Limits (the benchmark's)</h3>",
        table(["limit", "value"], [[escape(k), escape(v)] for k, v in limits])
        if limits
        else '<p class="muted">not recorded</p>',
        '<p class="muted">A site narrows them to what it has: the Sites table shows what each site\'s jobs got '
        "(RAM: min(benchmark, site, machine); GPU memory: min(benchmark, site), only with a GPU).</p>",
        "<h3>Models</h3>",
        table(
            ["model", "cube", "image"],
            [[escape(m.name), escape(str(m.cube or "")), escape(m.image or "")] for m in bench.models],
        ),
        "<h3>Sites</h3>",
        *_sites(data),
        "<details><summary>benchmark.yaml as the run resolved it</summary>"
        f'<pre class="yaml">{escape(bench.text)}</pre></details>',
    ]
    for name, cfg in data.sites_config.items():
        parts.append(
            f'<details><summary>sites/{escape(name)}.yaml</summary><pre class="yaml">{escape(cfg.text)}</pre></details>'
        )
    return section("configuration", "Configuration", "\n".join(parts))
