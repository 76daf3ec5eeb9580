"""Issue 15, item 7: one CLI. ``-h`` everywhere, plain metavars (no ``<bool>`` or ``<list[Path]>``), exit codes in
the help, ``-j/--jobs`` for parallelism on every command that runs jobs concurrently (the old ``--max-sites`` and
``--max-parallel`` still work, hidden), ``--gpus``, ``--json`` on stdout, and the bundled benchmark and sites as
package data so the first command of the README works from any directory."""

from __future__ import annotations

import fnmatch
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner

from fedsim.cli import DEFAULT_BENCHMARK, EXIT_CODES, app
from tests.conftest import ROOT

COMMANDS = [
    [],
    ["run"],
    ["run", "benchmark"],
    ["sites"],
    ["sites", "list"],
    ["sites", "synthesize"],
    ["rank"],
    ["check-submission"],
    ["dry-run"],
    ["report"],
    ["stress"],
    ["runs"],
    ["runs", "list"],
    ["runs", "show"],
]


def _help(args: list[str], flag: str = "-h") -> str:
    result = CliRunner().invoke(app, [*args, flag], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, (args, result.output)
    return result.output


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) or "fedsim" for a in COMMANDS])
def test_help_short_flag_and_clean_metavars(args: list[str]) -> None:
    text = _help(args)
    assert text == _help(args, "--help")
    assert "-h" in text and "Usage:" in text
    for python_type in ("<bool>", "<list[", "<str>", "<path>", "<int", "<float", "<Path>"):
        assert python_type not in text, f"{' '.join(args)} shows {python_type}:\n{text}"


def test_exit_codes_are_in_the_help() -> None:
    for args in ([], ["run", "benchmark"]):
        text = " ".join(_help(args).split())
        assert "Exit codes: 0" in text and "130 interrupted" in text and "2 a configuration file" in text
    assert "no result" in EXIT_CODES
    check = " ".join(_help(["check-submission"]).split())
    assert "1: FAIL" in check and "2: fedsim could not run the check" in check


@pytest.mark.parametrize(("args", "hidden"), [(["run", "benchmark"], "--max-sites"), (["dry-run"], "--max-parallel")])
def test_one_jobs_option_everywhere(args: list[str], hidden: str) -> None:
    text = _help(args)
    assert re.search(r"--jobs\s+-j", text), text
    assert hidden not in text  # the old name still parses (below) but is no longer advertised


def test_stress_has_jobs_too() -> None:
    assert re.search(r"--jobs\s+-j", _help(["stress"]))


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "fedsim.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_old_parallelism_names_still_parse(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args in (["run", "benchmark", str(missing), "--max-sites", "2"], ["run", "benchmark", str(missing), "-j", "2"]):
        proc = _cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "No such option" not in proc.stderr, proc.stderr
        assert str(missing) in proc.stderr  # it got as far as loading the benchmark


