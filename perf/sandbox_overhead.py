"""What the local runtime's bubblewrap sandbox costs per job, next to the same job unsandboxed.

Run: ``python perf/sandbox_overhead.py [--jobs 20] [--max-extra-ms 30]``. Both variants run in this one process,
interleaved (so drift hits both alike), after two warm-up jobs each: launch → exit → cleanup wall time of a
no-op cube (``python3 mlcube.py infer``, which exits at once) through ``LocalRuntime`` and through
``SandboxedLocalRuntime`` with ``supervise`` and a deadline, as ``execute_job`` runs them. Prints the medians,
their difference and ratio; exits 1 when the median difference is above ``--max-extra-ms`` (the issue's budget:
30 ms), 2 when the sandbox cannot run here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NOOP_MLCUBE = """\
name: noop
docker: {image: fedsim-perf/noop:0.1, build_context: project}
tasks:
  infer:
    parameters:
      inputs: {data_path: {type: directory, default: data/}}
      outputs: {output_path: {type: directory, default: predictions/}}
"""


def _stats(samples: list[float]) -> str:
    s = sorted(samples)
    p90 = s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]
    return f"median {statistics.median(s) * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms  min {s[0] * 1000:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="no-op jobs per variant (default 20)")
    parser.add_argument("--max-extra-ms", type=float, default=30.0, help="budget for the median difference")
    opts = parser.parse_args()

    from fedsim.cube import Isolation, bind, load_cube
    from fedsim.guard import DeadlineGuard, RamGuard, supervise
    from fedsim.runtimes.local import LocalRuntime, SandboxedLocalRuntime
    from fedsim.runtimes.sandbox import probe

    found = probe()
    if not found.ok:
        print(f"the sandbox cannot run here: {found.reason}")
        return 2
    with tempfile.TemporaryDirectory(prefix="fedsim-perf-sandbox-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "noop" / "project").mkdir(parents=True)
        (tmp / "noop" / "mlcube.yaml").write_text(NOOP_MLCUBE)
        (tmp / "noop" / "project" / "mlcube.py").write_text("import sys\nsys.exit(0)\n")
        cube = load_cube(tmp / "noop")
        (tmp / "data").mkdir()
        plain, boxed = LocalRuntime(), SandboxedLocalRuntime()

        def one(runtime: Any, tag: str, i: int) -> float:
            inv = bind(
                cube,
                "infer",
                {"data_path": tmp / "data", "output_path": tmp / "out" / f"{tag}-{i}"},
                isolation=Isolation(untrusted=True, ram_bytes=2 * 1024**3),
                pinned={"data_path", "output_path"},
            )
            inv.create_directories()
            start = time.perf_counter()
            handle = runtime.launch(inv, tmp / "logs" / f"{tag}-{i}.log", tmp / "work")
            try:
                outcome = supervise(handle, [DeadlineGuard(60), RamGuard(None)])
            finally:
                handle.cleanup()
            elapsed = time.perf_counter() - start
            if outcome.exit_code != 0:
                log = (tmp / "logs" / f"{tag}-{i}.log").read_text()[-1500:]
                raise SystemExit(f"the no-op job failed ({tag}): {outcome}\n{log}")
            return elapsed

        for w in range(2):  # page cache, imports, the probe
            one(plain, "warm-plain", w)
            one(boxed, "warm-sandbox", w)
        samples: dict[str, list[float]] = {"plain": [], "sandbox": []}
        for i in range(opts.jobs):
            samples["plain"].append(one(plain, "plain", i))
            samples["sandbox"].append(one(boxed, "sandbox", i))

    plain_m, boxed_m = statistics.median(samples["plain"]), statistics.median(samples["sandbox"])
    extra_ms = (boxed_m - plain_m) * 1000
    print(f"no-op job, launch + supervise + cleanup, {opts.jobs} jobs each, interleaved")
    print(f"  local, unsandboxed   {_stats(samples['plain'])}")
    print(f"  local, bwrap sandbox {_stats(samples['sandbox'])}")
    print(f"  difference of the medians {extra_ms:+.1f} ms, ratio {boxed_m / plain_m:.2f}x")
    ok = extra_ms <= opts.max_extra_ms
    print(f"  {'OK' if ok else 'OVER BUDGET'}: budget {opts.max_extra_ms:g} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
