"""Pure parts of the submission checks: Dockerfile analysis, output validation, tar walk, submission lists."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fedsim.errors import SpecError
from fedsim.submission.dryrun import csv_text, load_submissions
from fedsim.submission.image import unreadable_in_tar
from fedsim.submission.outputs import check_containment, check_files, check_volumes, snapshot
from fedsim.submission.report import CheckStatus, SubmissionReport, failed, passed, skipped
from fedsim.submission.static import check_entrypoint, check_workdir, image_command, parse_dockerfile
from tests.conftest import FIXTURES

APT = "RUN apt-get update && \\\n    apt-get install -y python3\n"


@pytest.mark.parametrize(
    ("dockerfile", "status", "phrase"),
    [
        ('FROM x\nENTRYPOINT ["python3", "/app/mlcube.py"]\n', "passed", "exec form"),
        ('FROM x\nWORKDIR /app\nENTRYPOINT ["python3", "-u", "mlcube.py"]\n', "failed", "'mlcube.py' by a relative"),
        ('FROM x\nENTRYPOINT ["./run.sh"]\n', "failed", "'./run.sh' by a relative path"),
        ("FROM x\nENTRYPOINT python3 /app/mlcube.py\n", "failed", "shell form"),
        ('FROM x\nCMD ["python3", "/app/mlcube.py"]\n', "failed", "no ENTRYPOINT"),
        ('FROM x\nENTRYPOINT ["python3", "-m", "model.cli"]\n', "passed", ""),
        (
            'FROM x AS build\nENTRYPOINT ["python3", "a.py"]\nFROM y\n' + APT + 'ENTRYPOINT ["/usr/bin/run"]\n',
            "passed",
            "",
        ),
    ],
)
def test_entrypoint_rules(dockerfile: str, status: str, phrase: str) -> None:
    check = check_entrypoint(parse_dockerfile(dockerfile))
    assert check.status.value == status, check
    assert phrase in check.cause
    if status == "failed":
        assert check.fix


def test_relative_entrypoint_fix_names_the_absolute_path() -> None:
    check = check_entrypoint(parse_dockerfile('FROM x\nWORKDIR /app\nENTRYPOINT ["python3", "mlcube.py"]\n'))
    assert check.fix == 'use an absolute path: ENTRYPOINT ["python3", "/app/mlcube.py"]'


def test_workdir_reliance_from_scripts(tmp_path: Path) -> None:
    (tmp_path / "model.txt").write_text("w")
    (tmp_path / "mlcube.py").write_text(
        "from pathlib import Path\nopen('model.txt')\nPath(__file__).parent / 'model.txt'\nopen('/abs/x')\n"
    )
    cmd = parse_dockerfile('FROM x\nWORKDIR /app\nCOPY . /app\nENTRYPOINT ["python3", "/app/mlcube.py"]\n')
    check = check_workdir(cmd, tmp_path)
    assert check.status is CheckStatus.FAILED
    assert check.details == ["mlcube.py:2 opens 'model.txt' relative to the working directory"]
    no_workdir = parse_dockerfile('FROM x\nENTRYPOINT ["python3", "/app/mlcube.py"]\n')
    assert check_workdir(no_workdir, tmp_path).status is CheckStatus.PASSED


def test_image_config_shell_form() -> None:
    cmd = image_command({"Entrypoint": ["/bin/sh", "-c", "python3 /app/x.py"], "WorkingDir": "/app"})
    assert cmd.entrypoint_shell and cmd.workdir == "/app"
    assert check_entrypoint(cmd).status is CheckStatus.FAILED


def _tar(members: list[tuple[str, int, int, bool]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, mode, uid, is_dir in members:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid = mode, uid, uid
            info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(b"") if not is_dir else None)
    buf.seek(0)
    return buf


def test_unreadable_in_tar() -> None:
    stream = _tar(
        [
            ("app", 0o755, 0, True),
            ("app/ok.bin", 0o644, 0, False),
            ("app/root.bin", 0o600, 0, False),
            ("app/mine.bin", 0o600, 1000, False),
            ("secret", 0o700, 0, True),
        ]
    )
    assert unreadable_in_tar(stream, 1000, 1000) == ["/app/root.bin", "/secret"]


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))


def test_output_checks(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    for case in ("c1", "c2", "c3", "c4"):
        (data / case).mkdir(parents=True)
        _save(data / case / f"{case}_brain_t1.nii.gz", np.zeros((8, 8, 4), np.float32))
    out.mkdir()
    _save(out / "c1.nii.gz", np.zeros((8, 8, 4), np.uint8))
    _save(out / "c2.nii.gz", np.zeros((4, 8, 4), np.uint8))
    _save(out / "c3.nii.gz", np.full((8, 8, 4), 3, np.uint8))
    (out / "c4.nii.gz").symlink_to(out / "c1.nii.gz")
    (out / "notes.txt").write_text("x")
    files, present = check_files(out, ("c1", "c2", "c3", "c4"))
    assert files.status is CheckStatus.FAILED
    assert "missing c4.nii.gz" in files.cause and "symlinks c4.nii.gz" in files.cause and "notes.txt" in files.cause
    geometry, labels = check_volumes(out, data, present)
    assert geometry.status is CheckStatus.FAILED and "c2.nii.gz: shape (4, 8, 4) != (8, 8, 4)" in geometry.cause
    assert labels.status is CheckStatus.FAILED and "c3.nii.gz: labels [3]" in labels.cause
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "wrote no prediction" in check_files(empty, ("c1",))[0].cause


def test_float_storage_of_integer_labels_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "d" / "c1").mkdir(parents=True)
    _save(tmp_path / "d" / "c1" / "c1_brain_t1.nii.gz", np.zeros((4, 4, 4), np.float32))
    (tmp_path / "o").mkdir()
    _save(tmp_path / "o" / "c1.nii.gz", np.full((4, 4, 4), 2.0, np.float32))
    _, labels = check_volumes(tmp_path / "o", tmp_path / "d", ["c1"])
    assert labels.status is CheckStatus.WARNING


def test_containment(tmp_path: Path) -> None:
    data, sandbox = tmp_path / "data", tmp_path / "sandbox"
    (data / "c1").mkdir(parents=True)
    (data / "c1" / "x.nii.gz").write_bytes(b"1")
    for d in ("predictions", "cwd"):
        (sandbox / d).mkdir(parents=True)
    before = snapshot(data)
    assert check_containment(sandbox, {"predictions", "cwd"}, data, before, False).status is CheckStatus.PASSED
    (sandbox / "cwd" / "tmp.npy").write_bytes(b"x")
    (sandbox / "leak").write_bytes(b"x")
    (data / "c1" / "x.nii.gz").write_bytes(b"22")
    check = check_containment(sandbox, {"predictions", "cwd"}, data, before, False)
    assert check.status is CheckStatus.FAILED
    assert set(check.details) == {"changed input c1/x.nii.gz", "wrote cwd/tmp.npy (working directory)",
                                  "wrote leak beside output_path"}  # fmt: skip


def test_report_verdict_and_json() -> None:
    r = SubmissionReport("m", "path", num_cases=2, duration_s=3.0)
    r.checks = [passed("mlcube"), skipped("image_size", "local"), failed("run", "crashed", "fix it")]
    assert r.verdict == "FAIL" and r.reason == "run: crashed" and r.seconds_per_case == 1.5
    d = json.loads(json.dumps(r.to_dict()))
    assert d["verdict"] == "FAIL" and d["timings"]["seconds_per_case"] == 1.5
    assert [c["status"] for c in d["checks"]] == ["passed", "skipped", "failed"]
    r.error = "no engine"
    assert r.verdict == "ERROR"
    assert csv_text([r]).splitlines()[1].startswith("m,ERROR,no engine,1.500,3.000")


def test_load_submissions(tmp_path: Path) -> None:
    folder = load_submissions(FIXTURES / "submissions")
    assert "baseline" in [t.name for t in folder] and all(t.cube_dir for t in folder)
    listed = tmp_path / "subs.yaml"
    listed.write_text(
        f"- {FIXTURES / 'submissions' / 'crashes'}\n- {{name: img, image: 'repo/model:1.0'}}\n- repo/other:2\n"
    )
    targets = load_submissions(listed)
    assert [(t.name, t.image) for t in targets] == [
        ("crashes", None),
        ("img", "repo/model:1.0"),
        ("other_2", "repo/other:2"),
    ]
    listed.write_text("- ./missing-cube\n")
    with pytest.raises(SpecError, match="no such MLCube folder"):
        load_submissions(listed)
    listed.write_text(f"- {FIXTURES / 'submissions' / 'crashes'}\n- {FIXTURES / 'submissions' / 'crashes'}\n")
    with pytest.raises(SpecError, match="unique"):
        load_submissions(listed)
