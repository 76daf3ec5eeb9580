"""``fedsim score``: a folder of predictions against a folder of labels, the metrics cube's YAML out.

What a participant runs on a validation set. Pure functions in :mod:`fedsim.score.folders`; the typer
command in :mod:`fedsim.cli.score`.
"""

from __future__ import annotations

from fedsim.score.folders import LABEL_SUFFIXES, match_cases, score_folders

__all__ = ["LABEL_SUFFIXES", "match_cases", "score_folders"]
