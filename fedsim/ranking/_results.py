"""Per-institution results: loading and validating the metrics cube's YAML files.

Raw YAML exists only here: everything past ``InstitutionResults`` sees validated floats, so a typo in a metric
key or a string where a number belongs fails at load time with the file and the field path, never as a silent
NA that would quietly push an algorithm to the bottom of the ranking.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from fedsim.errors import SpecError
from fedsim.yamlsafe import BoundedSafeLoader, InvalidYaml, one_line, safe_load_text, short_repr

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "BRATS2025_METRICS",
    "FETS_SCHEME",
    "METRICS",
    "NA_FILL",
    "REGIONS",
    "SUBRANKINGS",
    "InstitutionResults",
    "Scheme",
    "brats2025_scheme",
    "detect_scheme",
    "load_institutions",
]

REGIONS: tuple[str, ...] = ("ET", "TC", "WT")
METRICS: tuple[str, ...] = ("Dice", "Hausdorff95")
#: The six sub-rankings of every institution, in CSV column order.
SUBRANKINGS: tuple[tuple[str, str], ...] = tuple((m, r) for m in METRICS for r in REGIONS)
#: challengeR's ``na.treat`` as FeTS used it: a missing value counts as the worst possible one.
NA_FILL: dict[str, float] = {"Dice": 0.0, "Hausdorff95": 1000.0}

_KNOWN_KEY = re.compile(
    r"^(?:(?:Dice|Hausdorff95|Sensitivity|Specificity|Precision|TP|FP|TN|FN)_(?:ET|TC|WT)"
    r"|missing_pred|LesionWise_\w+"
    r"|(?:all_instance_(?:tp|fp|fn|prec|rec|f1)|global_(?:dsc|nsd|hd95)|lesionwise_(?:dsc|nsd|hd95)_(?:mean|std))"
    r"_[A-Za-z0-9]+)$"
)
_KNOWN_KEYS_HELP = (
    "known keys: {Dice,Hausdorff95,Sensitivity,Specificity,Precision,TP,FP,TN,FN}_{ET,TC,WT}, "
    "missing_pred, LesionWise_*, BraTS 2025's all_instance_*_<region>, global_*_<region>, lesionwise_*_<region>"
)
#: The BraTS 2025 set's ranked metrics: lesion-wise Dice and NSD (higher is better; HD95 is reported, not ranked).
BRATS2025_METRICS: tuple[str, ...] = ("lesionwise_dsc_mean", "lesionwise_nsd_mean")
_BRATS2025_REGION = re.compile(r"^lesionwise_dsc_mean_([A-Za-z0-9]+)$")


@dataclass(frozen=True)
class Scheme:
    """What an institution ranks: the sub-rankings ``(metric, region)`` (key ``<metric>_<region>``), which
    metrics are better high, the value of an NA (absent: no result) and of a key present with an NA value."""

    name: str
    subrankings: tuple[tuple[str, str], ...]
    higher_better: frozenset[str]
    na_fill: dict[str, float]
    empty_fill: dict[str, float] = field(default_factory=dict)


#: FeTS 2022 task 2: Dice and HD95 of ET, TC, WT; an NA is the worst value (Dice 0, HD95 1000).
FETS_SCHEME = Scheme("brats2021", SUBRANKINGS, frozenset({"Dice"}), NA_FILL)


def brats2025_scheme(regions: tuple[str, ...]) -> Scheme:
    """Lesion-wise Dice and NSD per region. An NA value (NaN: the region is empty in truth and prediction,
    nothing to find and nothing found) counts as 1, the best; no result at all counts as 0, the worst (the
    metrics cube writes 0 for a missing prediction itself)."""
    subs = tuple((m, r) for m in BRATS2025_METRICS for r in regions)
    return Scheme(
        "brats2025",
        subs,
        frozenset(BRATS2025_METRICS),
        dict.fromkeys(BRATS2025_METRICS, 0.0),
        dict.fromkeys(BRATS2025_METRICS, 1.0),
    )


def detect_scheme(institutions: Mapping[str, InstitutionResults]) -> Scheme:
    """BraTS 2025 when the results hold its lesion-wise keys (regions in the order first seen), else FeTS."""
    regions: list[str] = []
    for inst in institutions.values():
        for per_case in inst.cases.values():
            for metrics in per_case.values():
                for key in metrics:
                    m = _BRATS2025_REGION.match(key)
                    if m and m.group(1) not in regions:
                        regions.append(m.group(1))
    return brats2025_scheme(tuple(regions)) if regions else FETS_SCHEME


_EXAMPLE_KEYS = [
    f"{m}_{r}" for m in ("Dice", "Hausdorff95", "Sensitivity", "Specificity", "Precision") for r in REGIONS
]
_NA_STRINGS = frozenset({"na", "nan", "null", "none", ""})
_BOUNDED = {"Dice": (0.0, 1.0), "Hausdorff95": (0.0, math.inf)}
_SUFFIXES = (".yaml", ".yml")


def _one_line(text: object) -> str:
    """Keys come from user files: keep every message on one line whatever they contain, and keys whole."""
    return one_line(text, limit=None)


class _UniqueKeyLoader(BoundedSafeLoader):
    """Bounded SafeLoader that rejects duplicate keys, which plain YAML would silently let the last one win."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            break  # construct_mapping reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {_one_line(key)!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class InstitutionResults:
    """One institution's metrics: ``cases[case][algorithm][metric_key]`` as floats, NaN meaning NA.

    Build it with :meth:`from_mapping` (or :func:`load_institutions`) so the contents are validated.
    """

    name: str
    cases: dict[str, dict[str, dict[str, float]]]
    source: str | None = field(default=None, compare=False)

    @property
    def case_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self.cases))

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Every algorithm with a result for at least one case here."""
        return tuple(sorted({algo for per_case in self.cases.values() for algo in per_case}))

    def values(
        self, metric: str, region: str, algorithms: tuple[str, ...], scheme: Scheme | None = None
    ) -> NDArray[np.float64]:
        """Matrix ``[case, algorithm]`` of one metric; NA (absent, null, NaN, ±inf) becomes the worst value,
        or the scheme's ``empty_fill`` when the key is there with an NA value.

        ``algorithms`` may name algorithms absent here: their whole column is then the worst value.
        """
        scheme = scheme or FETS_SCHEME
        fill = scheme.na_fill[metric]
        empty = scheme.empty_fill.get(metric)
        key = f"{metric}_{region}"
        out = np.full((len(self.cases), len(algorithms)), fill, dtype=float)
        for i, case in enumerate(self.case_ids):
            per_case = self.cases[case]
            for j, algo in enumerate(algorithms):
                metrics = per_case.get(algo, {})
                value = metrics.get(key, math.nan)
                if math.isfinite(value):
                    out[i, j] = value
                elif empty is not None and key in metrics and math.isnan(value):
                    out[i, j] = empty
        return out

    @classmethod
    def from_mapping(cls, name: str, data: Any, *, source: str | None = None) -> InstitutionResults:
        """Validate ``case -> algorithm -> {metric: value}`` (as parsed from YAML) into an instance."""
        file = source or name
        if data is None:
            raise SpecError("is empty; rerun the metrics cube or remove the file", file=file)
        if not isinstance(data, Mapping):
            raise SpecError(
                f"top level must be a mapping case -> algorithm -> metrics, got {_kind(data)}; "
                "write one 'case_id:' block per case",
                file=file,
            )
        if not data:
            raise SpecError("no cases; the metrics cube wrote an empty results file, rerun it", file=file)
        cases: dict[str, dict[str, dict[str, float]]] = {}
        for raw_case, per_case in data.items():
            case = _key(raw_case, cases, file, "")
            if not isinstance(per_case, Mapping):
                raise SpecError(
                    f"must be a mapping algorithm -> metrics, got {_kind(per_case)}; "
                    "nest each algorithm's metrics under the case",
                    file=file,
                    field=case,
                )
            algos: dict[str, dict[str, float]] = {}
            for raw_algo, metrics in per_case.items():
                algo = _key(raw_algo, algos, file, f"{case}.")
                path = f"{case}.{algo}"
                if not isinstance(metrics, Mapping):
                    raise SpecError(
                        f"must be a mapping metric -> value, got {_kind(metrics)}; "
                        "give flat keys such as Dice_ET: 0.87 (omit the algorithm if it has no result)",
                        file=file,
                        field=path,
                    )
                # _metric_value rejects keys that are not strings, so _one_line(k) is the key itself when kept
                algos[algo] = {
                    _one_line(k): _metric_value(k, v, file, f"{path}.{_one_line(k)}") for k, v in metrics.items()
                }
            cases[case] = algos
        if not any(cases.values()):
            raise SpecError("no algorithm has a result for any case; rerun the metrics cube", file=file)
        return cls(name=name, cases=cases, source=source)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _key(raw: Any, seen: Mapping[str, Any], file: str, prefix: str) -> str:
    key = _one_line(raw)
    if not key or not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise SpecError(
            f"key {key!r} is not a case or algorithm name; use a plain string",
            file=file,
            field=f"{prefix}{key}",
        )
    if key in seen:
        raise SpecError("appears twice (as text and as a number); keep one entry", file=file, field=prefix + key)
    return key


def _metric_value(raw_key: Any, value: Any, file: str, path: str) -> float:
    key = raw_key if isinstance(raw_key, str) else _one_line(raw_key)
    if not isinstance(raw_key, str) or not _KNOWN_KEY.match(key):
        candidates = {k.lower(): k for k in [*_EXAMPLE_KEYS, "missing_pred"]}
        close = difflib.get_close_matches(key.lower(), list(candidates), n=1)
        hint = f"did you mean {candidates[close[0]]!r}? " if close else ""
        raise SpecError(f"unknown metric key {_one_line(key)!r}; {hint}{_KNOWN_KEYS_HELP}", file=file, field=path)
    if value is None:
        return math.nan
    if isinstance(value, bool):
        if key == "missing_pred":
            return float(value)
        raise SpecError(f"{value!r} is not a number; give a number or null for NA", file=file, field=path)
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond 1.8e308 (e.g. a 0xfff... literal): out of any bound below
            number = math.inf if value > 0 else -math.inf
    elif isinstance(value, str) and value.strip().lower() in _NA_STRINGS:
        return math.nan
    else:
        raise SpecError(
            f"{_one_line(short_repr(value))} is not a number; give a number, or null / .nan for NA",
            file=file,
            field=path,
        )
    family = key.split("_", 1)[0]
    low, high = _BOUNDED.get(family, (-math.inf, math.inf))
    if not math.isnan(number) and not low <= number <= high:
        raise SpecError(
            f"{number!r} is outside [{low:g}, {high:g}]; check the metrics cube output", file=file, field=path
        )
    return number


def load_institutions(directory: Path) -> dict[str, InstitutionResults]:
    """Read ``<institution>.yaml`` files from ``directory``, one institution each, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SpecError(
            "is not a directory; point at the folder holding one <institution>.yaml per institution",
            file=str(directory),
        )
    files = sorted(p for p in directory.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    if not files:
        raise SpecError(
            "holds no <institution>.yaml results file; copy each institution's metrics YAML here",
            file=str(directory),
        )
    out: dict[str, InstitutionResults] = {}
    for path in files:
        name = path.stem
        if name in out:
            raise SpecError(f"institution {name!r} has both .yaml and .yml files; keep one", file=str(path))
        out[name] = InstitutionResults.from_mapping(name, _read_yaml(path), source=str(path))
    return dict(sorted(out.items()))


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(
            f"cannot be read ({_one_line(exc)}); make it a readable UTF-8 YAML file", file=str(path)
        ) from exc
    try:
        return safe_load_text(text, source=str(path), loader=_UniqueKeyLoader, data_file=True)
    except InvalidYaml as exc:
        fix = (
            "fix the value"
            if exc.value
            else "keep one entry per key"
            if exc.problem.startswith("duplicate key")
            else "fix the syntax"
        )
        raise SpecError(f"is not valid YAML{exc.at} ({exc.problem}); {fix}", file=str(path)) from exc
