"""Stress-test results: per-set statistics, per-model summaries (pure), and their JSON and CSV exports.

Definitions (also in the README):

- a *set* is the cases under one shift at one level; the unshifted set (``none``, level 0) is every curve's
  level-0 point;
- per set and region: mean and worst (lowest) Dice, mean and worst (highest) HD95 over the cases;
- *set Dice*: the mean Dice over its regions and cases;
- *robustness* of a model: mean set Dice over all shifted sets divided by the unshifted set Dice (1 = no
  loss); per shift the same over that shift's levels;
- *worst shift*: the shift with the lowest mean set Dice over its levels;
- *WT drop level*: per shift, the first level whose mean WT Dice is more than 0.1 below the unshifted one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WT_DROP = 0.1
UNSHIFTED = "none"


@dataclass
class RegionStats:
    mean_dice: float
    worst_dice: float
    mean_hd95: float
    worst_hd95: float


@dataclass
class SetResult:
    """One model on one set: how the job ended and what its predictions scored."""

    model: str
    shift: str
    level: int
    parameter: str
    status: str
    reason: str = ""
    duration_s: float = 0.0
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    """case → ``{Dice_<R>, Hausdorff95_<R>, missing_pred}`` (the metric set's Dice/HD95 keys, renamed)."""
    regions: dict[str, RegionStats] = field(default_factory=dict)
    log: str | None = None
    runtime: str | None = None

    @property
    def invalid_cases(self) -> list[str]:
        """Cases without a usable prediction (missing, unreadable, misaligned) although the job succeeded."""
        if self.status != "succeeded":
            return []
        return sorted(c for c, row in self.cases.items() if row.get("missing_pred"))

    @property
    def failed(self) -> bool:
        return self.status != "succeeded" or bool(self.invalid_cases)

    @property
    def mean_dice(self) -> float:
        values = [r.mean_dice for r in self.regions.values()]
        return _mean(values)


@dataclass
class ShiftSummary:
    mean_dice: float
    robustness: float | None
    wt_drop_level: int | None
    worst_level_dice: float


@dataclass
class ModelSummary:
    model: str
    unshifted_dice: float
    shifted_dice: float
    robustness: float | None
    worst_shift: str | None
    failures: int
    per_shift: dict[str, ShiftSummary] = field(default_factory=dict)


@dataclass
class StressResults:
    models: list[str]
    shifts: list[str]
    levels: list[int]
    regions: list[str]
    metric_set: str
    runtime: str
    data: str
    seed: int
    sets: list[SetResult]
    summaries: dict[str, ModelSummary]
    duration_s: float = 0.0
    parameters: dict[str, dict[str, str]] = field(default_factory=dict)
    """shift → level → the parameter at that level (the shift table)."""

    def set_result(self, model: str, shift: str, level: int) -> SetResult | None:
        if level == 0:
            shift = UNSHIFTED
        for s in self.sets:
            if s.model == model and s.shift == shift and s.level == level:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for s, obj in zip(d["sets"], self.sets, strict=True):
            s["invalid_cases"] = obj.invalid_cases
            s["mean_dice"] = _json_float(obj.mean_dice)
        clean: dict[str, Any] = _clean_json(d)
        return clean


# ------------------------------------------------------------------------------------------ aggregation


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def region_stats(cases: dict[str, dict[str, Any]], regions: list[str]) -> dict[str, RegionStats]:
    out: dict[str, RegionStats] = {}
    for r in regions:
        dice = [float(row[f"Dice_{r}"]) for row in cases.values() if f"Dice_{r}" in row]
        hd = [float(row[f"Hausdorff95_{r}"]) for row in cases.values() if f"Hausdorff95_{r}" in row]
        dice_f = [v for v in dice if not math.isnan(v)]
        hd_f = [v for v in hd if not math.isnan(v)]
        out[r] = RegionStats(
            mean_dice=_mean(dice_f),
            worst_dice=min(dice_f) if dice_f else math.nan,
            mean_hd95=_mean(hd_f),
            worst_hd95=max(hd_f) if hd_f else math.nan,
        )
    return out


def summarise(
    sets: list[SetResult], models: list[str], shifts: list[str], levels: list[int]
) -> dict[str, ModelSummary]:
    """Robustness, worst shift and WT drop level of every model (see the module docstring)."""
    out: dict[str, ModelSummary] = {}
    shifted_levels = sorted(lv for lv in set(levels) if lv > 0)
    for model in models:
        base = next((s for s in sets if s.model == model and s.shift == UNSHIFTED), None)
        base_dice = base.mean_dice if base else math.nan
        base_wt = base.regions["WT"].mean_dice if base and "WT" in base.regions else math.nan
        per_shift: dict[str, ShiftSummary] = {}
        all_shifted: list[float] = []
        for shift in shifts:
            rows = [s for s in sets if s.model == model and s.shift == shift and s.level in shifted_levels]
            rows.sort(key=lambda s: s.level)
            dice = [s.mean_dice for s in rows]
            all_shifted += dice
            drop = None
            for s in rows:
                wt = s.regions["WT"].mean_dice if "WT" in s.regions else math.nan
                if not math.isnan(base_wt) and (math.isnan(wt) or wt < base_wt - WT_DROP):
                    drop = s.level
                    break
            mean = _mean(dice)
            per_shift[shift] = ShiftSummary(
                mean_dice=mean,
                robustness=_ratio(mean, base_dice),
                wt_drop_level=drop,
                worst_level_dice=dice[-1] if dice else math.nan,
            )
        shifted = _mean(all_shifted)
        ranked = [(ps.mean_dice, name) for name, ps in per_shift.items() if not math.isnan(ps.mean_dice)]
        out[model] = ModelSummary(
            model=model,
            unshifted_dice=base_dice,
            shifted_dice=shifted,
            robustness=_ratio(shifted, base_dice),
            worst_shift=min(ranked)[1] if ranked else None,
            failures=sum(1 for s in sets if s.model == model and s.failed),
            per_shift=per_shift,
        )
    return out


def _ratio(a: float, b: float) -> float | None:
    if math.isnan(a) or math.isnan(b) or b <= 0:
        return None
    return a / b


# ---------------------------------------------------------------------------------------------- export


def _json_float(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _clean_json(obj: Any) -> Any:
    """NaN and infinities become null: strict JSON readers (browsers, jq) reject them."""
    if isinstance(obj, dict):
        return {k: _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_json(v) for v in obj]
    if isinstance(obj, float):
        return _json_float(obj)
    return obj


SET_COLUMNS = [
    "model",
    "shift",
    "level",
    "parameter",
    "region",
    "mean_dice",
    "worst_dice",
    "mean_hd95",
    "worst_hd95",
    "cases",
    "invalid_cases",
    "status",
    "reason",
]
SUMMARY_COLUMNS = ["model", "scope", "unshifted_dice", "mean_dice", "robustness", "wt_drop_level", "worst_shift"]


def _fmt(v: float | int | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def sets_csv(results: StressResults) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SET_COLUMNS)
    for s in results.sets:
        for region, r in s.regions.items():
            w.writerow(
                [
                    s.model,
                    s.shift,
                    s.level,
                    s.parameter,
                    region,
                    _fmt(r.mean_dice),
                    _fmt(r.worst_dice),
                    _fmt(r.mean_hd95),
                    _fmt(r.worst_hd95),
                    len(s.cases),
                    len(s.invalid_cases),
                    s.status,
                    s.reason,
                ]
            )
    return buf.getvalue()


def summary_csv(results: StressResults) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    for m in results.summaries.values():
        w.writerow(
            [m.model, "all", _fmt(m.unshifted_dice), _fmt(m.shifted_dice), _fmt(m.robustness), "", m.worst_shift or ""]
        )
        for shift, ps in m.per_shift.items():
            w.writerow(
                [
                    m.model,
                    shift,
                    _fmt(m.unshifted_dice),
                    _fmt(ps.mean_dice),
                    _fmt(ps.robustness),
                    _fmt(ps.wt_drop_level),
                    "",
                ]
            )
    return buf.getvalue()


def write_exports(results: StressResults, out: Path, json_file: Path | None = None) -> list[Path]:
    """``stress.json``, ``stress.csv`` (per set and region) and ``stress_summary.csv`` (per model and shift)."""
    from fedsim.store.atomic import write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results.to_dict(), indent=2, allow_nan=False) + "\n"
    paths = [out / "stress.json", out / "stress.csv", out / "stress_summary.csv"]
    write_text_atomic(paths[0], text)
    write_text_atomic(paths[1], sets_csv(results))
    write_text_atomic(paths[2], summary_csv(results))
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json_file, text)
        paths.append(json_file)
    return paths


