"""Parameters of the data-prep cube, read from the site's ``parameters.yaml``.

A plain frozen dataclass (no pydantic): this module runs inside Debian images with pydantic 1.x.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fedsim.errors import SpecError
from fedsim.yamlsafe import InvalidYaml, one_line, safe_load_text
from fedsim.yamlsafe import short_repr as _r

DEFAULT_MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
_MODALITY_NAME = re.compile(r"^[A-Za-z0-9]+$")
_LIST_FIELDS = ("expected_shape", "expected_spacing", "labels", "modalities")


@dataclass(frozen=True)
class DataPrepParams:
    """What prepare selects and what sanity_check expects; defaults are the FeTS 2022 ones."""

    max_val_size: int | None = None
    seed: int = 0
    split_file: str | None = None
    expected_shape: tuple[int, int, int] = (240, 240, 155)
    expected_spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    labels: tuple[int, ...] = (0, 1, 2, 4)
    modalities: tuple[str, ...] = DEFAULT_MODALITIES

    def __post_init__(self) -> None:
        for name in _LIST_FIELDS:
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        problem = _problem(self)
        if problem:
            raise SpecError(problem[1], field=problem[0])

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str | None = None) -> DataPrepParams:
        """Build from a parsed YAML mapping; unknown keys are an error so typos never pass silently."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise SpecError(
                    f"unknown key {_r(key)} (known: {', '.join(sorted(known))})", file=source, field=one_line(key, 80)
                )
        for key in _LIST_FIELDS:
            if key in data and not isinstance(data[key], (list, tuple)):
                raise SpecError(f"must be a list, got {_r(data[key])}", file=source, field=key)
        candidate = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            value = data.get(f.name, f.default)
            object.__setattr__(candidate, f.name, tuple(value) if f.name in _LIST_FIELDS else value)
        problem = _problem(candidate)
        if problem:
            raise SpecError(problem[1], file=source, field=problem[0])
        return cls(**{f.name: getattr(candidate, f.name) for f in dataclasses.fields(cls)})

    @classmethod
    def from_yaml(cls, path: str | Path) -> DataPrepParams:
        """Load ``parameters.yaml``; an empty file means all defaults."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot read parameters file: {exc.strerror or exc}", file=str(path)) from exc
        except UnicodeDecodeError as exc:
            raise SpecError(f"not UTF-8 text: {exc}", file=str(path)) from exc
        try:
            data = safe_load_text(text, source=str(path))  # bounded: size, depth, alias expansion
        except InvalidYaml as exc:
            raise SpecError(f"not valid YAML{exc.at}: {exc.problem}", file=str(path)) from exc
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SpecError("top level must be a mapping of parameter names to values", file=str(path))
        return cls.from_mapping(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-friendly values (lists, not tuples)."""
        return {
            "max_val_size": self.max_val_size,
            "seed": self.seed,
            "split_file": self.split_file,
            "expected_shape": list(self.expected_shape),
            "expected_spacing": list(self.expected_spacing),
            "labels": list(self.labels),
            "modalities": list(self.modalities),
        }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (inf and nan are refused: no spacing or size can be infinite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _problem(p: DataPrepParams) -> tuple[str, str] | None:
    """The first invalid field and why, or None; kept apart so errors can name the YAML file."""
    if p.max_val_size is not None and (not _is_int(p.max_val_size) or p.max_val_size < 1):
        return "max_val_size", f"must be a positive integer or null, got {_r(p.max_val_size)}"
    if not _is_int(p.seed):
        return "seed", f"must be an integer, got {_r(p.seed)}"
    if p.split_file is not None:
        if not isinstance(p.split_file, str) or not p.split_file.strip():
            return "split_file", f"must be a path relative to data_path or null, got {_r(p.split_file)}"
        rel = PurePosixPath(p.split_file.replace("\\", "/"))
        # Only data_path is mounted into the cube: an absolute or escaping path cannot be found there.
        if rel.is_absolute() or ".." in rel.parts:
            return "split_file", f"must be relative to data_path without '..', got {_r(p.split_file)}"
    shape = p.expected_shape
    if not isinstance(shape, tuple) or len(shape) != 3 or not all(_is_int(v) and v > 0 for v in shape):
        return "expected_shape", f"must be three positive integers, got {_r(shape)}"
    spacing = p.expected_spacing
    if not isinstance(spacing, tuple) or len(spacing) != 3 or not all(_is_number(v) and v > 0 for v in spacing):
        return "expected_spacing", f"must be three positive numbers, got {_r(spacing)}"
    labels = p.labels
    if (
        not isinstance(labels, tuple)
        or not labels
        or not all(_is_int(v) for v in labels)
        or len(set(labels)) != len(labels)
    ):
        return "labels", f"must be a non-empty list of distinct integers, got {_r(labels)}"
    mods = p.modalities
    if (
        not isinstance(mods, tuple)
        or not mods
        or not all(isinstance(m, str) and _MODALITY_NAME.match(m) for m in mods)
        or len(set(mods)) != len(mods)
    ):
        return "modalities", f"must be a non-empty list of distinct alphanumeric names, got {_r(mods)}"
    return None
