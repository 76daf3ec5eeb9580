"""``fedsim serve`` in a real headless Chromium (Selenium + Debian's chromedriver): follow a live run of the
bundled benchmark's cubes to its end without a reload, then open a failing job's streamed log.

The run is ``fedsim run benchmark --serve 0`` in a subprocess (the server in the run's own process); the log is
read afterwards from a separate ``fedsim serve`` started after the run (a run older than its server). The
failing model prints ``<script>`` into its log: the page must show it as text. Screenshots go to the test's
tmp dir (and to ``FEDSIM_SCREENSHOTS`` when set, for the README).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CUBES, FIXTURES, browser, small_benchmark

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

FAILING = '''"""Fails after printing a few lines, one of them HTML that a page must never run."""
import sys, time
for i in range(3):
    print(f"step {i}: loading <script>window.__pwned = 1</script> weights", flush=True)
    time.sleep(0.5)
print("RuntimeError: CUDA error: no kernel image is available for execution on the device", file=sys.stderr)
sys.exit(1)
'''


def _driver(tmp: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = browser()
    assert chromium is not None
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={tmp / 'chromium-profile'}",
    ):
        opts.add_argument(flag)
    driver_bin = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(driver_bin), options=opts)


def _url_from(proc: subprocess.Popen[str], lines: list[str], timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"(http://127\.0\.0\.1:\d+/\S*)", line)
        if found:
            return found.group(1)
    raise AssertionError("no URL printed:\n" + "".join(lines))


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    drv = _driver(tmp_path)
    try:
        yield drv
    finally:
        drv.quit()


def _shot(driver: Any, tmp: Path, name: str) -> Path:
    path = tmp / name
    driver.save_screenshot(str(path))
    if os.environ.get("FEDSIM_SCREENSHOTS"):
        out = Path(os.environ["FEDSIM_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / name)
    assert path.stat().st_size > 5000
    return path


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_follow_a_live_run_and_read_a_failing_log(tmp_path: Path, driver: Any) -> None:
    from selenium.webdriver.common.by import By

    failing = tmp_path / "cubes" / "failing"
    shutil.copytree(FIXTURES / "cubes" / "failing_model", failing)
    (failing / "project" / "mlcube.py").write_text(FAILING)
    bench = small_benchmark(tmp_path, models={"baseline": CUBES / "baseline", "failing": failing}, sites=2, cases=2)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "fedsim.cli", "run", "benchmark", str(bench), "--runs-dir", str(runs)]
    cmd += ["--run-id", "live", "--runtime", "local", "--allow-unsandboxed", "--serve", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    lines: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = _url_from(proc, lines)
        driver.get(url)
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "tr[data-run='live'] a"), 60, "the run on the runs page")
        _shot(driver, tmp_path, "serve-runs.png")
        driver.find_element(By.CSS_SELECTOR, "tr[data-run='live'] a").click()
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#grid .job"), 30, "the grid")
        driver.execute_script("window.__noReload = 42")
        first = driver.execute_script(
            "return Array.from(document.querySelectorAll('#grid .job')).map(e => e.className).join(',')"
        )
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#grid .job.running"), 120, "a running job")
        _shot(driver, tmp_path, "serve-run-live.png")
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#ranking"), 300, "the ranking")
        assert driver.execute_script("return window.__noReload") == 42, "the page reloaded"
        last = driver.execute_script(
            "return Array.from(document.querySelectorAll('#grid .job')).map(e => e.className).join(',')"
        )
        assert first != last
        assert int(driver.execute_script("return document.body.dataset.updates")) >= 2
        assert driver.find_elements(By.CSS_SELECTOR, "#grid .job.failed"), "the failing model's jobs are red"
        stale = driver.find_elements(By.CSS_SELECTOR, "#grid .job.running, #grid .job.waiting")
        assert not stale, [e.get_attribute("title") for e in stale]  # every box, data prep in each column too
        ranking = driver.find_element(By.CSS_SELECTOR, "table.ranking").text
        assert "baseline" in ranking and "failing" in ranking
        assert "s0/infer.failing" in driver.find_element(By.ID, "failures").text
        driver.execute_script("window.scrollTo(0, 0)")
        _shot(driver, tmp_path, "serve-run.png")
        assert proc.wait(timeout=120) == 0, "".join(lines) + (proc.stdout.read() if proc.stdout else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    # a server started after the run: the failing job's log, streamed, shown as text
    serve = subprocess.Popen(
        [sys.executable, "-m", "fedsim.cli", "serve", "--runs-dir", str(runs), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url = _url_from(serve, [], timeout=30)
        driver.get(url + "runs/live/jobs/s0/infer.failing")
        _wait(lambda: driver.execute_script("return document.body.dataset.logEnded"), 30, "the end of the log")
        log = driver.find_element(By.ID, "log").text
        assert "step 2: loading <script>window.__pwned = 1</script> weights" in log
        assert "CUDA error" in log
        assert driver.execute_script("return window.__pwned") is None
        assert not driver.find_elements(By.CSS_SELECTOR, "#log script")
        assert "failed" in driver.find_element(By.ID, "job-state").text
        _shot(driver, tmp_path, "serve-job.png")
    finally:
        serve.terminate()
        serve.wait(timeout=10)
        if serve.stdout is not None:
            serve.stdout.close()
