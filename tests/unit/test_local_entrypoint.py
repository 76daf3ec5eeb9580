"""The local runtime's command for real cube layouts: the Dockerfile's ENTRYPOINT mapped to host paths."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from fedsim.cube import CubeSpec, bind, load_cube
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes import LocalRuntime
from fedsim.runtimes.entrypoint import local_command
from tests.conftest import write_yaml

PY = "/host/python"


def _cube(
    tmp_path: Path,
    dockerfile: str | None,
    files: dict[str, str] | None = None,
    *,
    task_entrypoint: str | None = None,
    build_args: dict[str, str] | None = None,
    local: dict[str, object] | None = None,
) -> CubeSpec:
    root = tmp_path / "cube"
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if dockerfile is not None:
        (root / "Dockerfile").write_text(textwrap.dedent(dockerfile).lstrip())
    docker: dict[str, object] = {"image": "example/cube:1", "build_context": "."}
    if build_args:
        docker["build_args"] = build_args
    task: dict[str, object] = {
        "parameters": {"inputs": {"data_path": "data/"}, "outputs": {"output_path": "out/"}},
    }
    if task_entrypoint:
        task["entrypoint"] = task_entrypoint
    data: dict[str, object] = {"name": "c", "docker": docker, "tasks": {"infer": task}}
    if local:
        data["local"] = local
    write_yaml(root / "mlcube.yaml", data)
    return load_cube(root)


def _head(cube: CubeSpec) -> list[str]:
    return list(local_command(cube, "infer", python=PY).head)


def _error(cube: CubeSpec) -> str:
    with pytest.raises(RuntimeUnavailable) as err:
        local_command(cube, "infer", python=PY)
    return str(err.value)


def _why(cube: CubeSpec, reason: str) -> str:
    fix = f"add 'local: {{entrypoint: \"python3 /path/to/mlcube.py\"}}' to {cube.root / 'mlcube.yaml'}"
    return f"cube 'c' cannot run locally: {reason}; {fix}, or use the docker runtime"


def test_fets_template_layout_copies_a_directory(tmp_path: Path) -> None:
    cube = _cube(
        tmp_path,
        """
        FROM nvcr.io/nvidia/pytorch:20.08-py3
        LABEL author="someone"
        WORKDIR /project
        COPY ./project/requirements.txt ./requirements.txt
        RUN pip3 install -r requirements.txt
        # copy all files
        COPY ./project /project
        ENTRYPOINT [ "python3", "/project/mlcube.py"]
        """,
        {"project/mlcube.py": "", "project/requirements.txt": ""},
    )
    cmd = local_command(cube, "infer", python=PY)
    assert cmd.head == (PY, str(cube.root / "project" / "mlcube.py"))
    assert cmd.passes_task and cmd.origin == "ENTRYPOINT of Dockerfile"


def test_relative_workdir_copy_into_dot_and_mapped_arguments(tmp_path: Path) -> None:
    cube = _cube(
        tmp_path,
        """
        FROM python:3.11-slim
        WORKDIR /opt
        WORKDIR app
        COPY src/main.py .
        COPY --chown=1000:1000 conf/ \\
             conf/
        ENTRYPOINT ["python", "-u", "main.py", "--config", "/opt/app/conf/default.yaml", "--log=/tmp/x", "-v"]
        """,
        {"src/main.py": "", "conf/default.yaml": ""},
    )
    root = cube.root
    assert _head(cube) == [
        PY,
        "-u",
        str(root / "src" / "main.py"),
        "--config",
        str(root / "conf" / "default.yaml"),
        "--log=/tmp/x",  # not copied: left as written
        "-v",
    ]


def test_file_into_directory_renamed_file_and_later_copy_wins(tmp_path: Path) -> None:
    cube = _cube(
        tmp_path,
        """
        FROM ubuntu:22.04
        COPY old/entry.py /workspace/entry.py
        COPY tools/entry.py /workspace/
        COPY tools/helper.py /usr/lib/helper_renamed.py
        ENTRYPOINT ["/usr/bin/env", "python3.9", "/workspace/entry.py", "--helper=/usr/lib/helper_renamed.py"]
        """,
        {"old/entry.py": "", "tools/entry.py": "", "tools/helper.py": ""},
    )
    root = cube.root
    assert _head(cube) == [PY, str(root / "tools" / "entry.py"), f"--helper={root / 'tools' / 'helper.py'}"]


def test_add_with_chown_under_bash(tmp_path: Path) -> None:
    cube = _cube(
        tmp_path,
        """
        FROM ubuntu:22.04
        ADD --chown=1000:1000 ["scripts/run.sh", "/run.sh"]
        ENTRYPOINT ["/bin/bash", "-e", "/run.sh"]
        """,
        {"scripts/run.sh": "echo hi\n"},
    )
    bash = "/bin/bash" if os.path.exists("/bin/bash") else shutil.which("bash")
    assert _head(cube) == [bash, "-e", str(cube.root / "scripts" / "run.sh")]


def test_shell_form_plain_words_and_with_shell_syntax(tmp_path: Path) -> None:
    dockerfile = "FROM python:3.11\nCOPY app/ /app/\nENTRYPOINT exec python3 /app/mlcube.py\n"
    plain = _cube(tmp_path / "a", dockerfile, {"app/mlcube.py": ""})
    assert _head(plain) == [PY, str(plain.root / "app" / "mlcube.py")]
    syntax = _cube(
        tmp_path / "b",
        "FROM python:3.11\nENV APP=/app\nCOPY app /app\nENTRYPOINT python3 $APP/mlcube.py\n",
        {"app/mlcube.py": ""},
    )
    assert _error(syntax) == _why(
        syntax, "the ENTRYPOINT at Dockerfile:4 is a shell command with shell syntax (python3 $APP/mlcube.py)"
    )


def test_cmd_only_image_needs_a_task_entrypoint(tmp_path: Path) -> None:
    dockerfile = 'FROM python:3.11\nCOPY app /app\nCMD ["python3", "/app/mlcube.py"]\n'
    cube = _cube(tmp_path / "a", dockerfile, {"app/mlcube.py": ""})
    assert _error(cube) == _why(
        cube,
        "Dockerfile has CMD but no ENTRYPOINT, and MLCube's task arguments replace CMD, "
        "so the image runs no task unless tasks.infer sets an 'entrypoint'",
    )
    with_entry = _cube(tmp_path / "b", dockerfile, {"app/mlcube.py": ""}, task_entrypoint="python3 /app/mlcube.py")
    cmd = local_command(with_entry, "infer", python=PY)
    assert cmd.head == (PY, str(with_entry.root / "app" / "mlcube.py"))
    assert not cmd.passes_task and cmd.origin == "tasks.infer.entrypoint"


def test_multi_stage_only_the_last_stage_counts_and_from_sources_are_ambiguous(tmp_path: Path) -> None:
    files = {"app/mlcube.py": "", "build/x.py": ""}
    cube = _cube(
        tmp_path / "a",
        """
        FROM python:3.11 AS builder
        COPY build /src
        ENTRYPOINT ["python3", "/src/never.py"]

        FROM python:3.11-slim AS runtime
        COPY app /app
        COPY --from=builder /src /app/lib
        ENTRYPOINT ["python3", "/app/mlcube.py", "--lib", "/app/lib/x.py"]
        """,
        files,
    )
    assert _error(cube) == _why(
        cube,
        "the ENTRYPOINT at Dockerfile:8 passes /app/lib/x.py, which comes from another build stage "
        "(Dockerfile line 7: COPY --from=builder /src /app/lib)",
    )
    inherited = _cube(
        tmp_path / "b",
        """
        FROM python:3.11 AS base
        WORKDIR /srv
        COPY app/ ./
        ENTRYPOINT ["python3", "mlcube.py"]
        FROM base AS final
        RUN echo ready
        """,
        files,
    )
    assert _head(inherited) == [PY, str(inherited.root / "app" / "mlcube.py")]


def test_arg_and_env_substitution_with_defaults_and_build_args(tmp_path: Path) -> None:
    dockerfile = """
        ARG BASE=python:3.11
        FROM ${BASE}
        ARG APP_DIR=/opt/app
        ARG SRC
        ENV CODE=${SRC:-project}
        COPY $CODE ${APP_DIR}/
        ENTRYPOINT ["python3", "/opt/app/mlcube.py"]
        """
    files = {"project/mlcube.py": "", "alt/mlcube.py": ""}
    plain = _cube(tmp_path / "a", dockerfile, files)
    assert _head(plain) == [PY, str(plain.root / "project" / "mlcube.py")]
    overridden = _cube(tmp_path / "b", dockerfile, files, build_args={"SRC": "alt"})
    assert _head(overridden) == [PY, str(overridden.root / "alt" / "mlcube.py")]
    moved = _cube(tmp_path / "c", dockerfile, files, build_args={"APP_DIR": "/srv"})
    assert _error(moved) == _why(
        moved,
        "the ENTRYPOINT at Dockerfile:7 runs /opt/app/mlcube.py, which no COPY or ADD line of Dockerfile provides",
    )


def test_script_made_by_run_is_not_mapped(tmp_path: Path) -> None:
    cube = _cube(
        tmp_path,
        """
        FROM ubuntu:22.04
        COPY app /app
        RUN printf '#!/bin/sh\\nexec python3 /app/mlcube.py "$@"\\n' > /entry.sh && chmod +x /entry.sh
        ENTRYPOINT ["/entry.sh"]
        """,
        {"app/mlcube.py": ""},
    )
    assert _error(cube) == _why(
        cube,
        "the ENTRYPOINT at Dockerfile:4 runs /entry.sh, which no COPY or ADD line of Dockerfile provides "
        "(the RUN at line 3 makes it)",
    )


def test_several_candidate_sources_are_ambiguous(tmp_path: Path) -> None:
    dockerfile = 'FROM python:3.11\nCOPY a/ b/ /app/\nENTRYPOINT ["python3", "/app/main.py"]\n'
    files = {"a/main.py": "", "b/main.py": ""}
    cube = _cube(tmp_path / "a", dockerfile, files)
    assert _error(cube) == _why(
        cube,
        "the ENTRYPOINT at Dockerfile:3 runs /app/main.py, which several sources provide: a/main.py, b/main.py "
        "(Dockerfile line 2: COPY a/ b/ /app/)",
    )
    settled = _cube(tmp_path / "b", dockerfile + "COPY b/main.py /app/main.py\n", files)
    assert _head(settled) == [PY, str(settled.root / "b" / "main.py")]


def test_add_archive_and_workdir_of_the_base_image_are_ambiguous(tmp_path: Path) -> None:
    archive = _cube(
        tmp_path / "a",
        'FROM python:3.11\nADD code.tar.gz /opt/\nENTRYPOINT ["python3", "/opt/run.py"]\n',
        {"code.tar.gz": ""},
    )
    assert _error(archive) == _why(
        archive,
        "the ENTRYPOINT at Dockerfile:3 runs /opt/run.py, which may be unpacked from code.tar.gz "
        "(Dockerfile line 2: ADD code.tar.gz /opt/)",
    )
    relative = _cube(
        tmp_path / "b", 'FROM python:3.11\nCOPY main.py .\nENTRYPOINT ["python3", "main.py"]\n', {"main.py": ""}
    )
    assert _error(relative) == _why(
        relative,
        "the ENTRYPOINT at Dockerfile:3 runs 'main.py' relative to the WORKDIR of the base image python:3.11, "
        "unknown here",
    )


def test_bare_program_on_the_image_path_runs_through_its_shebang(tmp_path: Path) -> None:
    cube = _cube(
        tmp_path,
        """
        FROM ubuntu:22.04
        COPY entry.py /usr/local/bin/cube-entry
        RUN chmod +x /usr/local/bin/cube-entry
        ENTRYPOINT ["cube-entry"]
        """,
        {"entry.py": "#!/usr/bin/env python3\nprint('hi')\n"},
    )
    assert _head(cube) == [PY, str(cube.root / "entry.py")]


def test_no_dockerfile_and_no_mlcube_py(tmp_path: Path) -> None:
    cube = _cube(tmp_path, None, {"project/mlcube.py": ""})
    assert _error(cube) == _why(
        cube, f"there is no mlcube.py in {cube.root} and no Dockerfile to read the ENTRYPOINT from"
    )


def test_task_entrypoint_is_mapped_and_gets_no_task_name(tmp_path: Path) -> None:
    cube = _cube(
        tmp_path,
        'FROM python:3.11\nCOPY tools /app/tools\nENTRYPOINT ["python3", "/app/tools/other.py"]\n',
        {"tools/download.py": "", "tools/other.py": ""},
        task_entrypoint="python3 /app/tools/download.py --fast",
    )
    inv = bind(cube, "infer", {"data_path": tmp_path / "d", "output_path": tmp_path / "o"})
    assert LocalRuntime(python=PY).argv(inv) == [
        PY,
        str(cube.root / "tools" / "download.py"),
        "--fast",
        f"--data_path={tmp_path / 'd'}",
        f"--output_path={tmp_path / 'o'}",
    ]


def test_precedence(tmp_path: Path) -> None:
    dockerfile = 'FROM python:3.11\nCOPY tools /app\nENTRYPOINT ["python3", "/app/image.py"]\n'
    files = {"tools/image.py": "", "tools/task.py": "", "mlcube.py": ""}
    entry = "python3 /app/task.py"
    explicit = _cube(tmp_path / "a", dockerfile, files, task_entrypoint=entry, local={"entrypoint": "python3 run.py"})
    assert local_command(explicit, "infer", python=PY).origin == "local.entrypoint"
    assert _head(explicit) == [PY, "run.py"]
    root_script = _cube(tmp_path / "b", dockerfile, files, task_entrypoint=entry)
    assert _head(root_script) == [PY, str(root_script.root / "mlcube.py")]
    (root_script.root / "mlcube.py").unlink()
    assert _head(root_script) == [PY, str(root_script.root / "tools" / "task.py")]
    image = _cube(tmp_path / "c", dockerfile, {"tools/image.py": ""})
    assert _head(image) == [PY, str(image.root / "tools" / "image.py")]


FETS_MLCUBE_PY = '''\
"""MLCube handler in the style of the FeTS 2022 task 2 model template (typer, a dummy second command)."""
from pathlib import Path

import typer

app = typer.Typer()


@app.command("infer")
def infer(
    data_path: str = typer.Option(..., "--data_path"),
    output_path: str = typer.Option(..., "--output_path"),
    parameters_file: str = typer.Option(None, "--parameters_file"),
):
    cases = sorted(p.name for p in Path(data_path).iterdir())
    weights = (Path(__file__).parent / "model_ckpts" / "weights.txt").read_text().strip()
    for case in cases:
        (Path(output_path) / f"{case}_seg.txt").write_text(weights)


@app.command("hotfix")
def hotfix():
    pass


if __name__ == "__main__":
    app()
'''


def test_fets_template_cube_runs_through_launch(tmp_path: Path) -> None:
    cube = _cube(
        tmp_path,
        """
        FROM nvcr.io/nvidia/pytorch:20.08-py3
        COPY ./project/requirements.txt /project/requirements.txt
        RUN pip3 install -r /project/requirements.txt
        COPY ./project /project
        ENTRYPOINT ["python3", "/project/mlcube.py"]
        """,
        {
            "project/mlcube.py": FETS_MLCUBE_PY,
            "project/requirements.txt": "typer\n",
            "project/model_ckpts/weights.txt": "w42\n",
        },
    )
    assert not (cube.build_context_dir / "mlcube.py").exists()
    data, out = tmp_path / "data", tmp_path / "out"
    (data / "FeTS2022_00001").mkdir(parents=True)
    out.mkdir()
    inv = bind(cube, "infer", {"data_path": data, "output_path": out})
    handle = LocalRuntime().launch(inv, tmp_path / "job.log", tmp_path / "work")
    assert handle.wait(60) == 0, (tmp_path / "job.log").read_text()
    assert (out / "FeTS2022_00001_seg.txt").read_text() == "w42"
    assert LocalRuntime().argv(inv)[:3] == [sys.executable, str(cube.root / "project" / "mlcube.py"), "infer"]


def test_launch_reports_an_unmappable_cube_in_one_line(tmp_path: Path) -> None:
    cube = _cube(tmp_path, 'FROM python:3.11\nENTRYPOINT ["python3", "/app/mlcube.py"]\n')
    inv = bind(cube, "infer", {"data_path": tmp_path / "d", "output_path": tmp_path / "o"})
    with pytest.raises(RuntimeUnavailable) as err:
        LocalRuntime().launch(inv, tmp_path / "job.log", tmp_path / "work")
    assert str(err.value) == _why(
        cube, "the ENTRYPOINT at Dockerfile:2 runs /app/mlcube.py, which no COPY or ADD line of Dockerfile provides"
    )
    assert "\n" not in str(err.value)
