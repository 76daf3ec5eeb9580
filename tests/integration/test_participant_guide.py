"""docs/participants.md: its files are the tested files, its minimal cube passes, its advice is what fedsim says.

- every fenced block the guide marks with a ``File: docs/...`` line is byte-identical to that file, and every
  file of the example cube and the rehearsal is shown;
- the minimal cube passes ``fedsim check-submission`` on docker and on the local runtime (a copy: nothing is
  written into docs/);
- the minimal container-config model (MedPerf's format) passes the guide's own command, extracted from the
  markdown and run as written in a copy of docs/examples; as a ``docker save`` archive (``DockerArchive``) it
  passes too, and the tag its load added is gone afterwards; ``dry-run`` and ``stress`` take it beside the
  MLCube;
- a cube with no ``build_strategy`` whose image was never built fails the build check with both fixes — the
  exact ``docker build`` command, which then works, and ``build_strategy: auto``;
- the rehearsal site narrows the limits, and the rehearsal benchmark runs the cube through the pipeline;
- the README links the guide before its first section.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "participants.md"
EXAMPLES = ROOT / "docs" / "examples"
CUBE = EXAMPLES / "minimal_model"
CONTAINER = EXAMPLES / "minimal_container"
CONTAINER_TAG = "fedsim-example/minimal-container:0.1"
CONTAINER_SECTION = "## A minimal container-config model (MedPerf's format)"
REHEARSAL = EXAMPLES / "rehearsal"
FILE_LINE = re.compile(r"^File: \[`(?P<path>docs/[^`]+)`\]\((?P<link>[^)]+)\)\s*$")
AUTO_FIX = "or set build_strategy: auto in mlcube.yaml"
OLD_FIX = "make `docker build` of the cube work"


def fedsim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsim.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=400
    )


def table_cell(stdout: str, check: str) -> str:
    """The details cell of one check in the printed table, its wrapped lines joined again."""
    parts: list[str] = []
    inside = False
    for line in stdout.splitlines():
        cells = line.split("│")
        if len(cells) < 3:
            inside = False
            continue
        if cells[0].strip():
            inside = cells[0].strip() == check
        if inside:
            parts.append(cells[2].strip())
    return " ".join(parts)


def file_blocks(text: str) -> dict[str, tuple[str, str]]:
    """``{path: (link, block body)}`` for each ``File:`` line and the fenced block right after it."""
    lines = text.splitlines(keepends=True)
    blocks: dict[str, tuple[str, str]] = {}
    for i, line in enumerate(lines):
        m = FILE_LINE.match(line)
        if line.startswith("File:"):
            assert m, f"line {i + 1}: a File: line must be File: [`docs/...`](link): {line!r}"
        if not m:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        assert j < len(lines) and lines[j].startswith("```"), f"line {i + 1}: no fenced block after {line!r}"
        end = next((k for k in range(j + 1, len(lines)) if lines[k].rstrip("\n") == "```"), None)
        assert end is not None, f"line {j + 1}: unclosed fence"
        assert m["path"] not in blocks, f"{m['path']} shown twice"
        blocks[m["path"]] = (m["link"], "".join(lines[j + 1 : end]))
    return blocks


def example_files() -> set[str]:
    return {
        p.relative_to(ROOT).as_posix()
        for folder in (CUBE, CONTAINER, REHEARSAL)
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and "workspace" not in p.relative_to(folder).parts
    }


def section(text: str, heading: str) -> str:
    """The guide's text from ``heading`` to the next ``## `` heading."""
    assert text.count(f"\n{heading}\n") == 1, heading
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def bash_commands(text: str) -> list[list[str]]:
    """The commands of every ```bash block of ``text``, each split as a shell would (comments dropped)."""
    blocks = re.findall(r"^```bash\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    return [shlex.split(line, comments=True) for block in blocks for line in block.splitlines() if line.strip()]


def container_command() -> list[str]:
    """The one command the guide's container-config section tells a participant to run."""
    commands = bash_commands(section(GUIDE.read_text(encoding="utf-8"), CONTAINER_SECTION))
    assert commands == [["fedsim", "check-submission", "docs/examples/minimal_container"]], commands
    return commands[0]


def as_written(tmp_path: Path, command: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
    """``command`` run as the guide writes it, from a folder that holds a copy of docs/examples (so the relative
    path it names resolves, and nothing is written into docs/)."""
    assert command[0] == "fedsim"
    if not (tmp_path / "docs" / "examples").is_dir():
        shutil.copytree(EXAMPLES, tmp_path / "docs" / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    return fedsim(*command[1:], *extra, cwd=tmp_path)


def copy_cube(tmp_path: Path, name: str = "cube") -> Path:
    target = tmp_path / name
    shutil.copytree(CUBE, target, ignore=shutil.ignore_patterns("__pycache__", "workspace"))
    return target


def report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def checks(rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in rep["checks"]}


# ---------------------------------------------------------------- the guide's files are the tested files


def test_every_file_block_is_the_file_byte_for_byte() -> None:
    blocks = file_blocks(GUIDE.read_text(encoding="utf-8"))
    assert set(blocks) == example_files(), "every example file is shown, and only those"
    for path, (link, body) in blocks.items():
        assert (GUIDE.parent / link).resolve() == (ROOT / path).resolve(), f"{path}: the link points elsewhere"
        assert body.encode() == (ROOT / path).read_bytes(), f"{path}: the guide's copy differs from the file"


def test_file_blocks_parser_catches_a_drift(tmp_path: Path) -> None:
    text = GUIDE.read_text(encoding="utf-8")
    path, (_link, body) = next(iter(file_blocks(text).items()))
    drifted = file_blocks(text.replace(body, body.replace("\n", "\n# edited\n", 1), 1))
    assert drifted[path][1] != (ROOT / path).read_text()


def test_readme_sends_participants_to_the_guide_first() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = readme.split("\n## ", 1)[0]
    assert "**Participants**: start with [docs/participants.md](docs/participants.md)" in head


def test_guide_states_the_contract_and_the_official_limits() -> None:
    from fedsim.spec.models import ResourceLimits

    text = " ".join(GUIDE.read_text(encoding="utf-8").split())
    limits = ResourceLimits()
    for phrase in (
        "data_path/<case>/<case>_brain_{t1,t1ce,t2,flair}.nii.gz",
        "output_path/<case>.nii.gz",
        "{0, 1, 2, 4}",
        "uint8",
        "240 × 240 × 155",
        f"num_cases × {limits.timeout_per_case_s:g} s",
        f"{limits.gpu_memory_gb:g} GB",
        f"{limits.ram_gb:g} GB",
        f"{limits.output_mb_per_case:g} MB per case",
        f"{limits.max_pids} processes and threads",
        "singularity",
        "WORKDIR",
        "No network",
        "build_strategy: auto",
        "fedsim check-submission",
        "fedsim run benchmark docs/examples/rehearsal --sites docs/examples/rehearsal/my_site.yaml",
        "container_config.yaml",
        "`data_path` at `/mlcommons/volumes/data` and `output_path` at `/mlcommons/volumes/predictions`",
        "container_type: DockerArchive",
        "no task name and no arguments",
    ):
        assert phrase in text, phrase


# ---------------------------------------------------------------- the minimal cube passes


def test_minimal_cube_passes_on_the_local_runtime(tmp_path: Path) -> None:
    cube = copy_cube(tmp_path)
    proc = fedsim("check-submission", str(cube), "--runtime", "local", "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = report(tmp_path / "r.json")
    assert rep["verdict"] == "PASS"
    found = checks(rep)
    assert {n for n, c in found.items() if c["status"] != "passed"} == {"image_permissions", "image_size"}
    assert rep["metrics_mean"]["Dice_WT"] > 0.5
    assert "\nPASS\n" in proc.stdout


@pytest.mark.docker
def test_minimal_cube_passes_on_docker(tmp_path: Path) -> None:
    cube = copy_cube(tmp_path)
    proc = fedsim("check-submission", str(cube), "--runtime", "docker", "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = report(tmp_path / "r.json")
    assert rep["verdict"] == "PASS", rep["reason"]
    assert rep["runtime"] == "docker (singularity fidelity)"
    assert all(c["status"] == "passed" for c in rep["checks"]), rep["checks"]
    assert checks(rep)["build"]["cause"] == "fedsim-example/minimal-model:0.1"
    assert rep["metrics_mean"]["Dice_WT"] > 0.5


# ---------------------------------------------------------------- the minimal container-config model passes


def test_the_guides_container_command_is_the_example_folder() -> None:
    assert (ROOT / container_command()[2]).resolve() == CONTAINER.resolve()


@pytest.mark.docker
def test_container_model_passes_as_written(tmp_path: Path) -> None:
    proc = as_written(tmp_path, container_command(), "--json", "r.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = report(tmp_path / "r.json")
    assert rep["verdict"] == "PASS", rep["reason"]
    assert rep["runtime"] == "docker (singularity fidelity)"  # the command as written: docker where one answers
    assert all(c["status"] == "passed" for c in rep["checks"]), rep["checks"]
    found = checks(rep)
    assert list(found)[:3] == ["container_config", "entrypoint", "workdir"]
    assert found["entrypoint"]["cause"] == 'runs ["python3", "/project/infer.py"]'
    assert found["build"]["cause"] == CONTAINER_TAG
    assert rep["metrics_mean"]["Dice_WT"] > 0.5
    assert "\nPASS\n" in proc.stdout


@pytest.mark.sandbox
def test_container_model_passes_on_the_local_runtime(tmp_path: Path) -> None:
    proc = as_written(tmp_path, container_command(), "--runtime", "local", "--json", "r.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = report(tmp_path / "r.json")
    assert rep["verdict"] == "PASS", rep["reason"]
    found = checks(rep)
    assert {n for n, c in found.items() if c["status"] != "passed"} == {"image_permissions", "image_size"}
    assert rep["metrics_mean"]["Dice_WT"] > 0.5


@contextlib.contextmanager
def _saved_guide_image(folder: Path) -> Iterator[str]:
    """The guide's image as ``folder/model.tar`` (``docker save``) under a fresh tag that only the archive holds
    afterwards; yields the tag and removes whatever is left of it."""
    import docker

    from fedsim.cube import load_cube
    from fedsim.runtimes.images import ImageBuilder

    tag = f"fedsim-test/participant-archive-{secrets.token_hex(4)}:0.1"
    client = docker.from_env()
    try:
        built = ImageBuilder(client).ensure(load_cube(CONTAINER), None)  # the guide's image (as the check builds it)
        client.images.get(built).tag(tag)
        folder.mkdir()
        saved = subprocess.run(
            ["docker", "save", "-o", str(folder / "model.tar"), tag], capture_output=True, text=True, timeout=300
        )
        assert saved.returncode == 0, saved.stderr
        client.images.remove(tag)  # only the archive has it now: the check must load it
        yield tag
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(tag)  # fedsim took back the tag it loaded
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag, force=True)
        client.close()


def _guide_config(kind: str, image: str) -> str:
    config = (CONTAINER / "container_config.yaml").read_text(encoding="utf-8")
    assert "container_type: DockerImage" in config and f"image: {CONTAINER_TAG}" in config
    return config.replace("container_type: DockerImage", f"container_type: {kind}").replace(
        f"image: {CONTAINER_TAG}", f"image: {image}"
    )


@pytest.mark.docker
def test_container_model_as_a_docker_save_archive_passes(tmp_path: Path) -> None:
    """``DockerArchive``: the tar beside the config is loaded by the docker runtime, checked on its image config
    (no Dockerfile beside it), run, and the tag the load added is taken away again."""
    folder = tmp_path / "archived"
    with _saved_guide_image(folder) as tag:
        (folder / "container_config.yaml").write_text(_guide_config("DockerArchive", "model.tar"))
        proc = fedsim("check-submission", "archived/container_config.yaml", "--json", "r.json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rep = report(tmp_path / "r.json")
        assert rep["verdict"] == "PASS", rep["reason"]
        found = checks(rep)
        assert all(c["status"] == "passed" for c in rep["checks"]), rep["checks"]
        assert found["build"]["cause"] == f"{tag} (loaded from model.tar)"
        assert found["entrypoint"]["cause"] == 'runs ["python3", "/project/infer.py"]'  # from the image's config


@pytest.mark.docker
def test_an_encrypted_archive_passes_with_its_key_and_is_one_line_without(tmp_path: Path) -> None:
    """``EncryptedDockerArchive``: ``--decryption-key FILE`` decrypts it (gpg, a private folder, removed after the
    load); without the key, or with a key for a plain archive, one line and exit 2; the passphrase is in no
    output, report or log."""
    import tempfile

    folder = tmp_path / "sealed"
    with _saved_guide_image(folder):
        key = tmp_path / "passphrase.txt"
        key.write_text("correct horse battery\n")
        home = tmp_path / "gpghome"
        home.mkdir(mode=0o700)
        gpg = ["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback"]
        gpg += ["--passphrase-file", str(key), "--symmetric", "--output", str(folder / "model.tar.gpg")]
        subprocess.run([*gpg, str(folder / "model.tar")], check=True, capture_output=True, timeout=300)
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False, capture_output=True)
        (folder / "model.tar").unlink()
        (folder / "container_config.yaml").write_text(_guide_config("EncryptedDockerArchive", "model.tar.gpg"))

        missing = fedsim("check-submission", "sealed", cwd=tmp_path)
        assert missing.returncode == 2, missing.stdout + missing.stderr
        (line,) = [ln for ln in missing.stderr.splitlines() if ln.startswith("error:")]  # one line, no traceback
        assert "is an encrypted image" in line and "fix: pass --decryption-key FILE" in line
        assert "Traceback" not in missing.stderr

        before = set(Path(tempfile.gettempdir()).glob("fedsim-decrypted-*"))
        work = tmp_path / "work"
        proc = fedsim(
            "check-submission", "sealed", "--decryption-key", str(key), "--json", "r.json", "--work-dir", str(work),
            "--keep", cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rep = report(tmp_path / "r.json")
        assert rep["verdict"] == "PASS", rep["reason"]
        assert set(Path(tempfile.gettempdir()).glob("fedsim-decrypted-*")) == before  # nothing decrypted left
        said = proc.stdout + proc.stderr + (tmp_path / "r.json").read_text()
        said += "".join(p.read_text(errors="replace") for p in work.rglob("*") if p.is_file() and p.suffix == ".log")
        assert "correct horse" not in said

    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "container_config.yaml").write_text(_guide_config("DockerImage", CONTAINER_TAG))
    wasted = fedsim("check-submission", "plain", "--decryption-key", str(key), cwd=tmp_path)
    assert wasted.returncode == 2 and "--decryption-key cannot take effect" in wasted.stderr, wasted.stderr


@pytest.mark.sandbox
def test_dry_run_and_stress_take_the_container_model_beside_the_mlcube(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    shutil.copytree(CUBE, subs / "mlcube_model", ignore=shutil.ignore_patterns("__pycache__", "workspace"))
    shutil.copytree(CONTAINER, subs / "medperf_model", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dry"
    proc = fedsim("dry-run", str(subs), "--out", str(out), "--runtime", "local")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {s["submission"]: s for s in json.loads((out / "dry_run.json").read_text())["submissions"]}
    assert {n: r["verdict"] for n, r in rows.items()} == {"mlcube_model": "PASS", "medperf_model": "PASS"}
    assert rows["medperf_model"]["checks"][0]["name"] == "container_config"

    stress = tmp_path / "stress"
    proc = fedsim(
        "stress", str(subs / "medperf_model" / "container_config.yaml"), "--shifts", "intensity", "--levels", "1",
        "--runtime", "local", "--out", str(stress), "--json", str(tmp_path / "stress.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "medperf_model" in (stress / "stress_summary.csv").read_text()


# ---------------------------------------------------------------- a missing image with no build_strategy


def _unbuilt_cube(tmp_path: Path, tag: str) -> Path:
    cube = copy_cube(tmp_path)
    yaml_path = cube / "mlcube.yaml"
    text = yaml_path.read_text()
    assert "build_strategy: auto" in text and "fedsim-example/minimal-model:0.1" in text
    lines = [ln for ln in text.splitlines(keepends=True) if "build_strategy" not in ln]
    yaml_path.write_text("".join(lines).replace("fedsim-example/minimal-model:0.1", tag))
    return cube


@pytest.mark.docker
def test_missing_image_without_build_strategy_names_both_fixes(tmp_path: Path) -> None:
    import docker

    tag = f"fedsim-test/participant-unbuilt-{secrets.token_hex(4)}:0.1"
    _unbuilt_cube(tmp_path, tag)
    client = docker.from_env()
    try:
        proc = fedsim("check-submission", "cube", "--runtime", "docker", "--json", "r.json", cwd=tmp_path)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        build = checks(report(tmp_path / "r.json"))["build"]
        command = f"docker build -t {tag} -f cube/project/Dockerfile cube/project"
        assert build["status"] == "failed"
        assert f"cannot pull image {tag} and it is not available locally" in build["cause"]
        assert "build_strategy is 'pull'" in build["cause"]
        assert build["fix"] == f"build it: {command}, {AUTO_FIX}"
        shown = table_cell(proc.stdout, "build")  # what the participant reads: cause; fix: both fixes
        assert shown.endswith(f"; fix: build it: {command}, {AUTO_FIX}"), proc.stdout
        assert OLD_FIX not in proc.stdout + json.dumps(build)

        # the first fix, as printed, works: the image builds and the cube then passes with no build_strategy
        built = subprocess.run(shlex.split(command), cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, built.stdout + built.stderr
        proc = fedsim("check-submission", "cube", "--runtime", "docker", cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag, force=True)
        client.close()


class _FakeImages:
    def __init__(self) -> None:
        self.pulled: list[str] = []

    def get(self, tag: str) -> Any:
        import docker

        raise docker.errors.ImageNotFound(f"no such image: {tag}")

    def pull(self, tag: str) -> Any:
        import docker

        self.pulled.append(tag)
        raise docker.errors.APIError("500 Server Error", explanation='Get "https://registry/v2/": no such host')


class _FakeClient:
    def __init__(self) -> None:
        self.images = _FakeImages()


@pytest.mark.parametrize("base_image", [None, "mirror.local/debian:bookworm-slim"])
def test_pull_failure_message_names_both_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_image: str | None
) -> None:
    """The same message without an engine: the build command (with a site's base image) and the strategy."""
    from fedsim.cube import load_cube
    from fedsim.errors import RuntimeUnavailable
    from fedsim.runtimes.images import ImageBuilder, ImageMissing

    cube_dir = _unbuilt_cube(tmp_path, "team/model:1")
    monkeypatch.chdir(tmp_path)
    builder = ImageBuilder(_FakeClient())
    with pytest.raises(ImageMissing) as caught:
        builder.ensure(load_cube(cube_dir), base_image)
    exc = caught.value
    assert isinstance(exc, RuntimeUnavailable)  # a run records it as the job's reason, as before
    arg = f" --build-arg BASE_IMAGE={base_image}" if base_image else ""
    assert exc.fix == f"build it: docker build -t team/model:1{arg} -f cube/project/Dockerfile cube/project, {AUTO_FIX}"
    assert "no such host" in exc.cause and "http" not in exc.cause.split("(")[0]
    assert str(exc) == f"{exc.cause}; fix: {exc.fix}"


def test_pull_failure_without_a_dockerfile_suggests_no_build(tmp_path: Path) -> None:
    from fedsim.cube import load_cube
    from fedsim.runtimes.images import ImageBuilder, ImageMissing

    cube_dir = _unbuilt_cube(tmp_path, "team/model:1")
    (cube_dir / "project" / "Dockerfile").unlink()
    with pytest.raises(ImageMissing) as caught:
        ImageBuilder(_FakeClient()).ensure(load_cube(cube_dir), None)
    assert "docker build" not in caught.value.fix and "docker load" in caught.value.fix


# ---------------------------------------------------------------- rehearsing a site


def test_rehearsal_site_narrows_the_limits() -> None:
    from fedsim.jobs.factory import model_limits
    from fedsim.spec.loader import load_benchmark, load_site

    bench = load_benchmark(REHEARSAL / "benchmark.yaml")
    site = load_site(REHEARSAL / "my_site.yaml")
    limits = model_limits(bench.limits, site.hardware)
    assert (limits.ram_gb, limits.gpu_memory_gb) == (16, 8)  # the site's, below the official 40 and 11
    assert limits.timeout_per_case_s == 180
    assert [m.name for m in bench.models] == ["mine"]
    assert bench.models[0].cube is not None and bench.models[0].cube.resolve() == CUBE.resolve()


@pytest.mark.docker
@pytest.mark.slow
def test_rehearsal_benchmark_runs_the_cube_under_the_site_limits(tmp_path: Path) -> None:
    before = example_files()
    proc = fedsim(
        "run", "benchmark", str(REHEARSAL), "--sites", str(REHEARSAL / "my_site.yaml"),
        "--runs-dir", str(tmp_path), "--run-id", "rehearsal",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "rehearsal"
    summary = json.loads((run / "summary.json").read_text())
    jobs = summary["jobs"].values() if isinstance(summary["jobs"], dict) else summary["jobs"]
    infer = next(j for j in jobs if j["name"] == "infer.mine")
    assert infer["status"] == "succeeded", infer
    log = (run / "sites" / "my_site" / "logs" / "infer.mine.log").read_text()
    assert f"--memory={16 * 1024**3}" in log  # the site's 16 GB, not the official 40
    assert "--network=none" in log and "--read-only" in log
    assert len(list((run / "sites" / "my_site" / "predictions" / "mine").glob("*.nii.gz"))) == 3
    assert example_files() == before, "the run wrote into docs/examples"
