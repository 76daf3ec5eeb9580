"""FeTS data preparation: find raw cases, prepare (select, anonymise), sanity-check and summarise them.

Import-light on purpose (numpy, nibabel, pyyaml, stdlib, ``fedsim.errors``): the data-prep cube runs it in a
Debian bookworm image with numpy 1.24, nibabel 5.0 and pydantic 1.x.
"""

from __future__ import annotations

from fedsim.dataprep.checks import CheckResult, check_cases, sanity_check, statistics
from fedsim.dataprep.layout import RawCase, find_raw_cases
from fedsim.dataprep.params import DEFAULT_MODALITIES, DataPrepParams
from fedsim.dataprep.prepare import (
    ALIAS_FORMAT,
    ALIAS_MAP_NAME,
    REPORT_NAME,
    PrepareReport,
    prepare,
    read_split_file,
    select_cases,
)

__all__ = [
    "ALIAS_FORMAT",
    "ALIAS_MAP_NAME",
    "DEFAULT_MODALITIES",
    "REPORT_NAME",
    "CheckResult",
    "DataPrepParams",
    "PrepareReport",
    "RawCase",
    "check_cases",
    "find_raw_cases",
    "prepare",
    "read_split_file",
    "sanity_check",
    "select_cases",
    "statistics",
]
