"""CSV exports of a ranking, named and shaped like the FeTS organisers' files.

Files are written to a temporary sibling and renamed, so a crash never leaves a half-written ranking that a
later report would read as complete.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

from fedsim.errors import StoreError
from fedsim.ranking._rank import RankingResult
from fedsim.ranking._results import SUBRANKINGS

__all__ = ["write_csvs"]


def write_csvs(result: RankingResult, out_dir: Path) -> list[Path]:
    """Write the final, per-institution and significance CSVs of ``result``; return their paths."""
    out_dir = Path(out_dir)
    tables = {
        f"final_ranks_{result.method}.csv": _final_rows(result),
        f"per_institute_ranks_{result.method}.csv": _per_institute_rows(result),
        f"significant_matrix_{result.method}.csv": _matrix_rows(result),
    }
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{out_dir}: cannot create the ranking output directory ({exc})") from exc
    return [_write_atomic(out_dir / name, rows) for name, rows in tables.items()]


def _fmt(value: float | int) -> str:
    """Integral numbers without '.0'; others as the shortest repr that round-trips."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _final_rows(result: RankingResult) -> list[list[str]]:
    header = ["algorithm", "final_rank", "final_score"]
    header += [f"score_{inst}" for inst in result.institutions]
    header.append("significant_wins")
    rows = [header]
    for algo in result.algorithms:
        row = [algo, _fmt(result.final_rank[algo]), _fmt(result.final_score[algo])]
        row += [_fmt(result.institution_scores[inst][algo]) for inst in result.institutions]
        row.append(_fmt(result.significant_wins[algo]))
        rows.append(row)
    return rows


def _per_institute_rows(result: RankingResult) -> list[list[str]]:
    subs = result.subrankings or SUBRANKINGS
    header = ["institution", "algorithm", *(f"{m}_{r}" for m, r in subs), "institution_score"]
    rows = [header]
    for inst in result.institutions:
        for algo in result.algorithms:
            subranks = result.per_institution_subranks[inst][algo]
            rows.append(
                [
                    inst,
                    algo,
                    *(_fmt(subranks[sub]) for sub in subs),
                    _fmt(result.institution_scores[inst][algo]),
                ]
            )
    return rows


def _matrix_rows(result: RankingResult) -> list[list[str]]:
    rows = [["algorithm", *result.algorithms]]
    for a in result.algorithms:
        rows.append([a, *(_fmt(result.significant[a][b]) for b in result.algorithms)])
    return rows


def _write_atomic(path: Path, rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    tmp_name: str | None = None
    try:
        with tempfile.NamedTemporaryFile(
            "w",
            encoding="utf-8",
            newline="",
            dir=path.parent,
            prefix=f".{path.name}.",
            suffix=".tmp",
            delete=False,
        ) as handle:
            tmp_name = handle.name
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except OSError as exc:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
        raise StoreError(f"{path}: cannot write the ranking CSV ({exc})") from exc
    return path
