"""YAML → spec models, with errors that name the file, the field and the fix on one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fedsim.errors import SpecError
from fedsim.spec.models import BenchmarkSpec, SiteSpec
from fedsim.yamlsafe import one_line, safe_load_file, short_repr

M = TypeVar("M", bound=BaseModel)

BENCHMARK_FILE = "benchmark.yaml"


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse a YAML file that must hold a mapping; syntax errors keep their line number."""
    data = safe_load_file(path)
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
            out += ("." if out else "") + one_line(part, 80)  # a key from the user's file
    return out or "<top level>"


def _describe(error: Any, model: type[BaseModel]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _model_at(model, error["loc"][:-1])
        allowed = ", ".join(sorted(parent.model_fields)) if parent else "see the README"
        return f"unknown key; allowed keys here: {allowed}"
    if kind == "missing":
        return "required field is missing"
    if kind == "finite_number":  # inf, -inf, nan, or a literal beyond a double's range such as 1e999
        got = short_repr(error.get("input"))
        return f"must be a finite number; inf, nan and out-of-range values such as 1e999 are refused (got {got})"
    msg = one_line(error["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = error.get("input")
    if kind not in {"model_type", "dict_type"} and not isinstance(got, dict | list):
        msg += f" (got {short_repr(got)})"  # bounded: the input may be a 1 MiB string or a 4000-digit integer
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
            f"cannot resolve path {short_repr(str(value))}: {one_line(exc)}", file=str(file), field=field
        ) from exc


def _exists(path: Path, kind: str) -> bool:
    """``is_file``/``is_dir`` that treat an impossible path (too long, embedded NUL) as absent."""
    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except (OSError, ValueError):
        return False


def _params_file(base: Path, value: Path | str | None, file: Path, section: str) -> Path | str | None:
    """A given parameters file resolves against the benchmark's directory and must exist."""
    if value is None or isinstance(value, str):
        return value
    resolved = _resolve(base, value, file=file, field=f"{section}.parameters_file")
    assert resolved is not None
    if not _exists(resolved, "file"):
        raise SpecError(
            f"parameters file {one_line(resolved)} does not exist; give an existing file, 'generated' or null",
            file=str(file),
            field=f"{section}.parameters_file",
        )
    return resolved


def load_benchmark(path: Path) -> BenchmarkSpec:
    """Load ``benchmark.yaml`` (or a directory holding one); relative paths resolve against its directory."""
    path = Path(path)
    if path.is_dir():
        path = path / BENCHMARK_FILE
    spec = validate_mapping(BenchmarkSpec, read_yaml_mapping(path), path)
    base = path.parent.resolve()
    models = [
        m.model_copy(
            update={
                "cube": _resolve(base, m.cube, file=path, field=f"models[{i}].cube"),
                "decryption_key": _resolve(base, m.decryption_key, file=path, field=f"models[{i}].decryption_key"),
            }
        )
        for i, m in enumerate(spec.models)
    ]
    spec = spec.model_copy(
        update={
            "data_prep": spec.data_prep.model_copy(
                update={
                    "cube": _resolve(base, spec.data_prep.cube, file=path, field="data_prep.cube"),
                    "parameters_file": _params_file(base, spec.data_prep.parameters_file, path, "data_prep"),
                }
            ),
            "metrics": spec.metrics.model_copy(
                update={
                    "cube": _resolve(base, spec.metrics.cube, file=path, field="metrics.cube"),
                    "parameters_file": _params_file(base, spec.metrics.parameters_file, path, "metrics"),
                }
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
        if _exists(cube, "file") or _exists(cube / "container_config.yaml", "file"):
            continue  # a cube's file itself, or a MedPerf container config (fedsim.cube.load checks it)
        if not _exists(cube / "mlcube.yaml", "file"):
            fets = _exists(cube / "mlcube" / "mlcube.yaml", "file")  # the FeTS layout: <cube>/mlcube/mlcube.yaml
            raise SpecError(
                f"no mlcube.yaml or container_config.yaml in {one_line(cube)}; point it at an MLCube or a MedPerf "
                "container config directory"
                + (f" ({one_line(cube / 'mlcube')}, as MLCube's --mlcube takes it)" if fets else ""),
                file=str(path),
                field=field,
            )
    for i, m in enumerate(spec.models):
        if m.decryption_key is not None and not _exists(m.decryption_key, "file"):
            raise SpecError(
                f"decryption key file {one_line(m.decryption_key)} does not exist; fix: give the passphrase file "
                "of the model's encrypted image",
                file=str(path),
                field=f"models[{i}].decryption_key",
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
            f"data directory {one_line(data.path)} does not exist; create it or add a 'synthesize' section",
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