def test_an_unknown_gpu_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = _cli("run", "benchmark", "--gpus", "99", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --gpus 99: "), proc.stderr
    assert not (tmp_path / "runs").exists()
    ray = _cli("run", "benchmark", "--gpus", "0", "--executor", "ray", cwd=tmp_path)
    assert ray.returncode == 2 and "--executor local" in ray.stderr


def test_json_on_stdout_sends_everything_else_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    from fedsim.report.jsonout import emit_json, json_on_stdout

    @json_on_stdout("as_json")
    def command(*, as_json: object) -> None:
        Console().print("a table for people")
        print("plain print")
        emit_json({"run_id": "r1", "score": float("nan"), "path": Path("/x")})

    command(as_json=True)
    out, err = capsys.readouterr()
    assert out == '{\n  "run_id": "r1",\n  "score": null,\n  "path": "/x"\n}\n'
    assert "a table for people" in err and "plain print" in err
    command(as_json="-")  # ``--json -`` of a FILE option
    out, err = capsys.readouterr()
    assert out.startswith("{") and "plain print" in err
    command(as_json=None)
    out, _ = capsys.readouterr()
    assert "a table for people" in out  # without it, stdout as usual


# --- the bundled benchmark and sites: package data -----------------------------------------------------------------


def test_defaults_are_the_bundled_benchmark_and_sites(tmp_path: Path) -> None:
    import fedsim.bundled as bundled

    assert DEFAULT_BENCHMARK == bundled.BENCHMARK and (DEFAULT_BENCHMARK / "benchmark.yaml").is_file()
    assert bundled.ROOT.parent == Path(__import__("fedsim").__file__).resolve().parent
    from fedsim.spec import load_benchmark, load_sites

    bench = load_benchmark(DEFAULT_BENCHMARK)
    assert [p.resolve() for p in bench.sites] == [bundled.SITES.resolve()]  # `sites: [../../sites]` inside the package
    assert {s.name for s in load_sites(list(bench.sites))} == {"site_a", "site_b", "site_c"}
    # the clone keeps its old paths as symlinks
    assert (ROOT / "benchmarks").resolve() == bundled.BENCHMARKS and (ROOT / "sites").resolve() == bundled.SITES
    proc = _cli("sites", "list", cwd=tmp_path, env={"COLUMNS": "200"})  # from an empty directory
    assert proc.returncode == 0, proc.stderr
    assert all(name in proc.stdout for name in ("site_a", "site_b", "site_c"))


def _package_data_patterns() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        config = tomllib.load(fh)["tool"]["setuptools"]
    assert "fedsim.bundled.*" in config["packages"]["find"]["exclude"]
    return list(config["package-data"]["fedsim.bundled"])


def test_package_data_ships_every_bundled_file() -> None:
    """Every file of the bundled benchmark (cubes' code, Dockerfiles, workspace files, .gitkeep of empty
    workspaces) and sites matches a package-data glob, as setuptools expands them (``**`` recursive)."""
    import fedsim.bundled as bundled

    root = bundled.ROOT
    files = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != "__init__.py"
    }
    shipped = {
        p.relative_to(root).as_posix()
        for pattern in _package_data_patterns()
        for p in root.glob(pattern)
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert files - shipped == set()
    for must in ("benchmarks/fets2022-task2/benchmark.yaml", "sites/site_a_university.yaml"):
        assert must in shipped
    assert any(fnmatch.fnmatch(f, "*/project/Dockerfile") for f in shipped)
    assert any(f.endswith("workspace/.gitkeep") for f in shipped)
    assert any(f.endswith("workspace/parameters.yaml") for f in shipped)


def test_cube_base_image_leaves_the_bundled_data_out(tmp_path: Path) -> None:
    import shutil

    import fedsim
    from fedsim.runtimes.images import _base_image_ignore

    package = Path(fedsim.__file__).resolve().parent
    shutil.copytree(package, tmp_path / "fedsim", ignore=_base_image_ignore(package))
    assert [p.name for p in (tmp_path / "fedsim" / "bundled").iterdir()] == ["__init__.py"]
    assert (tmp_path / "fedsim" / "metrics" / "__init__.py").is_file()
    assert not list((tmp_path / "fedsim").rglob("__pycache__"))


def test_orchestrator_build_copies_the_bundled_directories() -> None:
    script = (ROOT / "scripts" / "build-orchestrator.sh").read_text()
    assert '"$root/fedsim/bundled/benchmarks" "$root/fedsim/bundled/sites"' in script


def test_stdout_is_clean_json_stream() -> None:
    # guard against the decorator leaking a redirected stdout after an exception
    from fedsim.report.jsonout import json_on_stdout

    @json_on_stdout("j")
    def boom(*, j: bool) -> None:
        raise RuntimeError("x")

    before = sys.stdout
    with pytest.raises(RuntimeError):
        boom(j=True)
    assert sys.stdout is before
    assert isinstance(io.StringIO(), io.TextIOBase)


SHARED = ("--runtime", "--gpus", "--allow-unsandboxed", "--offline", "--serve", "--jobs")


def test_shared_options_are_declared_once() -> None:
    """Issue 20: ``--runtime``, ``--gpus``, ``--allow-unsandboxed``, ``--offline``, ``--serve`` and ``--jobs``
    are typer options of fedsim/cli/options.py only (``score --jobs`` counts cases, a meaning of its own)."""
    declared = re.compile(r"typer\.Option\(\s*\"(--[a-z-]+)\"")
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "fedsim").rglob("*.py")):
        for flag in declared.findall(path.read_text(encoding="utf-8")):
            if flag in SHARED:
                found.setdefault(flag, []).append(str(path.relative_to(ROOT)))
    assert found == {
        **{flag: ["fedsim/cli/options.py"] for flag in SHARED if flag != "--jobs"},
        "--jobs": ["fedsim/cli/options.py", "fedsim/cli/score.py"],
    }


def test_the_commands_are_listed_in_the_order_people_use_them() -> None:
    text = _help([])
    order = ["run", "sites", "check-submission", "dry-run", "report", "runs", "rank", "score", "stress", "serve"]
    names = re.findall(rf"^\W*({'|'.join(order)})\s", text, re.M)
    assert names == order


def test_commands_that_run_jobs_share_one_runtime_and_gpus_help() -> None:
    import typer

    group = typer.main.get_command(app)
    commands = {
        "run benchmark": group.commands["run"].commands["benchmark"],  # type: ignore[attr-defined]
        "check-submission": group.commands["check-submission"],  # type: ignore[attr-defined]
        "dry-run": group.commands["dry-run"],  # type: ignore[attr-defined]
        "stress": group.commands["stress"],  # type: ignore[attr-defined]
    }
    for flag in SHARED:
        helps = {
            name: p.help for name, cmd in commands.items() for p in cmd.params if flag in getattr(p, "opts", ())
        }
        assert len(helps) >= 2 and len(set(helps.values())) == 1, (flag, helps)
