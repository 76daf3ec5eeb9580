"""YAML → spec models, with errors that name the file, the field and the fix on one line."""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from fedsim.errors import SpecError
from fedsim.spec.models import BenchmarkSpec, SiteSpec

M = TypeVar("M", bound=BaseModel)

BENCHMARK_FILE = "benchmark.yaml"

# Bounds on what a configuration file may make the parser do (found by tests/unit/test_fuzz_loaders.py).
# Real benchmark, site and mlcube.yaml files are a few KiB, a few levels deep and use no or few aliases.
MAX_YAML_BYTES = 1 << 20  # 1 MiB
MAX_YAML_DEPTH = 64  # nesting of mappings/sequences; deeper made PyYAML's recursive composer raise RecursionError
MAX_YAML_NODES = 200_000  # values after expanding aliases; "billion laughs" (&a [*a, *a] ...) stops here


def _one_line(text: object, limit: int = 500) -> str:
    """Collapse every line break (\\n, \\r, \\x85, \\u2028, ...) and bound the length of text put in an error."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _ShortRepr(reprlib.Repr):
    """``repr`` for error messages: bounded in length and depth whatever the YAML held."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 80
        self.maxlevel = 3

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # > 4300 digits: int -> str raises (hex literals such as 0xfff... build such ints)
            return f"<{x.bit_length()}-bit integer>"


_short_repr = _ShortRepr().repr


