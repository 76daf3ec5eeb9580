"""challengeR-equivalent ranking of algorithms across institutions (FeTS 2022 task 2 semantics).

``load_institutions(dir)`` → ``rank(institutions, method)`` → ``write_csvs(result, out_dir)``.
Pure Python + numpy/scipy so it runs anywhere the metrics do.
"""

from __future__ import annotations

from fedsim.ranking._csv import write_csvs
from fedsim.ranking._rank import ALPHA, DEFAULT_METHOD, METHODS, RankingResult, SubRanking, rank
from fedsim.ranking._results import (
    BRATS2025_METRICS,
    FETS_SCHEME,
    METRICS,
    NA_FILL,
    REGIONS,
    SUBRANKINGS,
    InstitutionResults,
    Scheme,
    brats2025_scheme,
    detect_scheme,
    load_institutions,
)
from fedsim.ranking._stats import (
    holm_adjust,
    rank_average,
    rank_min,
    wilcoxon_greater_p,
    wilcoxon_greater_p_columns,
)

__all__ = [
    "ALPHA",
    "BRATS2025_METRICS",
    "DEFAULT_METHOD",
    "FETS_SCHEME",
    "METHODS",
    "METRICS",
    "NA_FILL",
    "REGIONS",
    "SUBRANKINGS",
    "InstitutionResults",
    "RankingResult",
    "Scheme",
    "SubRanking",
    "brats2025_scheme",
    "detect_scheme",
    "holm_adjust",
    "load_institutions",
    "rank",
    "rank_average",
    "rank_min",
    "wilcoxon_greater_p",
    "wilcoxon_greater_p_columns",
    "write_csvs",
]
