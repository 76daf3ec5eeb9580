"""``fedsim serve``'s safety rules: a token off localhost, loopback Host only without one, no file outside the
runs directory (traversal, symlinks, absolute paths: 404), logs as text with nosniff and a strict policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from fedsim.serve.app import ServeConfig, create_app
from fedsim.serve.security import COOKIE, is_loopback, safe_file
from tests.unit.test_serve_app import make_run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    _root, ledger = make_run(runs)
    ledger.close()
    (tmp_path / "secret.txt").write_text("outside")
    return runs


def test_token_required_off_localhost(runs: Path) -> None:
    app = create_app(ServeConfig(runs, host="0.0.0.0", token="s3cret"))
    with TestClient(app, base_url="http://10.1.2.3:8765") as c:
        assert c.get("/").status_code == 401
        assert c.get("/runs/r1/jobs/s0/infer.alpha/log").status_code == 401
        assert c.get("/?token=wrong").status_code == 401
        ok = c.get("/?token=s3cret")
        assert ok.status_code == 200 and f"{COOKIE}=s3cret" in ok.headers["set-cookie"]
        assert "HttpOnly" in ok.headers["set-cookie"]
        assert c.get("/runs/r1").status_code == 200  # the cookie from then on
    with TestClient(app, base_url="http://10.1.2.3:8765") as c:
        assert c.get("/runs/r1", headers={"authorization": "Bearer s3cret"}).status_code == 200


def test_loopback_without_token_refuses_other_hosts(runs: Path) -> None:
    app = create_app(ServeConfig(runs))
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        assert c.get("/").status_code == 200
        assert c.get("/", headers={"host": "localhost:8765"}).status_code == 200
        assert c.get("/", headers={"host": "evil.example:8765"}).status_code == 403  # DNS rebinding


@pytest.mark.parametrize(
    "url",
    [
        "/runs/r1/files/../../secret.txt",
        "/runs/r1/files/%2e%2e/%2e%2e/secret.txt",
        "/runs/r1/files//etc/passwd",
        "/runs/r1/files/%2Fetc%2Fpasswd",
        "/runs/..%2F..%2Fsecret.txt/files/x.log",
        "/runs/r1/files/ledger.sqlite",
        "/runs/r1/files/link.log",
        "/runs/r1/jobs/s0/..%2F..%2F..%2F..%2Fsecret/log",
        "/runs/r1/jobs/s0/evil/log",
        "/runs/out/files/secret.txt",
        "/runs/r1/files/config/benchmark.yaml/../../../../secret.txt",
    ],
)
def test_no_file_outside_the_runs_directory(runs: Path, url: str) -> None:
    (runs / "r1" / "link.log").symlink_to(runs.parent / "secret.txt")
    (runs / "r1" / "sites" / "s0" / "logs" / "evil.log").symlink_to(runs.parent / "secret.txt")
    (runs / "out").symlink_to(runs.parent)
    with TestClient(create_app(ServeConfig(runs)), base_url="http://127.0.0.1") as c:
        resp = c.get(url)
    assert resp.status_code == 404
    assert "outside" not in resp.text


def test_safe_file_rules(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.log").write_text("x")
    assert safe_file(tmp_path, ["a", "x.log"]) == (tmp_path / "a" / "x.log").resolve()
    for parts in (["..", "x"], ["/etc", "passwd"], ["a", ""], [], ["a"], ["a/x.log"], [".hidden"]):
        assert safe_file(tmp_path, parts) is None, parts


def test_script_in_a_log_is_text(runs: Path) -> None:
    from fedsim.store.ledger import Ledger
    from tests.unit.test_serve_app import record

    ledger = Ledger(runs / "r1" / Ledger.FILE)
    ledger.job_finished("s0/infer.alpha", record("s0", "infer.alpha", "failed", reason="<script>x()</script>"))
    ledger.close()
    with TestClient(create_app(ServeConfig(runs)), base_url="http://127.0.0.1") as c:
        log = c.get("/runs/r1/jobs/s0/infer.alpha/log")
        page = c.get("/runs/r1")
    assert log.headers["content-type"] == "text/plain; charset=utf-8"
    assert log.headers["x-content-type-options"] == "nosniff"
    assert "<script>alert(1)</script>" in log.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "<script>" not in page.text  # the failures list shows the log's tail and the reason escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "&lt;script&gt;x()" in page.text


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.org")
