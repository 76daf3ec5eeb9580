"""The one Dockerfile reader's image layout, its mounts in the local sandbox, and the hints for what an image
has that the local runtime cannot (issue 22)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fedsim.cube import Isolation, bind, load_cube
from fedsim.cube.dockerfile import copy_layout, parse_dockerfile, pip_requirements, run_paths
from fedsim.runtimes.imagefs import ImageMount, image_mounts
from fedsim.runtimes.layouthint import layout_hint
from fedsim.runtimes.sandbox import HostLayout, SandboxPolicy, bwrap_argv
from fedsim.submission.static import parse_dockerfile as static_parse
from tests.conftest import FIXTURES

TEMPLATE = FIXTURES / "fets_template"


def _context(tmp_path: Path, files: dict[str, str]) -> Path:
    ctx = tmp_path / "ctx"
    for rel, text in files.items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(text)
    return ctx


def _layout(ctx: Path, dockerfile: str) -> list[tuple[str, str]]:
    layout = copy_layout(parse_dockerfile(dockerfile), ctx)
    return [(e.dest, str(e.host.relative_to(ctx))) for e in layout.entries]


def test_the_templates_copies_land_where_its_image_has_them() -> None:
    ctx = TEMPLATE / "project"
    stage = parse_dockerfile((ctx / "Dockerfile").read_text())
    layout = copy_layout(stage, ctx)
    assert [(e.dest, e.host) for e in layout.entries] == [
        ("/mlcube_project/requirements.txt", ctx / "requirements.txt"),  # WORKDIR-relative ./requirements.txt
        ("/mlcube_project", ctx),  # COPY ./ /mlcube_project: the context by content
    ]
    assert layout.provider("/mlcube_project/parameters.yaml") == ctx / "parameters.yaml"
    assert layout.provider("/mlcube_project/model_ckpts/thresholds.yaml") == ctx / "model_ckpts" / "thresholds.yaml"
    assert layout.provider("/mlcube_project/nothing") is None
    assert stage.base_image == "nvcr.io/nvidia/pytorch:20.08-py3"
    assert pip_requirements(stage).requirements == ("/mlcube_project/requirements.txt",)


def test_sources_globs_and_destinations_resolve_as_docker_copies(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"src/a.py": "", "src/pkg/b.py": "", "w.pt": "", "x.py": "", "y.py": "", "c.cfg": ""})
    dockerfile = (
        "ARG APP=/app\nFROM python:3.11 AS base\nARG APP\nENV OPT=/opt/model\nWORKDIR $APP\n"
        "COPY src/ /app/\nCOPY w.pt weights/\nCOPY *.py lib/\nCOPY c.cfg ${OPT}/conf.cfg\n"
        "COPY --from=base /x /y\nADD https://example.org/m.pt /m.pt\n"
    )
    assert _layout(ctx, dockerfile) == [
        ("/app", "src"),
        ("/app/weights/w.pt", "w.pt"),
        ("/app/lib/x.py", "x.py"),
        ("/app/lib/y.py", "y.py"),
        ("/opt/model/conf.cfg", "c.cfg"),
    ]
    skipped = copy_layout(parse_dockerfile(dockerfile), ctx).skipped
    assert [(s.line, s.why) for s in skipped] == [(10, "copies from build stage base"), (11, "downloads")]


def test_later_copies_win_and_directories_copied_onto_each_other_merge(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"a/one.txt": "a", "a/both.txt": "a", "b/both.txt": "b", "b/two.txt": "b", "f": ""})
    layout = copy_layout(parse_dockerfile("FROM x\nCOPY a /app\nCOPY b /app\nCOPY f /app/sub/f\n"), ctx)
    mounts = image_mounts(layout)
    assert mounts == (
        ImageMount("/app", None),
        ImageMount("/app/both.txt", str(ctx / "b" / "both.txt")),  # the later copy wins
        ImageMount("/app/one.txt", str(ctx / "a" / "one.txt")),
        ImageMount("/app/sub", None),
        ImageMount("/app/sub/f", str(ctx / "f")),
        ImageMount("/app/two.txt", str(ctx / "b" / "two.txt")),
    )
    # nothing overlaps: one bind for the whole directory
    assert image_mounts(copy_layout(parse_dockerfile("FROM x\nCOPY a /app\n"), ctx)) == (
        ImageMount("/app", str(ctx / "a")),
    )


def test_system_paths_data_and_symlinks_out_of_the_context_are_never_mounted(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"code/m.py": "", "code/workspace/labels/x_seg.nii.gz": "", "tool": ""})
    (ctx / "code" / "escape").symlink_to(tmp_path)
    layout = copy_layout(parse_dockerfile("FROM x\nCOPY code /app\nCOPY tool /usr/local/bin/tool\nCOPY . /\n"), ctx)
    mounts = image_mounts(layout, avoid=[str(ctx / "code" / "workspace" / "labels")])
    dests = {m.dest: m.host for m in mounts}
    assert "/usr/local/bin/tool" not in dests  # the host's /usr stays the host's
    assert dests["/app/m.py"] == str(ctx / "code" / "m.py")
    assert "/app/workspace/labels" not in dests and "/app" not in {d for d, h in dests.items() if h}
    assert dests["/app/workspace"] is None  # split around the avoided directory
    assert dests["/tool"] == str(ctx / "tool")  # COPY . / lays the context out at the root, entry by entry
    assert "/app/escape" not in dests  # a symlink as a mount source would be followed on the host


def test_the_sandbox_binds_the_layout_read_only_and_never_inside_a_host_bind(tmp_path: Path) -> None:
    cube_dir = tmp_path / "cube"
    shutil.copytree(TEMPLATE, cube_dir)
    out = tmp_path / "out"
    out.mkdir()
    cube = load_cube(cube_dir / "mlcube")
    inv = bind(cube, "infer", {"data_path": tmp_path, "output_path": out}, isolation=Isolation(untrusted=True))
    ctx = cube.build_context_dir
    layout = copy_layout(parse_dockerfile((ctx / "Dockerfile").read_text()), ctx)
    mounts = (*image_mounts(layout), ImageMount(str(ctx / "inside"), str(ctx / "mlcube.py")))
    policy = SandboxPolicy(uid=1000, gid=1000, layout=HostLayout(runtime_paths=("/py",)), image=mounts)
    argv = bwrap_argv(inv, ["/py/bin/python", str(ctx / "mlcube.py")], policy)
    flags = argv[: argv.index("--")]
    i = flags.index("/mlcube_project")
    assert flags[i - 2 : i + 1] == ["--ro-bind", str(ctx), "/mlcube_project"]
    assert str(ctx / "inside") not in flags  # a mount point inside a host bind would be made on the host
    assert flags.index("/mlcube_project") < flags.index("--remount-ro")


def test_the_static_checks_read_the_one_reader_with_stage_inheritance() -> None:
    cmd = static_parse('FROM x AS base\nWORKDIR /app\nENTRYPOINT ["python3", "/app/m.py"]\nFROM base\nCMD ["-v"]\n')
    assert cmd.entrypoint == ["python3", "/app/m.py"] and cmd.cmd == ["-v"] and cmd.workdir == "/app"
    assert static_parse("ENTRYPOINT x\n").entrypoint is None  # no FROM: nothing docker would build


def test_pip_install_lines_name_files_and_packages() -> None:
    stage = parse_dockerfile(
        "FROM x\nWORKDIR /w\nARG TORCH=2.1\n"
        "RUN pip install --no-cache-dir -r req/base.txt && python3 -m pip install -e . torch==${TORCH} 'monai>=1'\n"
        "RUN apt-get install -y python3-pip && pip3 install --index-url https://mirror/simple nibabel\n"
    )
    found = pip_requirements(stage)
    assert found.requirements == ("/w/req/base.txt",)
    assert found.packages == ("torch==2.1", "monai>=1", "nibabel")


def test_a_path_made_by_run_is_named_when_the_cube_fails_opening_it(tmp_path: Path) -> None:
    cube_dir = tmp_path / "cube"
    shutil.copytree(TEMPLATE, cube_dir)
    dockerfile = cube_dir / "project" / "Dockerfile"
    line = len(dockerfile.read_text().splitlines()) + 1
    dockerfile.write_text(
        dockerfile.read_text() + "RUN mkdir -p /opt/weights && wget -O /opt/weights/model.pt https://x/m.pt\n"
    )
    cube = load_cube(cube_dir / "mlcube")
    stage = parse_dockerfile(dockerfile.read_text())
    assert run_paths(stage, copy_layout(stage, cube.build_context_dir)) == {
        "/opt/weights": line,
        "/opt/weights/model.pt": line,
    }
    inv = bind(cube, "infer", {"data_path": tmp_path, "output_path": tmp_path}, isolation=Isolation(untrusted=True))
    log = "Traceback ...\nFileNotFoundError: [Errno 2] No such file or directory: '/opt/weights/model.pt'\n"
    hint = layout_hint(inv, log, python="/py", sandboxed=True)
    assert hint is not None and "\n" not in hint
    made = f"/opt/weights/model.pt exists only in the built image: the RUN at project/Dockerfile:{line} makes"
    assert hint.startswith(made)
    # unsandboxed, a copied path is missing because the plain runtime cannot bind paths
    log = "FileNotFoundError: [Errno 2] No such file or directory:\n'/mlcube_project/parameters.yaml'\n"
    plain = layout_hint(inv, log, python="/py", sandboxed=False)
    assert plain is not None and "the plain local runtime cannot bind paths; fix: install bubblewrap" in plain
    assert layout_hint(inv, log, python="/py", sandboxed=True) is None


@pytest.mark.parametrize("text", ["FROM x\n", "FROM x\nCOPY\nCOPY onlyone\nRUN\n"])
def test_degenerate_dockerfiles_lay_out_nothing(tmp_path: Path, text: str) -> None:
    assert copy_layout(parse_dockerfile(text), tmp_path).entries == ()
