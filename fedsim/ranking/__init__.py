"""challengeR-equivalent ranking of algorithms across institutions (FeTS 2022 task 2 semantics).

``load_institutions(dir)`` → ``rank(institutions, method)`` → ``write_csvs(result, out_dir)``.
Pure Python + numpy/scipy so it runs anywhere the metrics do.
"""

from __future__ import annotations

from fedsim.ranking._csv import write_csvs
from fedsim.ranking._rank import ALPHA, DEFAULT_METHOD, METHODS, RankingResult, SubRanking, rank
from fedsim.ranking._results import (
    METRICS,
    NA_FILL,
    REGIONS,
    SUBRANKINGS,
    InstitutionResults,
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
    "DEFAULT_METHOD",
    "METHODS",
    "METRICS",
    "NA_FILL",
    "REGIONS",
    "SUBRANKINGS",
    "InstitutionResults",
    "RankingResult",
    "SubRanking",
    "holm_adjust",
    "load_institutions",
    "rank",
    "rank_average",
    "rank_min",
    "wilcoxon_greater_p",
    "wilcoxon_greater_p_columns",
    "write_csvs",
]
