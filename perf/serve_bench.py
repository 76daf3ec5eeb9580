"""``fedsim serve`` at organiser scale: a synthetic run of 100 sites × 10 models (2,300 jobs in the ledger, 1,500
done, 20 running) served by ``fedsim serve`` in its own process.

Prints: the run page's render time (median of 5 GETs), the latency from a ledger commit to the delta event on
an open stream (median and max of 10 state changes), and the server's CPU (% of one core) and RSS while 20
clients stream (10 following the run, 10 following logs that grow by 20 lines a second each).

    python perf/serve_bench.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from fedsim.store.ledger import Ledger

SITES, MODELS, DONE, RUNNING = 100, 10, 1500, 20


def record(site: str, name: str) -> dict[str, object]:
    return {
        "site": site,
        "name": name,
        "kind": name.partition(".")[0],
        "status": "succeeded",
        "duration_s": 3.0,
        "peak_rss_bytes": 200 * 1024**2,
        "limits": {"ram_bytes": 8 * 1024**3, "timeout_s": 600.0},
    }


def synthetic_run(runs: Path) -> tuple[Ledger, list[str], list[Path]]:
    root = runs / "big"
    (root / "config" / "sites").mkdir(parents=True)
    models = [f"model{m:02d}" for m in range(MODELS)]
    (root / "config" / "benchmark.yaml").write_text(
        "name: big\nmodels:\n"
        + "".join(f"- name: {m}\n  cube: /x\n" for m in models)
        + "limits:\n  timeout_per_case_s: 180\n  task_timeout_s: 3600\n"
    )
    sites = [f"site{s:03d}" for s in range(SITES)]
    for s in sites:
        (root / "config" / "sites" / f"{s}.yaml").write_text(f"name: {s}\nhardware:\n  ram_gb: 40\n")
        (root / "sites" / s / "logs").mkdir(parents=True)
    keys = [(s, n) for s in sites for n in ("prepare", "sanity_check", "statistics")]
    keys += [(s, f"{k}.{m}") for m in models for s in sites for k in ("infer", "evaluate")]
    ledger = Ledger(root / Ledger.FILE)
    ledger.begin_run("big", "big")
    ledger.begin_segment(time.time(), resumed=False)
    for s, n in keys[:DONE]:
        ledger.job_started(f"{s}/{n}", s, n)
        ledger.job_finished(f"{s}/{n}", record(s, n))
    running, logs = [], []
    for s, n in keys[DONE : DONE + RUNNING]:
        ledger.job_started(f"{s}/{n}", s, n)
        running.append(f"{s}/{n}")
        log = root / "sites" / s / "logs" / f"{n}.log"
        log.write_text("starting\n")
        logs.append(log)
    # the run's live process: its lock names this one
    import os
    import socket

    (root / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    return ledger, running, logs


def stream_until(url: str, key: str, got: threading.Event, ready: threading.Event) -> None:
    event = ""
    with httpx.Client(timeout=30) as http, http.stream("GET", url) as resp:
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                ready.set()
                if event == "delta" and f'"{key}":{{"status":"succeeded"' in line:
                    got.set()
                    return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        t0 = time.perf_counter()
        ledger, running, logs = synthetic_run(runs)
        print(
            f"synthetic ledger: {SITES} sites × {MODELS} models, {DONE} done, {RUNNING} running "
            f"({time.perf_counter() - t0:.1f}s to write)"
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "fedsim.cli", "serve", "--runs-dir", str(runs), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            match = re.search(r"(http://127\.0\.0\.1:\d+/)", server.stdout.readline())
            assert match, "no URL"
            base = match.group(1)
            proc = psutil.Process(server.pid)
            with httpx.Client(base_url=base, timeout=30) as http:
                times = []
                for _ in range(5):
                    t = time.perf_counter()
                    page = http.get("/runs/big")
                    times.append(time.perf_counter() - t)
                    assert page.status_code == 200 and page.text.count('class="job ') > 5000
                print(
                    f"run page ({len(page.content) // 1024} KiB, {SITES * (3 + 2 * MODELS)} jobs): "
                    f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
                )

            lat = []
            for key in running[:10]:
                got, ready = threading.Event(), threading.Event()
                th = threading.Thread(target=stream_until, args=(base + "runs/big/events", key, got, ready))
                th.start()
                ready.wait(30)
                time.sleep(0.3)
                site, _, name = key.partition("/")
                t = time.perf_counter()
                ledger.job_finished(key, record(site, name))
                got.wait(10)
                lat.append(time.perf_counter() - t)
                th.join(10)
            print(
                f"state change → open page: median {statistics.median(lat) * 1000:.0f} ms, "
                f"max {max(lat) * 1000:.0f} ms (10 changes)"
            )

            # 20 streaming clients for --seconds: 10 on the run, 10 on growing logs
            stop = threading.Event()
            rest = running[10:]

            def follow(url: str) -> None:
                try:
                    with httpx.Client(timeout=None) as http, http.stream("GET", url) as resp:
                        for _ in resp.iter_lines():
                            if stop.is_set():
                                return
                except httpx.HTTPError:  # the server stopped first
                    return

            def grow() -> None:
                while not stop.is_set():
                    for log in logs[10:]:
                        with log.open("a") as fh:
                            fh.write("epoch 1 step 42 loss 0.1234 " * 3 + "\n")
                    time.sleep(0.05)

            urls = [base + "runs/big/events"] * 10
            urls += [base + f"runs/big/jobs/{k}/log/stream" for k in rest]
            threads = [threading.Thread(target=follow, args=(u,), daemon=True) for u in urls]
            threads.append(threading.Thread(target=grow, daemon=True))
            for th in threads:
                th.start()
            time.sleep(2)
            cpu0, t = proc.cpu_times(), time.perf_counter()
            time.sleep(args.seconds)
            cpu1, wall = proc.cpu_times(), time.perf_counter() - t
            rss = proc.memory_info().rss
            stop.set()
            used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
            print(
                f"20 streaming clients ({len(urls)} streams) for {wall:.0f}s: server CPU "
                f"{100 * used / wall:.1f}% of a core, RSS {rss / 1024**2:.0f} MiB"
            )
        finally:
            server.terminate()
            server.wait(10)
            ledger.close()


if __name__ == "__main__":
    main()
