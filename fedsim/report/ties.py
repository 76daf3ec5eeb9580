"""The footnote a ranking needs when models tie: rank 1.5 (or two models at rank 4) is not a bug but the averaged
ranks challengeR uses (``rank(..., ties.method = "average")``, R's default), and a reader should be told so."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["TIES_RULE", "has_ties", "ties_note"]

TIES_RULE = "tied models share the average of their ranks, as challengeR and R's rank() do"


def _fmt(value: float) -> str:
    return f"{value:g}"


def has_ties(ranks: Iterable[float]) -> bool:
    """Whether a ranking has ties: a non-integer rank, or two models at the same rank."""
    values = [float(r) for r in ranks]
    return any(not r.is_integer() for r in values) or len(set(values)) < len(values)


def ties_note(final_rank: Mapping[str, float]) -> str | None:
    """One sentence naming each group of tied models and the positions they share, or None without ties
    (every rank a distinct integer). E.g. ``ranks 1.5: baseline and region_grow tie for places 1-2; tied models
    share the average of their ranks, as challengeR and R's rank() do``."""
    groups: dict[float, list[str]] = {}
    for model, rank in final_rank.items():
        groups.setdefault(float(rank), []).append(model)
    tied = {r: sorted(ms) for r, ms in groups.items() if len(ms) > 1 or not float(r).is_integer()}
    if not tied:
        return None
    parts = []
    for rank, models in sorted(tied.items()):
        if len(models) > 1:
            first = rank - (len(models) - 1) / 2
            places = f"places {_fmt(first)}-{_fmt(first + len(models) - 1)}"
            names = ", ".join(models[:-1]) + f" and {models[-1]}"
            parts.append(f"rank {_fmt(rank)}: {names} tie for {places}")
        else:
            parts.append(f"rank {_fmt(rank)}: {models[0]}")
    return "; ".join(parts) + f" — {TIES_RULE}"
