"""Machine-readable exports of a run: ``results_long.csv`` (one value per row) and ``summary_report.json``."""

from __future__ import annotations

import codecs
import csv
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fedsim.pipeline.run import output_problem_counts
from fedsim.report.jsonout import json_safe
from fedsim.report.loader import split_metric
from fedsim.report.runview import RunView
from fedsim.report.stability import RankStability
from fedsim.store.atomic import open_atomic, write_json_atomic

__all__ = [
    "LONG_COLUMNS",
    "long_rows",
    "output_problems",
    "site_means",
    "summary_dict",
    "write_results_long",
    "write_summary_json",
]

LONG_COLUMNS = ("site", "case", "model", "region", "metric", "value")
# the families whose per-site means summary_report.json carries: FeTS's, and BraTS 2025's ranked and global ones
_SUMMARY_FAMILIES = {
    "Dice", "Hausdorff95", "Sensitivity", "Specificity", "Precision",
    "lesionwise_dsc_mean", "lesionwise_nsd_mean", "lesionwise_hd95_mean", "global_dsc", "global_nsd", "global_hd95",
}  # fmt: skip


def long_rows(data: RunView) -> Iterator[tuple[str, str, str, str, str, float]]:
    """``(site, case, model, region, metric, value)`` for every metric value of every site; NaN is NA."""
    for site in sorted(data.institutions):
        inst = data.institutions[site]
        for case in inst.case_ids:
            for model in sorted(inst.cases[case]):
                for key, value in inst.cases[case][model].items():
                    metric, region = split_metric(key)
                    yield site, case, model, region, metric, value


def _format(value: float) -> str:
    if math.isnan(value):
        return ""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def write_results_long(data: RunView, path: Path) -> Path:
    """Stream the rows into the file (a run of 100 sites × 10 models has ~100,000), replaced atomically."""
    with open_atomic(path) as fh:
        writer = csv.writer(codecs.getwriter("utf-8")(fh), lineterminator="\n")
        writer.writerow(LONG_COLUMNS)
        for site, case, model, region, metric, value in long_rows(data):
            writer.writerow((site, case, model, region, metric, _format(value)))
    return path


def site_means(data: RunView, key: str) -> dict[str, dict[str, float | None]]:
    """``means[model][site]`` of one flat metric key over the site's cases, NA values left out."""
    out: dict[str, dict[str, float | None]] = {}
    for model in data.models:
        row: dict[str, float | None] = {}
        for site in data.sites:
            inst = data.institutions.get(site)
            values = []
            if inst is not None:
                for per_case in inst.cases.values():
                    v = per_case.get(model, {}).get(key, math.nan)
                    if math.isfinite(v):
                        values.append(v)
            row[site] = math.fsum(values) / len(values) if values else None
        out[model] = row
    return out


def metric_keys(data: RunView) -> list[str]:
    """Flat metric keys present in the run, in the metrics cube's order."""
    seen: dict[str, None] = {}
    for inst in data.institutions.values():
        for per_case in inst.cases.values():
            for metrics in per_case.values():
                seen.update(dict.fromkeys(metrics))
    return list(seen)


def summary_dict(data: RunView, stability: RankStability | None) -> dict[str, Any]:
    jobs = data.jobs
    statuses: dict[str, int] = {}
    for j in jobs:
        statuses[j.status.value] = statuses.get(j.status.value, 0) + 1
    ranking: dict[str, Any] | None = None
    if data.ranking is not None:
        r = data.ranking
        ranking = {
            "method": r.method,
            "algorithms": list(r.algorithms),
            "final_rank": r.final_rank,
            "final_score": r.final_score,
            "institution_scores": r.institution_scores,
            "significant_wins": r.significant_wins,
            "significant": r.significant,
        }
    means = {key: site_means(data, key) for key in metric_keys(data) if split_metric(key)[0] in _SUMMARY_FAMILIES}
    from fedsim import __version__

    return {
        "run_id": data.run_id,
        "benchmark": data.summary.benchmark or data.benchmark.name,
        "fedsim_version": data.summary.fedsim_version,
        "report_fedsim_version": __version__,
        "started_at": data.summary.started_at,
        "duration_s": data.summary.duration_s,
        "interrupted": data.summary.interrupted,
        "sites": list(data.sites),
        "models": list(data.models),
        "cases": {s: len(i.cases) for s, i in data.institutions.items()},
        "jobs": {"total": len(jobs), "by_status": statuses},
        # how each job was held (docker, singularity, bwrap, none): "site/job" -> containment
        "containment": {f"{j.site}/{j.name}": j.containment for j in jobs},
        # the container each job ran (tag, image id, repo digest, archive/SIF hash): "site/job" -> provenance
        "images": {f"{j.site}/{j.name}": j.image for j in jobs if j.image},
        "failures": [
            {"site": j.site, "job": j.name, "status": j.status.value, "reason": j.reason, "exit_code": j.exit_code}
            for j in jobs
            if not j.status.finished_ok
        ],
        # succeeded infers whose predictions the federation would reject (scored as written): counts and why
        "output_problems": output_problems(data),
        "ranking": ranking,
        "stability": stability.to_dict() if stability is not None else None,
        "site_means": means,
    }


def output_problems(data: RunView) -> dict[str, Any]:
    """Invalid predictions per model (cases, and the cases of each site) and per job (case -> why)."""
    counts = output_problem_counts(list(data.jobs))  # what the run's summary.json counts, from the same jobs
    by_model = {m: {"cases": n, "sites": counts["by_model_and_site"][m]} for m, n in counts["by_model"].items()}
    jobs = [
        {
            "site": j.site,
            "job": j.name,
            "model": j.model or j.name,
            "num_cases": j.num_cases,
            "cases": {c: list(ps) for c, ps in j.output_problems.items()},
        }
        for j in data.jobs
        if j.output_problems
    ]
    return {"cases": counts["cases"], "by_model": by_model, "jobs": jobs}


class _Flaggable(Protocol):
    @property
    def site(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def num_cases(self) -> int | None: ...
    @property
    def output_problems(self) -> Mapping[str, Sequence[str]]: ...


_J = TypeVar("_J", bound=_Flaggable)


def flagged_models(jobs: Iterable[_J]) -> dict[str, tuple[int, int, list[_J]]]:
    """Models whose predictions were invalid somewhere, first flagged first: ``model -> (invalid cases, cases of
    those jobs, those jobs)``. For JobResults, and anything shaped like them."""
    out: dict[str, tuple[int, int, list[_J]]] = {}
    for j in jobs:
        if j.output_problems:
            bad, total, flagged = out.get(j.model or j.name, (0, 0, []))
            n = len(j.output_problems)
            out[j.model or j.name] = (bad + n, total + (j.num_cases or n), [*flagged, j])
    return out


def write_summary_json(data: RunView, stability: RankStability | None, path: Path) -> Path:
    write_json_atomic(path, json_safe(summary_dict(data, stability)))
    return path
