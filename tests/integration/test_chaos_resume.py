"""Chaos: SIGKILL the orchestrator at 20 seeded random moments, resume each time; nothing is lost or redone.

The final results and ranking must be byte-identical to an uninterrupted run, and the ledger must show that
no job that had finished ever started again. Job processes orphaned by each kill are found and killed by
the resume (they carry the run's job token).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from fedsim.runtimes.orphans import orphan_processes
from fedsim.store.ledger import Ledger
from tests.conftest import CUBES, FIXTURES, ROOT, small_benchmark

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KILLS = 20
SEED = 20261127


def _fedsim(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fedsim.cli", "run", "benchmark", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _outputs(run: Path) -> dict[str, bytes]:
    files = sorted([*(run / "results").glob("*.yaml"), *(run / "ranking").glob("*.csv")])
    return {f.relative_to(run).as_posix(): f.read_bytes() for f in files}


def test_sigkill_and_resume_twenty_times(tmp_path: Path) -> None:
    bench = small_benchmark(
        tmp_path, models={"baseline": CUBES / "baseline", "zeros": FIXTURES / "cubes" / "zeros_model"}, cases=2
    )
    runs = tmp_path / "runs"
    env = {**os.environ, "FEDSIM_CACHE_DIR": os.environ["FEDSIM_CACHE_DIR"]}
    ref = _fedsim([str(bench), "--runs-dir", str(runs), "--run-id", "ref"], env)
    assert ref.wait(timeout=300) == 0
    reference = _outputs(runs / "ref")
    assert any(k.startswith("ranking/") for k in reference) and len(reference) >= 5

    rng = random.Random(SEED)
    run = runs / "chaos"
    kills = 0
    for _ in range(KILLS):
        args = ["--runs-dir", str(runs)]
        args += ["--resume", "chaos"] if (run / Ledger.FILE).exists() else [str(bench), "--run-id", "chaos"]
        proc = _fedsim(args, env)
        time.sleep(rng.uniform(0.3, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    final = _fedsim(["--runs-dir", str(runs), "--resume", "chaos"], env)
    assert final.wait(timeout=300) == 0
    assert kills >= KILLS // 2, f"only {kills} of the {KILLS} moments hit a running orchestrator"

    assert _outputs(run) == reference  # byte-identical results and ranking

    ledger = Ledger(run / Ledger.FILE)
    events = ledger.events()
    finished = Counter(k for k, _a, e in events if e == "finished")
    assert set(finished.values()) == {1}, "a finished job finished twice"
    seen_finish: set[str] = set()
    for key, _attempt, event in events:
        assert not (event == "started" and key in seen_finish), f"{key} was rerun after it had finished"
        if event == "finished":
            seen_finish.add(key)
    restarted = [k for k, n in Counter(k for k, _a, e in events if e == "started").items() if n > 1]
    assert len(finished) == 2 * 7  # two sites x (3 data-prep + 2 infer + 2 evaluate)
    assert ledger.run_state("chaos") == "completed"
    ledger.close()
    assert not orphan_processes("chaos")
    print(f"{kills} kills, {len(restarted)} interrupted jobs restarted")
