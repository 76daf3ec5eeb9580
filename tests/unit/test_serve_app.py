"""``fedsim serve`` pages and streams against a run directory written by fedsim's own ledger (no containers):
the runs page, a live run's grid, counts and running jobs, a finished run's ranking, a job's record and log,
a dry run's verdicts, and the live stream of a job's state change."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from fedsim.serve.app import ServeConfig, create_app
from fedsim.serve.during import DEFAULT_PORT, expand_serve_flag, start_background
from fedsim.serve.live import LiveBoard
from fedsim.store.ledger import Ledger
from fedsim.store.ledger_view import ledger_signature, read_ledger

SITES, MODELS = ("s0", "s1"), ("alpha", "beta")


def record(site: str, name: str, status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    kind, _, model = name.partition(".")
    return {
        "site": site,
        "name": name,
        "kind": kind,
        "model": model or None,
        "status": status,
        "reason": extra.pop("reason", ""),
        "exit_code": 0 if status == "succeeded" else 1,
        "duration_s": 2.5,
        "num_cases": 2,
        "peak_rss_bytes": 300 * 1024**2,
        "limits": {"ram_bytes": 8 * 1024**3, "timeout_s": 120.0},
        **extra,
    }


def make_run(runs: Path, run_id: str = "r1") -> tuple[Path, Ledger]:
    """A run directory as a live fedsim leaves it: config, a ledger with some jobs done and one running."""
    root = runs / run_id
    (root / "config" / "sites").mkdir(parents=True)
    models = "".join(f"- name: {m}\n  cube: /nowhere/{m}\n" for m in MODELS)
    (root / "config" / "benchmark.yaml").write_text(
        f"name: bench\nmodels:\n{models}limits:\n  timeout_per_case_s: 60\n  task_timeout_s: 600\n"
    )
    for s in SITES:
        (root / "config" / "sites" / f"{s}.yaml").write_text(f"name: {s}\nhardware:\n  ram_gb: 8\n")
        (root / "sites" / s / "logs").mkdir(parents=True)
        for case in ("c1", "c2"):
            (root / "sites" / s / "prepared" / case).mkdir(parents=True)
    ledger = Ledger(root / Ledger.FILE)
    ledger.begin_run(run_id, "bench")
    ledger.begin_segment(time.time(), resumed=False)
    for s in SITES:
        for name in ("prepare", "sanity_check", "statistics"):
            ledger.job_started(f"{s}/{name}", s, name)
            ledger.job_finished(f"{s}/{name}", record(s, name))
    ledger.job_started("s0/infer.alpha", "s0", "infer.alpha")
    (root / "sites" / "s0" / "logs" / "infer.alpha.log").write_text("line 1\n<script>alert(1)</script>\n")
    return root, ledger


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def live(runs: Path) -> Iterator[tuple[Path, Ledger]]:
    root, ledger = make_run(runs)
    # a lock file naming this live process: history reports the run as running
    import os
    import socket

    (root / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    try:
        yield root, ledger
    finally:
        ledger.close()


def client(runs: Path, **kw: Any) -> TestClient:
    return TestClient(create_app(ServeConfig(runs, interval=0.05, **kw)), base_url="http://127.0.0.1")


def test_runs_page_lists_the_run(live: tuple[Path, Ledger], runs: Path) -> None:
    with client(runs) as c:
        page = c.get("/")
    assert page.status_code == 200
    assert 'href="/runs/r1"' in page.text and ">running<" in page.text


def test_run_page_shows_grid_progress_and_running_jobs(live: tuple[Path, Ledger], runs: Path) -> None:
    with client(runs) as c:
        page = c.get("/runs/r1")
    assert page.status_code == 200
    text = page.text
    # 2 sites × (3 data prep + 2 models × 2) = 14 planned jobs; 6 done, 1 running
    assert "<b>6/14</b> jobs finished · 1 running" in text
    assert 'class="job running" data-key="s0/infer.alpha"' in text
    assert text.count('class="job waiting" data-key') == 7  # s0: evaluate.alpha, beta ×2; s1: alpha ×2, beta ×2
    # the running job's limit: 2 prepared cases × 60 s per case
    assert "s0/infer.alpha</a>" in text and ">2m00s<" in text


def test_job_page_and_log_are_text(live: tuple[Path, Ledger], runs: Path) -> None:
    with client(runs) as c:
        page = c.get("/runs/r1/jobs/s0/infer.alpha")
        log = c.get("/runs/r1/jobs/s0/infer.alpha/log")
    assert page.status_code == 200 and 'data-log="/runs/r1/jobs/s0/infer.alpha/log/stream"' in page.text
    assert log.headers["content-type"] == "text/plain; charset=utf-8"
    assert log.headers["x-content-type-options"] == "nosniff"
    assert log.text == "line 1\n<script>alert(1)</script>\n"


def test_log_stream_sends_what_is_appended_until_the_job_ends(live: tuple[Path, Ledger], runs: Path) -> None:
    root, ledger = live
    log = root / "sites" / "s0" / "logs" / "infer.alpha.log"

    def later() -> None:
        time.sleep(0.4)
        with log.open("a") as fh:
            fh.write("line 3\n")
        time.sleep(0.4)
        ledger.job_finished("s0/infer.alpha", record("s0", "infer.alpha"))

    threading.Thread(target=later, daemon=True).start()
    events: list[tuple[str, Any]] = []
    with client(runs) as c, c.stream("GET", "/runs/r1/jobs/s0/infer.alpha/log/stream") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
                if event == "end":
                    break
    text = "".join(d for e, d in events if e == "log")
    assert text == "line 1\n<script>alert(1)</script>\nline 3\n"
    assert events[-1] == ("end", {"reason": "job done"})


def _next_event(lines: Iterator[str]) -> tuple[str, Any]:
    event = ""
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            return event, json.loads(line[6:])
    raise AssertionError("the stream ended")


def test_state_change_reaches_an_open_stream(live: tuple[Path, Ledger], runs: Path) -> None:
    _root, ledger = live
    with client(runs) as c, c.stream("GET", "/runs/r1/events") as resp:
        lines = resp.iter_lines()
        kind, full = _next_event(lines)
        assert kind == "state" and full["cells"]["s0/infer.alpha"]["status"] == "running"
        assert "6/14" in full["fragments"]["head"]
        changed = time.monotonic()
        ledger.job_finished("s0/infer.alpha", record("s0", "infer.alpha", "timeout", reason="wall clock 120 s"))
        kind, delta = _next_event(lines)
        latency = time.monotonic() - changed
    assert kind == "delta"
    assert delta["cells"] == {
        "s0/infer.alpha": {
            "status": "timeout",
            "css": "failed",
            "title": "s0/infer.alpha: timeout in 2s — wall clock 120 s",
        }
    }
    assert "7/14" in delta["fragments"]["head"] and "wall clock 120 s" in delta["fragments"]["failures"]
    assert latency < 1.0


def test_one_poller_serves_every_client(live: tuple[Path, Ledger], runs: Path) -> None:
    """Through a real uvicorn in a background thread, as ``--serve`` runs it."""
    import httpx2 as httpx

    served = start_background(runs, 0)
    try:
        site = served.server.config.app.state.site
        # no poll falls between the two subscriptions (under load 0.25 s can pass): only a shared state explains
        # one read for two clients
        site.config.interval = 60.0
        with (
            httpx.Client(base_url=served.url, timeout=10) as http,
            http.stream("GET", "/runs/r1/events") as a,
            http.stream("GET", "/runs/r1/events") as b,
        ):
            # the line iterators stay referenced: a dropped one closes its stream (and the server unsubscribes it)
            lines_a, lines_b = a.iter_lines(), b.iter_lines()
            assert _next_event(lines_a)[0] == "state"
            assert _next_event(lines_b)[0] == "state"
            pollers = site.hub.pollers
            assert list(pollers) == ["run:r1"]
            assert len(pollers["run:r1"].subscribers) == 2
            assert pollers["run:r1"].reads == 1  # the second client got the first one's state
    finally:
        served.stop()
    assert not served.thread.is_alive()


def test_finished_run_shows_ranking_and_exports(runs: Path) -> None:
    root, ledger = make_run(runs, "done1")
    for s in SITES:
        for m in MODELS:
            for k in ("infer", "evaluate"):
                ledger.job_started(f"{s}/{k}.{m}", s, f"{k}.{m}")
                ledger.job_finished(f"{s}/{k}.{m}", record(s, f"{k}.{m}"))
    ledger.set_run_state("done1", "completed")
    ledger.close()
    (root / "summary.json").write_text(json.dumps({"run_id": "done1", "benchmark": "bench", "jobs": []}))
    (root / "results").mkdir()
    (root / "results" / "s0.yaml").write_text("c1:\n  alpha: {Dice_ET: 0.9}\n  beta: {Dice_ET: 0.5}\n")
    (root / "ranking").mkdir()
    (root / "ranking" / "final_ranks_rankThenMean.csv").write_text(
        "algorithm,final_score,final_rank,score_s0\nalpha,1.0,1,1.0\nbeta,2.0,2,2.0\n"
    )
    (root / "report.html").write_text("<html><body>report</body></html>")
    with client(runs) as c:
        page = c.get("/runs/done1")
        report = c.get("/runs/done1/files/report.html")
        csv = c.get("/runs/done1/files/ranking/final_ranks_rankThenMean.csv")
    assert 'id="ranking"' in page.text and "<td>alpha</td>" in page.text
    assert 'href="/runs/done1/files/report.html"' in page.text
    assert report.status_code == 200 and "script-src" not in report.headers["content-security-policy"]
    assert csv.status_code == 200 and csv.text.startswith("algorithm,")


def test_dry_run_page_shows_verdicts_and_fixes(runs: Path) -> None:
    (runs / "dry").mkdir(parents=True)
    sub = {
        "submission": "crashes",
        "verdict": "FAIL",
        "reason": "runs: exit code 1",
        "checks": [{"name": "runs", "status": "failed", "cause": "exit code 1", "fix": "read the log", "details": []}],
        "timings": {"seconds_per_case": 3.0},
        "peaks": {"ram_bytes": 1024**3},
    }
    (runs / "dry" / "dry_run.json").write_text(json.dumps({"counts": {"FAIL": 1}, "submissions": [sub]}))
    (runs / "one-check.json").write_text(json.dumps({**sub, "submission": "single", "verdict": "PASS", "checks": []}))
    with client(runs) as c:
        listing = c.get("/")
        dry = c.get("/dry-runs/dry")
        check = c.get("/dry-runs/one-check.json")
    assert 'href="/dry-runs/dry"' in listing.text and 'href="/dry-runs/one-check.json"' in listing.text
    assert dry.status_code == 200 and "read the log" in dry.text and "exit code 1" in dry.text
    assert check.status_code == 200 and "single" in check.text


def test_live_board_page(runs: Path) -> None:
    runs.mkdir()
    board = LiveBoard("dry-run", "dry", ["a", "b"], result="dry")
    board.update("a", "running")
    with client(runs, boards={"dry": board}) as c:
        page = c.get("/live/dry")
        board.update("a", "PASS")
        board.end()
        again = c.get("/live/dry")
    assert ">running<" in page.text and "0/2 finished" in page.text
    assert "1/2 finished" in again.text and 'href="/dry-runs/dry"' in again.text


def test_ledger_is_opened_read_only(live: tuple[Path, Ledger]) -> None:
    root, _ = live
    before = ledger_signature(root)
    snap = read_ledger(root)
    assert snap is not None and snap.run_state == "running" and len(snap.jobs) == 7
    assert ledger_signature(root) == before


def test_bare_serve_flag_gets_the_default_port() -> None:
    port = str(DEFAULT_PORT)
    assert expand_serve_flag(["run", "benchmark", "--serve"]) == ["run", "benchmark", "--serve", port]
    given = ["run", "benchmark", "--serve", "9000", "b"]
    assert expand_serve_flag(given) == given
    assert expand_serve_flag(["--serve", "bench", "--json"]) == ["--serve", port, "bench", "--json"]
    assert expand_serve_flag(["x", "--", "--serve"]) == ["x", "--", "--serve"]


def test_off_a_terminal_the_view_stays_for_the_grace_only(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest's stdin is no terminal: ``keep_serving`` waits ``GRACE_S``, then stops; interrupted: at once."""
    import fedsim.serve.during as serve_cli

    runs.mkdir()
    monkeypatch.setattr(serve_cli, "GRACE_S", 0.3)
    said: list[str] = []
    for interrupted, most in ((False, 3.0), (True, 1.5)):
        served = start_background(runs, 0)
        began = time.monotonic()
        serve_cli.keep_serving(served, said.append, interrupted=interrupted)
        took = time.monotonic() - began
        assert not served.thread.is_alive() and took < most
        assert took >= (0.0 if interrupted else 0.3)
    assert said == []  # "until Ctrl-C" is said at a terminal only
    serve_cli.keep_serving(None, said.append)  # without --serve: nothing


