"""Which metrics the report shows, decided by the keys a run's metrics cube wrote.

The FeTS 2021/22 set writes ``Dice_ET``, ``Hausdorff95_WT``, ...; the BraTS 2025 set writes
``lesionwise_dsc_mean_et``, ``global_nsd_wt``, ... over the regions of its configuration (gli: et, tc, wt,
netc, snfh, rc). Tables, heatmaps and distributions are drawn from one :class:`MetricView`, so a 2025 run
shows the lesion-wise Dice and NSD it is ranked on, and a 2021 run is drawn exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BRATS2021_VIEW", "MetricView", "brats2025_view", "view_for_keys", "view_for_metrics"]

_BRATS2025_DICE = re.compile(r"^lesionwise_dsc_mean_([A-Za-z0-9]+)$")
# the challenge's usual reading order; regions of other configurations follow in the cube's order
_PREFERRED = ("et", "tc", "wt", "netc", "snfh", "rc")


@dataclass(frozen=True)
class MetricView:
    """``families``: (key prefix, label, higher is better) drawn per region; a key is ``<prefix>_<region>``.
    ``distribution``: the families of the per-case box plots; ``columns``: (header, key, format) of the
    console's site × model table; ``ranking``: one sentence saying what a site ranks on."""

    name: str
    regions: tuple[str, ...]
    families: tuple[tuple[str, str, bool], ...]
    distribution: tuple[tuple[str, str, bool], ...]
    columns: tuple[tuple[str, str, str], ...]
    ranking: str
    penalty: str

    def key(self, family: str, region: str) -> str:
        return f"{family}_{region}"

    def region_label(self, region: str) -> str:
        return region.upper() if self.name == "brats2025" else region


BRATS2021_VIEW = MetricView(
    name="brats2021",
    regions=("ET", "TC", "WT"),
    families=(
        ("Dice", "Dice", True),
        ("Hausdorff95", "Hausdorff 95 (voxels)", False),
        ("Sensitivity", "Sensitivity", True),
        ("Specificity", "Specificity", True),
        ("Precision", "Precision", True),
    ),
    distribution=(("Dice", "Dice", True), ("Hausdorff95", "HD95 (voxels)", False)),
    columns=(
        ("Dice ET", "Dice_ET", "{:.3f}"),
        ("Dice TC", "Dice_TC", "{:.3f}"),
        ("Dice WT", "Dice_WT", "{:.3f}"),
        ("HD95 WT", "Hausdorff95_WT", "{:.1f}"),
    ),
    ranking="each site ranks the models on Dice and HD95 of ET, TC and WT; a site's score is the mean of its "
    "six sub-ranks",
    penalty="Dice 0, HD95 374",
)


def brats2025_view(regions: Iterable[str]) -> MetricView:
    """The view of a BraTS 2025 run over ``regions`` (those its configuration scores)."""
    found = list(dict.fromkeys(regions))
    ordered = tuple([r for r in _PREFERRED if r in found] + [r for r in found if r not in _PREFERRED])
    shown = [r for r in ordered if r in ("et", "tc", "wt")] or list(ordered[:3])
    names = ", ".join(r.upper() for r in ordered)
    return MetricView(
        name="brats2025",
        regions=ordered,
        families=(
            ("lesionwise_dsc_mean", "Lesion-wise Dice", True),
            ("lesionwise_nsd_mean", "Lesion-wise NSD", True),
            ("lesionwise_hd95_mean", "Lesion-wise HD95 (mm)", False),
            ("global_dsc", "Global Dice", True),
            ("all_instance_f1", "Lesion detection F1", True),
        ),
        distribution=(
            ("lesionwise_dsc_mean", "Lesion-wise Dice", True),
            ("lesionwise_nsd_mean", "Lesion-wise NSD", True),
        ),
        columns=tuple(
            [(f"LW Dice {r.upper()}", f"lesionwise_dsc_mean_{r}", "{:.3f}") for r in shown]
            + [(f"LW NSD {shown[-1].upper()}", f"lesionwise_nsd_mean_{shown[-1]}", "{:.3f}")]
        ),
        ranking=f"each site ranks the models per case on the lesion-wise Dice and NSD of {names} (BraTS 2025); "
        f"a site's score is the mean of its {2 * len(ordered)} sub-ranks",
        penalty="Dice 0, NSD 0, HD95 373",
    )


def view_for_keys(keys: Iterable[str]) -> MetricView:
    """The BraTS 2025 view when the keys hold ``lesionwise_dsc_mean_<region>``, else the FeTS one."""
    regions = [m.group(1) for k in keys if (m := _BRATS2025_DICE.match(k))]
    return brats2025_view(regions) if regions else BRATS2021_VIEW


def view_for_metrics(site_metrics: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> MetricView:
    """:func:`view_for_keys` over ``site -> case -> model -> metrics`` (the ranking input of a run)."""
    keys: dict[str, None] = {}
    for cases in site_metrics.values():
        for per_model in cases.values():
            for metrics in per_model.values():
                if isinstance(metrics, Mapping):
                    keys.update(dict.fromkeys(metrics))
    return view_for_keys(keys)
