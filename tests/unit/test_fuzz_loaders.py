"""Property-based fuzzing of every loader of user-written YAML (issue 7, "Bad input").

The loaders — ``load_benchmark``, ``load_site``, ``load_cube``, ``load_institutions`` and
``DataPrepParams.from_yaml`` — must, whatever the file holds, either return a value or raise a
:class:`~fedsim.errors.FedsimError` whose message is ONE line naming the file. Any other exception (a
traceback for the user) fails the test, and loading must stay bounded in time and memory (alias bombs,
deep nesting, huge values). Strategies: arbitrary bytes and text, YAML-ish token soup (tags, anchors,
aliases, bad dates, huge integers), structured YAML from recursive strategies, and mutations of the
bundled benchmark, sites and mlcube.yaml files. The module generates well over 1,000 cases.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsim.cube import load_cube
from fedsim.dataprep.params import DataPrepParams
from fedsim.errors import FedsimError
from fedsim.ranking import load_institutions
from fedsim.spec import load_benchmark, load_site
from tests.conftest import BENCH, CUBES, ROOT

# On a failure hypothesis formats its report with black, which imports mypy_extensions: without this filter
# the project's "warnings are errors" turns a falsifying example into an INTERNALERROR without the example.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")

FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same cases in every CI run; a failure reproduces locally
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
)

# --- the loaders under test -------------------------------------------------------------------------------


def _rank_loader(path: Path) -> Any:
    return load_institutions(path.parent)  # one <institution>.yaml in its own directory


LOADERS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    # name: (file name to write, loader taking that file's path)
    "benchmark": ("benchmark.yaml", load_benchmark),
    "site": ("site.yaml", load_site),
    "cube": ("mlcube.yaml", load_cube),
    "results": ("inst.yaml", _rank_loader),
    "params": ("parameters.yaml", DataPrepParams.from_yaml),
}
_counter = itertools.count()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # module scope: hypothesis reuses function-scoped fixtures across examples; every example gets a fresh
    # sub-directory of this one instead
    return tmp_path_factory.mktemp("fuzz")


def _write(root: Path, loader: str, content: bytes | str) -> Path:
    folder = root / f"case{next(_counter)}"
    folder.mkdir()
    path = folder / LOADERS[loader][0]
    path.write_bytes(content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content)
    return path


def check_clean(loader: str, path: Path, *, max_seconds: float = 10.0) -> FedsimError | None:
    """Load ``path``; allow a value or a one-line FedsimError naming the file, nothing else."""
    start = time.monotonic()
    try:
        LOADERS[loader][1](path)
    except FedsimError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1, f"message spans lines: {message!r}"
        assert str(path) in message, f"message does not name {path}: {message!r}"
        return exc
    finally:
        # bounded in time (and so in memory): an alias bomb or deep nesting must not explode
        assert time.monotonic() - start < max_seconds, f"loading took {time.monotonic() - start:.1f}s"
    return None


def _fuzz_one(root: Path, loader: str, content: bytes | str) -> None:
    path = _write(root, loader, content)
    try:
        check_clean(loader, path)
    finally:
        path.unlink()
        path.parent.rmdir()


# --- strategies -------------------------------------------------------------------------------------------

SCHEMA_KEYS = [
    # benchmark / site
    "name", "description", "data_prep", "metrics", "cube", "metric_set", "lesionwise", "models", "image",
    "limits", "timeout_per_case_s", "gpu_memory_gb", "ram_gb", "output_mb_per_case", "task_timeout_s", "data",
    "expected_shape", "expected_spacing", "labels", "max_val_size", "seed", "ranking", "method", "sites",
    "base_image", "path", "synthesize", "cases", "shape", "spacing", "shift", "shifts", "level", "runtime",
    "hardware", "gpus", "cpus", "intensity_scale", "noise_std", "bias_field",
    # mlcube.yaml
    "platform", "accelerator_count", "docker", "singularity", "local", "entrypoint", "build_context",
    "build_file", "build_strategy", "build_args", "env_args", "gpu_args", "tasks", "parameters", "inputs",
    "outputs", "type", "default", "opts", "workspace",
    # results / parameters.yaml
    "case_001", "modelA", "Dice_ET", "Hausdorff95_TC", "Sensitivity_WT", "TP_ET", "missing_pred",
    "LesionWise_Dice_ET", "split_file", "modalities",
]  # fmt: skip

YAML_TOKENS = [
    "\n", "\n  ", "\n    ", "  ", ": ", "- ", "? ", ", ", "[", "]", "{", "}", "'", '"', "#", "|", ">", "|-",
    "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "&a ", "*a", "&b ", "*b", "<<: *a", "&a [*a, *a]",
    "!!python/object:os.system", "!!python/object/apply:os.system ['true']", "!!python/name:os.system",
    "!!binary", "!!binary '%%%'", "!!set", "!!omap", "!!pairs", "!!timestamp", "!!int", "!!float", "!!str",
    "!!bool", "!!null", "!!map", "!!seq", "!custom", "!<tag:yaml.org,2002:int>", "!!int abc", "!!float x",
    "2024-13-45", "2024-02-30 25:61:61", "1e400", "-1e400", ".nan", ".inf", "-.inf", "0x" + "f" * 300,
    "0x" + "f" * 4000, "9" * 5000, "0o777", "0b101", "1_000", "190:20:30", "~", "null", "yes", "off",
    "\t", "\x00", "\ufeff", "\u2028", "\x85", "\r", "\ud800", "é", "[/x]", "[bold]", "'\\n'", '"\\x00"',
    '"\\u2028"', '"a\\nb"', "/etc/passwd", "~nosuchuser/x", "a" * 300, "../../..", "-1", "0", "1", "3.5",
]  # fmt: skip

weird_text = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(["\n", "\r", "\x85", "\u2028", "\x00", "\t"]),
    max_size=30,
)
special_floats = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, -1e-308, 5e-324])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([-1, 0, 1, 2**64, -(2**63), 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    special_floats,
    weird_text,
    st.sampled_from(SCHEMA_KEYS),
    st.sampled_from(["directory", "file", "ro", "rw", "auto", "docker", "rankThenMean", "lesionwise", "data/"]),
    st.dates(),
)
keys = st.one_of(st.sampled_from(SCHEMA_KEYS), weird_text, st.integers(-5, 5), st.none(), st.booleans())
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)
top_level = st.one_of(st.dictionaries(keys, documents, min_size=1, max_size=8), documents)
token_soup = st.lists(st.one_of(st.sampled_from(YAML_TOKENS), st.sampled_from(SCHEMA_KEYS), weird_text), max_size=40)


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# --- 1. arbitrary bytes and text ----------------------------------------------------------------------------


@pytest.mark.parametrize("loader", list(LOADERS))
@FUZZ
@given(content=st.binary(max_size=600))
def test_arbitrary_bytes(fuzz_dir: Path, loader: str, content: bytes) -> None:
    _fuzz_one(fuzz_dir, loader, content)


@pytest.mark.parametrize("loader", list(LOADERS))
@FUZZ
@given(content=st.text(max_size=300))  # includes lone surrogates: written as invalid UTF-8
def test_arbitrary_text(fuzz_dir: Path, loader: str, content: str) -> None:
    _fuzz_one(fuzz_dir, loader, content)


@pytest.mark.parametrize("loader", list(LOADERS))
@settings(FUZZ, max_examples=80)
@given(tokens=token_soup)
def test_yaml_token_soup(fuzz_dir: Path, loader: str, tokens: list[str]) -> None:
    _fuzz_one(fuzz_dir, loader, "".join(tokens))


# --- 2. structured YAML -------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", list(LOADERS))
@settings(FUZZ, max_examples=80)
@given(data=top_level)
def test_structured_yaml(fuzz_dir: Path, loader: str, data: Any) -> None:
    _fuzz_one(fuzz_dir, loader, _dump(data))


# --- 3. mutations of valid files ----------------------------------------------------------------------------


def _valid_benchmark() -> dict[str, Any]:
    """The bundled benchmark with its relative paths made absolute, so a copy in tmp still loads."""
    data = yaml.safe_load((BENCH / "benchmark.yaml").read_text())
    data["data_prep"]["cube"] = str(CUBES / "data_prep")
    data["metrics"]["cube"] = str(CUBES / "metrics")
    for model in data["models"]:
        if "cube" in model:
            model["cube"] = str((BENCH / model["cube"]).resolve())
    data["sites"] = [str(ROOT / "sites")]
    return data


VALID: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "benchmark": [("fets2022-task2", _valid_benchmark())],
    "site": [(p.name, yaml.safe_load(p.read_text())) for p in sorted((ROOT / "sites").glob("*.yaml"))],
    "cube": [(p.parent.name, yaml.safe_load(p.read_text())) for p in sorted(CUBES.glob("*/mlcube.yaml"))],
    "results": [
        (
            "results",
            {
                "case_001": {
                    "modelA": {"Dice_ET": 0.8, "Hausdorff95_ET": 3.5, "Dice_TC": None, "missing_pred": False},
                    "modelB": {"Dice_ET": 0.5, "Hausdorff95_WT": 12, "TP_ET": 120, "LesionWise_Dice_ET": 0.7},
                },
                "case_002": {"modelA": {"Dice_WT": 1, "Sensitivity_ET": 0.9}},
            },
        )
    ],
    "params": [("defaults", {**DataPrepParams().to_dict(), "max_val_size": 5, "split_file": "split.csv"})],
}


def test_unmutated_files_load(fuzz_dir: Path) -> None:
    """The mutation base is valid: every mutation below starts from a file that loads."""
    for loader, bases in VALID.items():
        for _, data in bases:
            path = _write(fuzz_dir, loader, _dump(data))
            assert check_clean(loader, path) is None, loader


def _locations(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (dict keys and list indices)."""
    out = [here]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _locations(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _locations(v, (*here, i))
    return out


def _get(node: Any, where: tuple[Any, ...]) -> Any:
    for part in where:
        node = node[part]
    return node


replacements = st.one_of(
    scalars,
    documents,
    special_floats,
    st.sampled_from([-1, 0, -(10**6), 10**20, 2**70, 10**400, -(10**400), True, None, "", [], {}]),
    # non-finite numbers as YAML text (pydantic reads "1e999" as inf): refused for every numeric field (issue 15)
    st.sampled_from(["1e999", "-1e999", "inf", "-inf", "nan", "NaN", "1e400"]),
    st.integers(min_value=1, max_value=200_000).map(lambda n: "x" * n),  # huge strings
    st.sampled_from(["\n", "a\nb", "\u2028", "[/x]", "~nosuchuser/cube", "\x00", "/" * 5000, "a" * 5000, "../" * 50]),
)


@st.composite
def mutated(draw: st.DrawFn, loader: str) -> Any:
    _, base = draw(st.sampled_from(VALID[loader]))
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        spots = _locations(data)
        where = draw(st.sampled_from(spots))
        op = draw(st.sampled_from(["drop", "retype", "unknown_key", "retype", "wrap"]))
        if not where:  # the top level itself
            if op == "unknown_key" and isinstance(data, dict):
                data[draw(keys)] = draw(replacements)
            elif op == "wrap":
                data = [data]
            continue
        parent, last = _get(data, where[:-1]), where[-1]
        if op == "drop":
            del parent[last]
        elif op == "retype":
            parent[last] = draw(replacements)
        elif op == "wrap":  # a mapping where a list belongs and the reverse
            parent[last] = [parent[last]] if not isinstance(parent[last], list) else {"x": parent[last]}
        else:  # an unknown key at this depth (or a new item in a list)
            target = parent[last]
            if isinstance(target, dict):
                target[draw(keys)] = draw(replacements)
            elif isinstance(target, list):
                target.append(draw(replacements))
            else:
                parent[last] = {draw(keys): target}
    return data


@pytest.mark.parametrize(
    ("loader", "examples"),
    [("benchmark", 150), ("site", 100), ("cube", 150), ("results", 80), ("params", 80)],
)
def test_mutated_valid_files(fuzz_dir: Path, loader: str, examples: int) -> None:
    @settings(FUZZ, max_examples=examples)
    @given(data=mutated(loader))
    def run(data: Any) -> None:
        _fuzz_one(fuzz_dir, loader, _dump(data))

    run()


# --- 1b. resource exhaustion: alias bombs, recursion, depth, size -------------------------------------------


def _alias_bomb(width: int, depth: int, key: str) -> str:
    """Billion laughs: ``width ** depth`` values from a few hundred bytes."""
    levels = [f"&l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, depth):
        levels.append(f"&l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return f"{key}: [{', '.join(levels)}]\n"


BOMB_KEYS = {
    # a key each loader looks into, so the bomb is not rejected as an unknown key before anything walks it
    "benchmark": ["name", "models", "sites", "data", "limits"],
    "site": ["name", "data", "hardware"],
    "cube": ["name", "tasks", "docker", "platform", "x_extra_section"],
    "results": ["case_001"],
    "params": ["labels", "expected_shape", "modalities", "seed", "max_val_size", "split_file"],
}


@pytest.mark.parametrize("loader", list(LOADERS))
@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_alias_bombs_stay_bounded(fuzz_dir: Path, loader: str, data: st.DataObject) -> None:
    width, depth = data.draw(st.integers(2, 12)), data.draw(st.integers(1, 12))
    key = data.draw(st.sampled_from(BOMB_KEYS[loader]))
    bomb = _alias_bomb(width, depth, key)
    if loader == "results":
        bomb = f"case_001:\n  modelA:\n    Dice_ET: {bomb.split(': ', 1)[1]}"
    prefix = data.draw(st.sampled_from(["", "name: x\n"])) if key != "name" else ""
    path = _write(fuzz_dir, loader, prefix + bomb)
    check_clean(loader, path, max_seconds=5.0)


NASTY: dict[str, str | bytes] = {
    # explicit tags on empty or malformed scalars: SafeLoader raises KeyError/IndexError/AttributeError (found by
    # hypothesis in CI with another hypothesis version than the one that wrote this module)
    "empty_bool_tag": "!!bool",
    "empty_int_tag": "a: !!int ''",
    "empty_timestamp_tag": "!!timestamp",
    "sign_only_int": "a: !!int '-'",
    "billion_laughs": _alias_bomb(9, 9, "name") + "tasks: {t: {}}\n",
    "billion_laughs_extra_section": "name: x\ntasks: {t: {}}\n" + _alias_bomb(10, 10, "x_extra_section"),
    "recursive_alias_list": "name: &a [*a]\n",
    "recursive_alias_map": "name: x\ntasks: &t {t: *t}\n",
    "merge_key_loop": "a: &a {<<: *a}\n",
    "deep_flow": "[" * 100_000,
    "deep_flow_closed": "name: " + "[" * 3000 + "]" * 3000 + "\n",
    "deep_block": "".join(" " * i + "a:\n" for i in range(400)),
    "deep_sequence": "- " * 3000 + "x\n",
    "too_big": "name: x\n" + "# padding\n" * 200_000,
    "huge_string": "name: '" + "x" * 900_000 + "'\n",
    "huge_int_decimal": "seed: " + "9" * 5000 + "\n",
    "huge_int_hex": "seed: 0x" + "f" * 4000 + "\nname: 0x" + "f" * 4000 + "\n",
    "bad_date": "name: 2024-13-45\nseed: 2024-02-30\n",
    "bad_int_tag": "seed: !!int abc\n",
    "bad_float_tag": "seed: !!float abc\n",
    "python_object": "name: !!python/object/apply:os.system ['echo pwned']\n",
    "invalid_utf8": b"name: \xff\xfe\x80\n",
    "utf16": "name: x\n".encode("utf-16"),
    "nul_bytes": b"name: x\x00\n",
    "newline_keys": '"a\\nb": 1\n"c\\u2028d": 2\n"e\\rf": 3\nname: x\n',
    "markup_keys": '"[/x]": 1\n"[bold]": 2\nname: x\n',
    "unresolvable_home": "name: x\ndata: {path: '~nosuchuser_fedsim/x'}\n"
    "data_prep: {cube: '~nosuchuser_fedsim/x'}\nmetrics: {cube: m}\nmodels: [{name: a, image: b}]\n",
    "path_too_long": "name: x\ndata: {path: '" + "a" * 5000 + "'}\n"
    "data_prep: {cube: '" + "a" * 5000 + "'}\nmetrics: {cube: m}\nmodels: [{name: a, image: b}]\n",
    "nul_in_path": 'name: x\ndata: {path: "a\\0b"}\ndata_prep: {cube: "a\\0b"}\nmetrics: {cube: m}\n'
    "models: [{name: a, image: b}]\n",
    # a valid benchmark whose only problem is a key that is rich console markup
    "markup_key_in_valid_file": _dump({**_valid_benchmark(), "[/x]": 1}),
}


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("case", list(NASTY))
def test_known_nasty_inputs(fuzz_dir: Path, loader: str, case: str) -> None:
    path = _write(fuzz_dir, loader, NASTY[case])
    check_clean(loader, path, max_seconds=5.0)


def test_a_path_that_is_not_a_file(fuzz_dir: Path) -> None:
    for loader in ["benchmark", "site", "cube", "params"]:
        check_clean(loader, fuzz_dir / "does-not-exist.yaml")
    folder = fuzz_dir / "a-directory.yaml"
    folder.mkdir()
    for loader in ["site", "params"]:
        check_clean(loader, folder)


# --- the CLI edge: one line on stderr, exit 2, no traceback -------------------------------------------------

CLI_CASES = ["deep_flow", "billion_laughs", "bad_date", "invalid_utf8", "newline_keys", "huge_int_hex"]


@pytest.mark.parametrize(
    ("case", "folder"),
    [
        *((c, "") for c in CLI_CASES),
        pytest.param("markup_key_in_valid_file", ""),
        pytest.param("bad_date", "[red]in-the-path"),
    ],
)
def test_cli_run_benchmark_bad_file_is_one_line(fuzz_dir: Path, case: str, folder: str) -> None:
    path = _write(fuzz_dir, "benchmark", NASTY[case])
    if folder:
        (path.parent / folder).mkdir()
        path = path.rename(path.parent / folder / path.name)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "fedsim.cli", "run", "benchmark", str(path)],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], proc.stderr
