"""A benchmark of MedPerf container configs on docker and on the local runtime (issue 21, "done when"): an MLCube
data prep, container-config models of the three docker types — a ``DockerImage`` fedsim builds from the Dockerfile
beside it, a ``DockerArchive`` and an ``EncryptedDockerArchive`` with its key — beside the MLCube baseline, and a
container-config evaluator.

Every model runs the baseline's code, so every prediction must be scored and score exactly as the MLCube
baseline does; each job records the image it ran; the archives' tags are gone after the run (fedsim loaded them),
no decrypted file is left behind, and the passphrase reaches no file of the run directory.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml

from fedsim.cube import load_cube
from fedsim.pipeline.run import RunOptions, run_benchmark
from tests.conftest import CUBES, small_benchmark
from tests.container_configs import evaluator, model_archive, model_image

pytestmark = [pytest.mark.e2e]

PASSPHRASE = "correct horse battery staple 4711"


def _save(client: object, source: str, tag: str, out: Path) -> Path:
    """``docker save`` of ``source`` under ``tag`` (the tag removed again, so fedsim's load is a real one)."""
    image = client.images.get(source)  # type: ignore[attr-defined]
    image.tag(tag)
    with open(out, "wb") as fh:
        for chunk in client.images.get(tag).save(named=True):  # type: ignore[attr-defined]
            fh.write(chunk)
    client.images.remove(tag)  # type: ignore[attr-defined]
    return out


def _encrypt(plain: Path, key: Path) -> Path:
    out = plain.with_name(plain.name + ".gpg")
    with tempfile.TemporaryDirectory() as home:
        subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--symmetric",
             "--passphrase-file", str(key), "--output", str(out), str(plain)],
            check=True, capture_output=True,
        )  # fmt: skip
    return out