def results_from_dict(d: dict[str, Any]) -> StressResults:
    """The inverse of :meth:`StressResults.to_dict` (``stress.json`` back into objects; nulls become NaN)."""

    def f(v: Any) -> float:
        return math.nan if v is None else float(v)

    sets = [
        SetResult(
            model=s["model"],
            shift=s["shift"],
            level=int(s["level"]),
            parameter=s["parameter"],
            status=s["status"],
            reason=s.get("reason", ""),
            duration_s=f(s.get("duration_s")),
            cases=s.get("cases", {}),
            regions={r: RegionStats(**{k: f(v) for k, v in st.items()}) for r, st in s.get("regions", {}).items()},
            log=s.get("log"),
            runtime=s.get("runtime"),
        )
        for s in d["sets"]
    ]
    summaries = {
        name: ModelSummary(
            model=m["model"],
            unshifted_dice=f(m["unshifted_dice"]),
            shifted_dice=f(m["shifted_dice"]),
            robustness=m["robustness"],
            worst_shift=m["worst_shift"],
            failures=int(m["failures"]),
            per_shift={
                k: ShiftSummary(f(v["mean_dice"]), v["robustness"], v["wt_drop_level"], f(v["worst_level_dice"]))
                for k, v in m["per_shift"].items()
            },
        )
        for name, m in d["summaries"].items()
    }
    return StressResults(
        models=list(d["models"]),
        shifts=list(d["shifts"]),
        levels=[int(v) for v in d["levels"]],
        regions=list(d["regions"]),
        metric_set=d["metric_set"],
        runtime=d["runtime"],
        data=d["data"],
        seed=int(d["seed"]),
        sets=sets,
        summaries=summaries,
        duration_s=f(d.get("duration_s")),
        parameters=d.get("parameters", {}),
    )