class _BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects documents nested too deeply or that expand into too many values.

    PyYAML shares the object behind an alias, so loading a billion-laughs document is cheap, but anything that
    walks the result (validation of free-form sections, error messages, dumping the run's config) would expand
    it. Recursive aliases (``&a [*a]``) are rejected for the same reason.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _check_expanded_size(node)
        return node


def _check_expanded_size(root: yaml.Node) -> None:
    """Count the values ``root`` stands for once aliases are expanded (iteratively; no recursion)."""
    sizes: dict[int, int] = {}
    path: set[int] = set()  # nodes on the current walk: meeting one again means a recursive alias
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else node.value
            if isinstance(node, yaml.SequenceNode)
            else []
        )
        if done:
            path.discard(id(node))
            sizes[id(node)] = size = 1 + sum(sizes[id(c)] for c in children)
            if size > MAX_YAML_NODES:
                raise yaml.composer.ComposerError(
                    None, None, f"aliases expand to more than {MAX_YAML_NODES} values", node.start_mark
                )
            continue
        if id(node) in sizes:
            continue
        if id(node) in path:
            raise yaml.composer.ComposerError(None, None, "an alias refers to a node that contains it", node.start_mark)
        path.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse a YAML file that must hold a mapping; syntax errors keep their line number."""
    try:
        if not path.is_file():
            raise SpecError("file not found", file=str(path))
        size = path.stat().st_size
    except (OSError, ValueError) as exc:  # e.g. a name too long, an embedded NUL
        raise SpecError(f"cannot read the file ({_one_line(exc)})", file=str(path)) from exc
    if size > MAX_YAML_BYTES:
        raise SpecError(
            f"file is {size} bytes; a configuration file must be at most {MAX_YAML_BYTES} bytes", file=str(path)
        )
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_BoundedSafeLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise SpecError(f"invalid YAML at {where}: {_one_line(exc.problem)}", file=str(path)) from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SpecError(f"invalid YAML: {_one_line(exc)}", file=str(path)) from exc
    except (ValueError, OverflowError) as exc:
        # SafeLoader's constructors raise these for values the resolver accepted: a date such as 2024-13-45,
        # ``!!int abc``, an integer literal of more than 4300 digits.
        raise SpecError(f"invalid YAML value: {_one_line(exc)}", file=str(path)) from exc
    except RecursionError as exc:  # a deep structure below MAX_YAML_DEPTH still recursing too far (belt and braces)
        raise SpecError("invalid YAML: nested too deeply", file=str(path)) from exc
    except OSError as exc:
        raise SpecError(f"cannot read the file ({_one_line(exc)})", file=str(path)) from exc
    if data is None:
        raise SpecError("the file is empty; expected a mapping of settings", file=str(path))
    if not isinstance(data, dict):
        raise SpecError(f"expected a mapping at the top level, got {type(data).__name__}", file=str(path))
    return data


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _one_line(part, 80)  # a key from the user's file
    return out or "<top level>"


def _describe(error: Any, model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(model, error["loc"][:-1])
        allowed = ", ".join(sorted(parent.model_fields)) if parent else "see the README"
        return f"unknown key; allowed keys here: {allowed}"
    if kind == "missing":
        return "required field is missing"
    msg = _one_line(error["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = error.get("input")
    if kind not in {"model_type", "dict_type"} and not isinstance(got, dict | list):
        msg += f" (got {_short_repr(got)})"  # bounded: the input may be a 1 MiB string or a 4000-digit integer
    return msg


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Walk the model's fields along ``loc`` to name the keys allowed where an unknown key appeared."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def validate_mapping(model: type[M], data: dict[str, Any], path: Path) -> M:
    """Validate ``data`` as ``model``; the first error becomes a one-line :class:`SpecError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise SpecError(_describe(first, model) + more, file=str(path), field=_field_path(first["loc"])) from None


def _resolve(base: Path, value: Path | None, *, file: Path, field: str) -> Path | None:
    if value is None:
        return None
    try:
        value = value.expanduser()
        return value if value.is_absolute() else (base / value).resolve()
    except (RuntimeError, OSError, ValueError) as exc:  # ~nosuchuser, an embedded NUL, a symlink loop
        raise SpecError(
            f"cannot resolve path {_short_repr(str(value))}: {_one_line(exc)}", file=str(file), field=field
        ) from exc


def _exists(path: Path, kind: str) -> bool:
    """``is_file``/``is_dir`` that treat an impossible path (too long, embedded NUL) as absent."""
    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except (OSError, ValueError):
        return False


def load_benchmark(path: Path) -> BenchmarkSpec:
    """Load ``benchmark.yaml`` (or a directory holding one); relative paths resolve against its directory."""
    path = Path(path)
    if path.is_dir():
        path = path / BENCHMARK_FILE
    spec = validate_mapping(BenchmarkSpec, read_yaml_mapping(path), path)
    base = path.parent.resolve()
    models = [
        m.model_copy(update={"cube": _resolve(base, m.cube, file=path, field=f"models[{i}].cube")})
        for i, m in enumerate(spec.models)
    ]
    spec = spec.model_copy(
        update={
            "data_prep": spec.data_prep.model_copy(
                update={"cube": _resolve(base, spec.data_prep.cube, file=path, field="data_prep.cube")}
            ),
            "metrics": spec.metrics.model_copy(
                update={"cube": _resolve(base, spec.metrics.cube, file=path, field="metrics.cube")}
            ),
            "models": models,
            "sites": [_resolve(base, s, file=path, field=f"sites[{i}]") for i, s in enumerate(spec.sites)],
            "source": path.resolve(),
        }
    )
    for field, cube in [("data_prep.cube", spec.data_prep.cube), ("metrics.cube", spec.metrics.cube)] + [
        (f"models[{i}].cube", m.cube) for i, m in enumerate(spec.models) if m.cube is not None
    ]:
        assert cube is not None
        if not _exists(cube / "mlcube.yaml", "file"):
            raise SpecError(
                f"no mlcube.yaml in {_one_line(cube)}; point it at an MLCube directory",
                file=str(path),
                field=field,
            )
    return spec


def load_site(path: Path) -> SiteSpec:
    """Load one site file; a raw data path that does not exist is an error unless it can be synthesised."""
    path = Path(path)
    spec = validate_mapping(SiteSpec, read_yaml_mapping(path), path)
    base = path.parent.resolve()
    data = spec.data.model_copy(update={"path": _resolve(base, spec.data.path, file=path, field="data.path")})
    if data.path is not None and data.synthesize is None and not _exists(data.path, "dir"):
        raise SpecError(
            f"data directory {_one_line(data.path)} does not exist; create it or add a 'synthesize' section",
            file=str(path),
            field="data.path",
        )
    return spec.model_copy(update={"data": data, "source": path.resolve()})


def site_files(paths: list[Path]) -> list[Path]:
    """Expand directories into their ``*.yaml`` files, keeping order and dropping duplicates."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise SpecError("no site files (*.yaml) in this directory", file=str(p))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise SpecError("site file or directory not found", file=str(p))
    unique: list[Path] = []
    for f in files:
        if f.resolve() not in [u.resolve() for u in unique]:
            unique.append(f)
    return unique


def load_sites(paths: list[Path]) -> list[SiteSpec]:
    sites = [load_site(f) for f in site_files(paths)]
    seen: dict[str, Path] = {}
    for s in sites:
        if s.name in seen:
            raise SpecError(
                f"site name {s.name!r} is also used by {seen[s.name]}; site names must be unique",
                file=str(s.source),
                field="name",
            )
        seen[s.name] = s.source or Path()
    return sites
