"""MedPerf container configs built from fedsim's reference cubes, for end-to-end tests (issue 21).

The model and evaluator run the very code of the bundled MLCube cubes, declared the way MedPerf's examples declare
such containers (``examples/cc/rano``: MLCube-style commands in ``run_args.command``, volumes at fixed paths), so
their numbers must equal the MLCube cubes' exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.conftest import CUBES

DATA = "/mlcommons/volumes/data"
PREDICTIONS = "/mlcommons/volumes/predictions"


def infer_task() -> dict[str, object]:
    return {
        "run_args": {"command": ["infer", f"--data_path={DATA}", f"--output_path={PREDICTIONS}"]},
        "input_volumes": {"data_path": {"mount_path": DATA, "type": "directory"}},
        "output_volumes": {"output_path": {"mount_path": PREDICTIONS, "type": "directory"}},
    }


def write_config(folder: Path, container_type: str, image: str, tasks: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "container_config.yaml").write_text(
        yaml.safe_dump({"container_type": container_type, "image": image, "tasks": tasks}, sort_keys=False)
    )
    return folder


def model_image(folder: Path, tag: str) -> Path:
    """A ``DockerImage`` model with the baseline's Dockerfile beside it: fedsim builds it in the build phase."""
    shutil.copytree(CUBES / "baseline" / "project", folder)
    return write_config(folder, "DockerImage", tag, {"infer": infer_task()})


def model_archive(folder: Path, archive: Path, *, encrypted: bool = False) -> Path:
    """A ``DockerArchive`` (or ``EncryptedDockerArchive``) model whose image is ``archive`` beside the config."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(archive, folder / archive.name)
    kind = "EncryptedDockerArchive" if encrypted else "DockerArchive"
    return write_config(folder, kind, archive.name, {"infer": infer_task()})


def evaluator(folder: Path, tag: str) -> Path:
    """The bundled metrics code as MedPerf's evaluator template declares it: ``predictions``, ``labels``, the
    parameters file and a results file mounted by itself (written in place: a rename over a file mount fails)."""
    shutil.copytree(CUBES / "metrics" / "project", folder)
    (folder / "workspace").mkdir()
    (folder / "workspace" / "parameters.yaml").write_text("metric_set: brats2021\n")
    script = (
        "python3 /mlcube_project/mlcube.py evaluate --predictions=/mlcommons/volumes/predictions "
        "--labels=/mlcommons/volumes/labels --parameters_file=/mlcommons/volumes/parameters/parameters_file.yaml "
        "--output_path=/tmp/results.yaml && cat /tmp/results.yaml > /mlcommons/volumes/results/results.yaml"
    )
    task = {
        "run_args": {"entrypoint": "/bin/sh", "command": ["-c", script]},
        "input_volumes": {
            "predictions": {"mount_path": "/mlcommons/volumes/predictions", "type": "directory"},
            "labels": {"mount_path": "/mlcommons/volumes/labels", "type": "directory"},
            "parameters_file": {"mount_path": "/mlcommons/volumes/parameters/parameters_file.yaml", "type": "file"},
        },
        "output_volumes": {"output_path": {"mount_path": "/mlcommons/volumes/results/results.yaml", "type": "file"}},
    }
    return write_config(folder, "DockerImage", tag, {"evaluate": task})
