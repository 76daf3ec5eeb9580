"""Run a cube's code directly on the host, without containers.

Default command: ``<python> <build_context>/mlcube.py TASK --param=/host/path ...`` — the layout every FeTS
cube uses — or the cube's explicit ``local: {entrypoint: ...}``. ``python3`` means the interpreter running
fedsim, so the reference cubes find the ``fedsim`` package they import. No isolation: this is the
rehearsal runtime for machines without a container engine.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from fedsim.cube import Invocation
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes.base import Capabilities, ProcessHandle, Runtime
from fedsim.runtimes.process import HostProcess


class LocalRuntime(Runtime):
    name = "local"
    capabilities = Capabilities(supports_gpus=True)

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def argv(self, inv: Invocation) -> list[str]:
        cube = inv.cube
        entry = cube.local.entrypoint if cube.local else None
        if entry is None:
            script = cube.build_context_dir / "mlcube.py"
            head = [self.python, str(script)]
        else:
            parts = shlex.split(entry) if isinstance(entry, str) else list(entry)
            head = [self.python if p in {"python", "python3"} else p for p in parts]
        return [*head, inv.task, *inv.host_args()]

    def launch(self, inv: Invocation, log_path: Path, workdir: Path) -> ProcessHandle:
        argv = self.argv(inv)
        if inv.cube.local is None or inv.cube.local.entrypoint is None:
            script = Path(argv[1])
            if not script.is_file():
                raise RuntimeUnavailable(
                    f"cube {inv.cube.name!r} cannot run locally: {script} not found "
                    "(add 'local: {entrypoint: ...}' to its mlcube.yaml, or use the docker runtime)"
                )
        env = dict(os.environ)
        env.update(inv.env)
        env["PYTHONUNBUFFERED"] = "1"
        if inv.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(inv.gpu_ids)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            return HostProcess(argv, log_path=log_path, cwd=workdir, env=env)
        except OSError as exc:
            raise RuntimeUnavailable(f"cannot start {argv[0]}: {exc.strerror}") from exc