@pytest.mark.docker
def test_a_benchmark_of_container_configs_runs_on_docker(tmp_path: Path) -> None:
    import docker

    from fedsim.runtimes.docker import DockerRuntime

    client = docker.from_env()
    token = uuid.uuid4().hex[:8]
    built_tag, archive_tag, encrypted_tag = (f"fedsim-test/cc-{k}:{token}" for k in ("image", "archive", "enc"))
    cubes = tmp_path / "cubes"
    image_dir = model_image(cubes / "cc_image", built_tag)
    DockerRuntime().prepare(load_cube(image_dir))  # fedsim builds it; the archives are saved from it
    key = tmp_path / "model.key"
    key.write_text(PASSPHRASE + "\n")
    archive = _save(client, built_tag, archive_tag, tmp_path / "model.tar")
    encrypted = _encrypt(_save(client, built_tag, encrypted_tag, tmp_path / "enc.tar"), key)
    model_archive(cubes / "cc_archive", archive)
    model_archive(cubes / "cc_encrypted", encrypted, encrypted=True)
    evaluator(cubes / "cc_metrics", f"fedsim-test/cc-metrics:{token}")

    bench = small_benchmark(tmp_path, models={"baseline": CUBES / "baseline"}, sites=1, cases=2, runtime="docker")
    spec = yaml.safe_load((bench / "benchmark.yaml").read_text())
    spec["metrics"] = {"cube": str(cubes / "cc_metrics")}
    spec["models"] += [
        {"name": "cc_image", "cube": str(cubes / "cc_image")},
        {"name": "cc_archive", "cube": str(cubes / "cc_archive")},
        {"name": "cc_encrypted", "cube": str(cubes / "cc_encrypted"), "decryption_key": str(key)},
    ]
    (bench / "benchmark.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    try:
        report = run_benchmark(RunOptions(benchmark=bench, runtime="docker", runs_dir=tmp_path / "runs"))
        jobs = json.loads((report.run.root / "summary.json").read_text())["jobs"]
        failed = [(j["name"], j["status"], j.get("reason")) for j in jobs if j["status"] != "succeeded"]
        assert not failed
        results = yaml.safe_load((report.run.root / "results" / "s0.yaml").read_text())
        assert len(results) == 2
        for case, by_model in results.items():
            assert set(by_model) == {"baseline", "cc_image", "cc_archive", "cc_encrypted"}, case
            for model in ("cc_image", "cc_archive", "cc_encrypted"):
                assert by_model[model] == by_model["baseline"], (case, model)  # the same code, the same numbers

        infer = {j["model"]: j for j in jobs if j["kind"] == "infer"}
        for model in ("cc_image", "cc_archive", "cc_encrypted"):
            image = infer[model]["image"]
            assert image["image_id"].startswith("sha256:"), (model, image)
        assert infer["cc_archive"]["image"]["image"] == archive_tag
        assert infer["cc_encrypted"]["image"]["image"] == encrypted_tag
        assert infer["cc_archive"]["image"]["file_sha256"] != infer["cc_encrypted"]["image"]["file_sha256"]

        tags = {t for img in client.images.list() for t in img.tags}
        assert archive_tag not in tags and encrypted_tag not in tags  # fedsim loaded them, fedsim removed them
        assert built_tag in tags  # built, not loaded: kept like every built cube image
        assert not list(Path(tempfile.gettempdir()).glob("fedsim-decrypted-*"))
        for path in report.run.root.rglob("*"):
            if path.is_file():
                assert PASSPHRASE not in path.read_text(errors="replace"), path
    finally:
        for tag in (built_tag, archive_tag, encrypted_tag, f"fedsim-test/cc-metrics:{token}"):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(tag, force=True)


@pytest.mark.sandbox
def test_the_same_benchmark_on_the_local_runtime_runs_what_it_can(tmp_path: Path) -> None:
    """In the bubblewrap sandbox: the ``DockerImage`` model and the evaluator run from their build contexts with
    their volumes bound at the declared mount paths, scoring as the MLCube baseline; an archive, whose root file
    system the sandbox does not unpack, is refused in one line, and the run goes on."""
    cubes = tmp_path / "cubes"
    model_image(cubes / "cc_image", "fedsim-test/cc-image:never-built")
    fake = tmp_path / "model.tar"
    fake.write_bytes(b"")
    model_archive(cubes / "cc_archive", fake)
    evaluator(cubes / "cc_metrics", "fedsim-test/cc-metrics:never-built")
    bench = small_benchmark(tmp_path, models={"baseline": CUBES / "baseline"}, sites=1, cases=2)
    spec = yaml.safe_load((bench / "benchmark.yaml").read_text())
    spec["metrics"] = {"cube": str(cubes / "cc_metrics")}
    spec["models"] += [
        {"name": "cc_image", "cube": str(cubes / "cc_image")},
        {"name": "cc_archive", "cube": str(cubes / "cc_archive")},
    ]
    (bench / "benchmark.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    report = run_benchmark(RunOptions(benchmark=bench, runtime="local", runs_dir=tmp_path / "runs"))
    jobs = {j["name"]: j for j in json.loads((report.run.root / "summary.json").read_text())["jobs"]}
    assert jobs["infer.cc_image"]["status"] == "succeeded", jobs["infer.cc_image"]
    assert jobs["infer.cc_image"]["containment"] == "bwrap"
    assert jobs["evaluate.cc_image"]["containment"] == "bwrap"
    refused = jobs["infer.cc_archive"]
    assert refused["status"] == "failed"
    assert refused["reason"] == (
        "cube 'cc_archive' is a docker save archive, which the local (in its bubblewrap sandbox) runtime cannot run "
        "(it runs: registry); fix: use the docker or the singularity runtime"
    )
    results = yaml.safe_load((report.run.root / "results" / "s0.yaml").read_text())
    assert len(results) == 2
    for case, by_model in results.items():
        assert by_model["cc_image"] == by_model["baseline"], case
    log = (report.run.root / "sites" / "s0" / "logs" / "infer.cc_image.log").read_text()
    command = log.splitlines()[0]
    data = report.run.root / "sites" / "s0" / "prepared"
    assert f"--ro-bind {data} /mlcommons/volumes/data" in command
    predictions = report.run.root / "sites" / "s0" / "predictions" / "cc_image"
    assert f"--bind {predictions} /mlcommons/volumes/predictions" in command
    assert command.endswith("infer --data_path=/mlcommons/volumes/data --output_path=/mlcommons/volumes/predictions")
