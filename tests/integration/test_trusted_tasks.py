"""Trusted cubes run as ``mlcube run`` runs them: one user for all tasks, MLCube's read-write mounts.

The hello/bye pair is laid out like mlcommons/mlcube_examples hello_world: ``bye`` appends to the file
``hello`` wrote. It failed with PermissionError while fedsim ran every cube as nobody and handed outputs back
to root between tasks.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from fedsim.cube import bind, load_cube
from fedsim.guard import DeadlineGuard, supervise
from fedsim.runtimes.select import RuntimePool
from tests.conftest import FIXTURES, containers_of_run

RUN = f"fedsim-test-trusted-{secrets.token_hex(3)}"


def _run_task(runtime: Any, cube: Any, task: str, work: Path) -> tuple[int | None, str]:
    inv = bind(cube, task, labels={"fedsim.run": RUN})
    inv.create_directories()
    log = work / f"{task}.log"
    handle = runtime.launch(inv, log, work / task)
    try:
        outcome = supervise(handle, [DeadlineGuard(60)])
    finally:
        handle.cleanup()
    return outcome.exit_code, log.read_text()


@pytest.mark.docker
def test_a_second_task_changes_what_the_first_wrote(tmp_path: Path) -> None:
    cube_dir = tmp_path / "hello_bye"
    shutil.copytree(FIXTURES / "cubes" / "hello_bye", cube_dir)
    cube = load_cube(cube_dir)
    pool = RuntimePool()
    runtime: Any = pool.get("docker")
    runtime.images.build(cube, None)
    try:
        for task in ("hello", "bye"):
            code, log = _run_task(runtime, cube, task, tmp_path / "work")
            assert code == 0, log
    finally:
        runtime.client.close()
    assert (cube_dir / "workspace" / "chats" / "chat.txt").read_text() == "Hi, alice!\nBye, alice!\n"
    assert containers_of_run(RUN) == []