def test_stopping_ends_open_streams(live: tuple[Path, Ledger], runs: Path) -> None:
    """Open pages do not hold the server up: a page reading a log that keeps growing would otherwise keep
    uvicorn waiting for its whole graceful timeout (then cancelled with an error)."""
    import httpx2 as httpx

    root, _ = live
    log = root / "sites" / "s0" / "logs" / "infer.alpha.log"
    served = start_background(runs, 0)
    stop = threading.Event()

    def grow() -> None:
        while not stop.is_set():
            with log.open("a") as fh:
                fh.write("epoch 1 loss 0.25 " * 10 + "\n")
            time.sleep(0.01)

    def follow(path: str) -> None:
        try:
            with httpx.Client(base_url=served.url, timeout=10) as http, http.stream("GET", path) as resp:
                for _ in resp.iter_lines():
                    pass
        except httpx.HTTPError:
            pass

    threads = [threading.Thread(target=grow, daemon=True)]
    threads += [
        threading.Thread(target=follow, args=(p,), daemon=True)
        for p in ("/runs/r1/events", "/runs/r1/jobs/s0/infer.alpha/log/stream")
    ]
    for th in threads:
        th.start()
    try:
        time.sleep(0.8)
        began = time.monotonic()
        served.stop()
        assert not served.thread.is_alive() and time.monotonic() - began < 1.5  # uvicorn's grace is 2 s
    finally:
        stop.set()
    for th in threads:
        th.join(5)
        assert not th.is_alive()


def test_serve_process_is_lean(tmp_path: Path) -> None:
    """``fedsim serve`` becomes ``python -m fedsim.serve`` (same PID) and holds none of the CLI's heavy
    dependencies: scipy, numpy, typer, rich stay out of a server left running for hours."""
    import re
    import subprocess
    import sys

    import httpx2 as httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "fedsim.cli", "serve", "--runs-dir", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        assert httpx.get(match.group(1), timeout=10).status_code == 200
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:3] == [b"-m", b"fedsim.serve"], cmdline
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    probe = (
        "import sys, fedsim.serve.__main__, fedsim.serve.app, uvicorn;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'numpy', 'typer', 'rich', 'matplotlib'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", loaded
