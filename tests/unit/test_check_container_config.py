"""check-submission, dry-run and stress take a MedPerf container config wherever they take an MLCube (issue 21).

- a submission path is a cube folder of either format (the FeTS ``mlcube/`` layout included) or the declaring
  file itself, any name for a container config; anything else is one line naming what was looked for where;
- the first check is ``container_config``: infer must mount data_path and output_path as directories;
- what the container runs is checked by MedPerf's rule (docker's ``--entrypoint``/command semantics), not
  MLCube's: a CMD-only image passes, a shell-form ENTRYPOINT that drops ``run_args.command`` fails, relative
  paths fail as for an MLCube;
- an image that comes without a Dockerfile (a ``docker save`` archive) leaves those checks to the image.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fedsim.cube import load_cube
from fedsim.errors import SpecError
from fedsim.stress.run import load_models
from fedsim.submission.check import resolve_target
from fedsim.submission.dryrun import load_submissions
from fedsim.submission.locate import cube_location
from fedsim.submission.static import (
    ON_IMAGE,
    command_checks,
    dockerfile_checks,
    image_command,
    load_cube_check,
    without_dockerfile,
)
from tests.conftest import ROOT
from tests.container_configs import DATA, PREDICTIONS, write_config

GUIDE_MODEL = ROOT / "docs" / "examples" / "minimal_container"
MLCUBE_MODEL = ROOT / "docs" / "examples" / "minimal_model"
VOLUMES = {
    "input_volumes": {"data_path": {"mount_path": DATA, "type": "directory"}},
    "output_volumes": {"output_path": {"mount_path": PREDICTIONS, "type": "directory"}},
}


def container(folder: Path, dockerfile: str | None, run_args: dict[str, object] | None = None, **task: object) -> Path:
    infer: dict[str, object] = {**({"run_args": run_args} if run_args is not None else {}), **VOLUMES, **task}
    write_config(folder, "DockerImage", "team/model:1", {"infer": infer})
    if dockerfile is not None:
        (folder / "Dockerfile").write_text(dockerfile)
    return folder


def statuses(folder: Path) -> dict[str, tuple[str, str]]:
    cube, check = load_cube_check(folder)
    assert cube is not None and check.status.value == "passed", check
    return {c.name: (c.status.value, c.cause) for c in dockerfile_checks(cube)}


# ---------------------------------------------------------------- where the cube is


def test_a_container_folder_or_its_file_is_a_submission(tmp_path: Path) -> None:
    folder = container(tmp_path / "team-a", 'FROM x\nENTRYPOINT ["python3", "/p/infer.py"]\n')
    by_folder = resolve_target(str(folder))
    assert (by_folder.name, by_folder.cube_dir, by_folder.cube_file) == ("team-a", folder.resolve(), None)
    by_file = resolve_target(str(folder / "container_config.yaml"))
    assert (by_file.name, by_file.cube_dir) == ("team-a", folder.resolve())
    assert by_file.cube_path == (folder / "container_config.yaml").resolve()
    odd = folder / "container_config_as_docker_image.yaml"  # MedPerf's tests name theirs so
    odd.write_text((folder / "container_config.yaml").read_text())
    target = resolve_target(str(odd), name="mine")
    assert (target.name, target.cube_path) == ("mine", odd.resolve())
    cube, check = load_cube_check(odd)
    assert cube is not None and cube.spec_file == odd.name and check.name == "container_config"


def test_the_mlcube_layouts_resolve_as_before() -> None:
    assert resolve_target(str(MLCUBE_MODEL)).cube_dir == MLCUBE_MODEL.resolve()
    target = resolve_target(str(MLCUBE_MODEL / "mlcube.yaml"))
    assert (target.name, target.cube_dir) == ("minimal_model", MLCUBE_MODEL.resolve())
    cube, check = load_cube_check(MLCUBE_MODEL)
    assert cube is not None and (check.name, check.status.value) == ("mlcube", "passed")


def test_a_fets_layout_is_named_by_its_top_folder(tmp_path: Path) -> None:
    container(tmp_path / "fets" / "mlcube", None)  # <cube>/mlcube/ beside <cube>/project/, as the FeTS cubes
    target = resolve_target(str(tmp_path / "fets"))
    assert (target.name, target.cube_dir) == ("fets", (tmp_path / "fets" / "mlcube").resolve())


def test_a_folder_without_either_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError) as caught:
        resolve_target(str(tmp_path / "empty"))
    assert str(caught.value) == (
        f"no mlcube.yaml or container_config.yaml in {tmp_path / 'empty'} (nor in its mlcube/); fix: give a cube "
        "folder or the file that declares the cube"
    )
    (tmp_path / "notes.yaml").write_text("name: x\n")
    with pytest.raises(SpecError) as caught:
        resolve_target(str(tmp_path / "notes.yaml"))
    assert str(caught.value) == (
        f"{tmp_path / 'notes.yaml'} is neither an mlcube.yaml nor a MedPerf container config (it sets no "
        "container_type); fix: give the cube's folder or the file that declares it"
    )
    assert cube_location(tmp_path / "empty") is None


def test_dry_run_lists_both_formats(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    container(subs / "medperf", 'FROM x\nENTRYPOINT ["python3", "/p/infer.py"]\n')
    (subs / "classic").mkdir(parents=True)
    (subs / "classic" / "mlcube.yaml").write_text((MLCUBE_MODEL / "mlcube.yaml").read_text())
    (subs / "notes").mkdir()  # neither: not a submission
    assert [(t.name, t.cube_dir) for t in load_submissions(subs)] == [
        ("classic", (subs / "classic").resolve()),
        ("medperf", (subs / "medperf").resolve()),
    ]
    listed = tmp_path / "subs.yaml"
    listed.write_text("- {name: a, cube: subs/medperf/container_config.yaml}\n- subs/medperf\n")
    targets = load_submissions(listed)
    assert [(t.name, t.cube_path) for t in targets] == [
        ("a", (subs / "medperf" / "container_config.yaml").resolve()),
        ("medperf", (subs / "medperf").resolve()),
    ]
    (subs / "medperf").rename(tmp_path / "elsewhere")
    (subs / "classic" / "mlcube.yaml").unlink()
    with pytest.raises(SpecError, match=r"no cube folder \(a folder with mlcube.yaml or container_config.yaml\)"):
        load_submissions(subs)


def test_stress_takes_a_container_config(tmp_path: Path) -> None:
    container(tmp_path / "cc", None)
    models = load_models((tmp_path / "cc", tmp_path / "cc" / "container_config.yaml", MLCUBE_MODEL))
    assert [m.name for m in models] == ["cc", "cc-2", "minimal_model"]
    assert models[0].cube.spec_path == (tmp_path / "cc" / "container_config.yaml").resolve()
    write_config(
        tmp_path / "half", "DockerImage", "team/model:1", {"infer": {"input_volumes": VOLUMES["input_volumes"]}}
    )
    with pytest.raises(SpecError) as caught:
        load_models((tmp_path / "half",))
    assert str(caught.value) == (
        f"{(tmp_path / 'half' / 'container_config.yaml').resolve()}: tasks.infer: output_path is not in the "
        "output_volumes of infer"
    )
    (tmp_path / "none").mkdir()
    with pytest.raises(SpecError, match=r"^no mlcube.yaml or container_config.yaml in .*none \(nor in its mlcube/\)"):
        load_models((tmp_path / "none",))


# ---------------------------------------------------------------- the container_config check


def test_the_guide_model_passes_the_static_checks() -> None:
    cube, check = load_cube_check(GUIDE_MODEL)
    assert cube is not None
    assert (check.name, check.status.value, check.cause) == (
        "container_config",
        "passed",
        "infer mounts data_path at /mlcommons/volumes/data and output_path at /mlcommons/volumes/predictions",
    )
    assert statuses(GUIDE_MODEL) == {
        "entrypoint": ("passed", 'runs ["python3", "/project/infer.py"]'),
        "workdir": ("passed", "no WORKDIR set"),
    }


@pytest.mark.parametrize(
    ("tasks", "cause"),
    [
        ({"evaluate": {}}, "container_config.yaml has no 'infer' task (tasks: evaluate)"),
        ({"infer": {"output_volumes": VOLUMES["output_volumes"]}}, "data_path is not in the input_volumes of infer"),
        (
            {"infer": {**VOLUMES, "output_volumes": {"output_path": {"mount_path": "/o/p.nii.gz", "type": "file"}}}},
            "output_path is a file, not the directory the predictions are written to",
        ),
        (
            {"infer": {**VOLUMES, "input_volumes": {"data_path": {"mount_path": DATA, "type": "file"}}}},
            "data_path is a file, not the directory of case folders the federation mounts",
        ),
    ],
)
def test_an_infer_task_without_the_federations_keys_fails(tmp_path: Path, tasks: dict[str, object], cause: str) -> None:
    if "evaluate" in tasks:  # a task MedPerf supplies nothing to is refused at load; give evaluate its keys
        tasks = {"evaluate": {"input_volumes": {"labels": {"mount_path": "/l", "type": "directory"}}}}
    write_config(tmp_path, "DockerImage", "team/model:1", tasks)
    cube, check = load_cube_check(tmp_path)
    assert cube is not None and (check.name, check.status.value, check.cause) == ("container_config", "failed", cause)
    assert "/mlcommons/volumes/predictions" in check.fix and "MedPerf's model template" in check.fix


def test_an_invalid_config_fails_the_first_check_in_one_line(tmp_path: Path) -> None:
    container(tmp_path, None, {"gpus": "1,2"})
    cube, check = load_cube_check(tmp_path)
    assert cube is None and check.name == "container_config" and check.status.value == "failed"
    assert check.cause.startswith(f"container_config.yaml is invalid: {tmp_path / 'container_config.yaml'}: ")
    assert "Invalid gpus argument '1,2'" in check.cause and "\n" not in check.cause
    assert check.fix == "fix the field it names (MedPerf's schema)"


# ---------------------------------------------------------------- what the container runs: MedPerf's rule


EXEC = 'FROM x\nENTRYPOINT ["python3", "/p/infer.py"]\n'


@pytest.mark.parametrize(
    ("dockerfile", "run_args", "status", "cause"),
    [
        (EXEC, None, "passed", 'runs ["python3", "/p/infer.py"]'),
        # MedPerf passes no task name: an image with only a CMD runs it (an MLCube's would be replaced)
        ('FROM x\nCMD ["python3", "/p/infer.py"]\n', None, "passed", 'runs ["python3", "/p/infer.py"]'),
        (EXEC, {"command": "--fast"}, "passed", 'runs ["python3", "/p/infer.py", "--fast"]'),
        # run_args.command replaces CMD
        ('FROM x\nCMD ["sleep", "1"]\n', {"command": ["python3", "/p/infer.py"]}, "passed", "/p/infer.py"),
        # --entrypoint clears the image's CMD too
        (
            'FROM x\nCMD ["python3", "/p/other.py"]\n',
            {"entrypoint": "/bin/sh", "command": ["-c", "exec python3 /p/infer.py"]},
            "passed",
            'runs ["/bin/sh", "-c", "exec python3 /p/infer.py"]',
        ),
        ("FROM x\nENTRYPOINT python3 /p/infer.py\n", None, "passed", 'runs ["python3", "/p/infer.py"]'),
        (
            "FROM x\nENTRYPOINT python3 /p/infer.py\n",
            {"command": ["--fast"]},
            "failed",
            "ENTRYPOINT in shell form (python3 /p/infer.py) runs through /bin/sh -c and drops run_args.command",
        ),
        ("FROM x\nRUN true\n", None, "failed", "nothing to run: no ENTRYPOINT or CMD in the Dockerfile"),
        (EXEC, {"entrypoint": ""}, "failed", "nothing to run"),  # "" clears ENTRYPOINT, and with it CMD
        (
            "FROM x\nWORKDIR /app\nCOPY . /app\n",
            {"command": ["python3", "infer.py"]},
            "failed",
            "the container runs 'infer.py' by a relative path (resolved against WORKDIR /app, which singularity "
            "ignores)",
        ),
    ],
)
def test_what_runs_follows_docker_and_medperf(
    tmp_path: Path, dockerfile: str, run_args: dict[str, object] | None, status: str, cause: str
) -> None:
    found = statuses(container(tmp_path, dockerfile, run_args))["entrypoint"]
    assert found[0] == status and cause in found[1], found


def test_a_relative_command_is_fixed_with_its_absolute_path(tmp_path: Path) -> None:
    cube = load_cube(container(tmp_path, "FROM x\nWORKDIR /app\n", {"command": ["python3", "infer.py"]}))
    check = dockerfile_checks(cube)[0]
    assert check.fix == 'use an absolute path: ["python3", "/app/infer.py"]'


def test_the_same_image_as_an_mlcube_or_a_bare_image_needs_an_entrypoint(tmp_path: Path) -> None:
    cmd_only = image_command({"Cmd": ["python3", "/p/infer.py"], "WorkingDir": ""})
    cube = load_cube(container(tmp_path, None))
    assert [(c.name, c.status.value) for c in command_checks(cube, cmd_only, None)] == [
        ("entrypoint", "passed"),
        ("workdir", "passed"),
    ]
    bare = command_checks(None, cmd_only, None)[0]  # the FeTS MLCube contract: arguments replace CMD
    assert bare.status.value == "failed" and bare.cause.startswith("no ENTRYPOINT in the image config")


def test_an_archive_leaves_the_checks_to_its_image(tmp_path: Path) -> None:
    (tmp_path / "model.tar").write_bytes(b"")
    write_config(tmp_path, "DockerArchive", "model.tar", {"infer": VOLUMES})
    cube, check = load_cube_check(tmp_path)
    assert cube is not None and check.status.value == "passed"
    found = dockerfile_checks(cube)
    why = f"the image is a docker save archive, not built from a Dockerfile: {ON_IMAGE}"
    assert [(c.name, c.status.value, c.cause) for c in found] == [
        ("entrypoint", "skipped", why),
        ("workdir", "skipped", why),
    ]
    assert without_dockerfile(cube)
    pulled = load_cube(container(tmp_path / "pulled", None))  # a DockerImage with no Dockerfile: pulled
    assert without_dockerfile(pulled) and dockerfile_checks(pulled)[0].cause.endswith(ON_IMAGE)
    assert not without_dockerfile(load_cube(GUIDE_MODEL))


def test_the_guide_model_is_medperfs_model_template_shape() -> None:
    """data_path → /mlcommons/volumes/data, output_path → /mlcommons/volumes/predictions, no run_args
    (docs/medperf-container-format.md §6.1, model_container)."""
    data = yaml.safe_load((GUIDE_MODEL / "container_config.yaml").read_text())
    assert data == {
        "container_type": "DockerImage",
        "image": "fedsim-example/minimal-container:0.1",
        "tasks": {"infer": VOLUMES},
    }


def test_check_submission_takes_the_key_an_encrypted_image_needs(tmp_path: Path) -> None:
    """``--decryption-key FILE``: required by an encrypted image, refused for any other (it cannot take effect)."""
    from fedsim.submission.check import with_key
    from tests.container_configs import infer_task

    key = tmp_path / "key.txt"
    key.write_text("pass\n")
    task = {"infer": infer_task()}
    sealed = load_cube(write_config(tmp_path / "sealed", "EncryptedDockerArchive", "m.tar.gpg", task))
    with pytest.raises(SpecError, match=r"is an encrypted image .*fix: pass --decryption-key FILE"):
        with_key(sealed, None)
    keyed = with_key(sealed, key)
    assert keyed.image_source is not None and keyed.image_source.decryption_key == key
    assert "pass" not in repr(keyed.image_source)  # the key file's path only, and not even that in the repr
    plain = load_cube(write_config(tmp_path / "plain", "DockerArchive", "m.tar", {"infer": infer_task()}))
    assert with_key(plain, None) is plain
    with pytest.raises(SpecError, match=r"--decryption-key cannot take effect: 'plain'"):
        with_key(plain, key)
