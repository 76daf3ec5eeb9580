"""The web application of ``fedsim serve``: pages rendered with Jinja2, live updates as server-sent events.

Pages: ``/`` (runs, dry runs, checks), ``/runs/{id}`` (the site × model grid, progress, running jobs,
failures, peaks, builds; the ranking and site tables once finished), ``/runs/{id}/jobs/{site}/{job}`` (its
record and its log, streamed), ``/dry-runs/{name}`` (verdicts and fixes) and ``/live/{name}`` (a command
started with ``--serve`` that has no ledger). Every stream is ``text/event-stream``; logs and other files
are served as files of the runs directory only (see :mod:`.security`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import time
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fedsim.errors import StoreError
from fedsim.pipeline.progress import duration_text
from fedsim.report.loader import read_tail
from fedsim.serve.hub import CLOSING, Hub, Poller, sse
from fedsim.serve.live import LiveBoard
from fedsim.serve.security import REPORT_CSP, SecurityMiddleware, is_loopback, plain_name, safe_file
from fedsim.serve.views import STAGES, Cell, RunState, load_dry_run, load_listing, load_run_state, planned_names
from fedsim.store.ledger_view import ledger_signature, read_job_state, read_ledger
from fedsim.store.runlock import LOCK_FILE
from fedsim.store.tail import read_end

__all__ = ["LOG_PAGE_BYTES", "LOG_STREAM_CAP", "ServeConfig", "create_app"]

LOG_PAGE_BYTES = 256 * 1024  # the end of a log a page shows (what `tail` would), and /log serves
LOG_STREAM_CAP = 4 * 1024 * 1024  # bytes one log stream sends at most; then it says so and stops
LOG_CHUNK = 64 * 1024
LOG_POLL_S = 0.5
KEEPALIVE_S = 15.0
STATE_STYLE = {"completed": "ok", "running": "live", "interrupted": "warn", "aborted": "bad", "no result": "bad"}
JOB_STYLE = {"succeeded": "ok", "running": "live", "failed": "bad", "skipped": "warn", "interrupted": "warn"}
TEXT_SUFFIXES = {".log": "text/plain", ".txt": "text/plain", ".yaml": "text/plain", ".csv": "text/csv"}
SERVED_SUFFIXES = {**TEXT_SUFFIXES, ".json": "application/json", ".png": "image/png", ".html": "text/html"}


@dataclass
class ServeConfig:
    """What one server shows and how it is reached."""

    runs_dir: Path
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    boards: dict[str, LiveBoard] = field(default_factory=dict)  # in-process commands (--serve), by name
    interval: float = 0.25  # seconds between two polls of a followed run

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def _bytes(value: Any) -> str:
    if not isinstance(value, int):
        return "-"
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def _when(epoch: Any) -> str:
    return "-" if not isinstance(epoch, int | float) else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _dur(seconds: Any) -> str:
    return "-" if not isinstance(seconds, int | float) else duration_text(seconds)


def _fmt(value: Any, spec: str) -> str:
    return "-" if not isinstance(value, int | float) or isinstance(value, bool) else format(value, spec)


def _job_style(status: Any) -> str:
    """A job status's badge colour, by the grid's grouping (every failed status is red)."""
    return JOB_STYLE.get(Cell("", "", "", str(status)).css, "")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("fedsim.serve", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(bytes=_bytes, when=_when, dur=_dur, fmt=_fmt, job_style=_job_style)
    env.globals.update(STATE_STYLE=STATE_STYLE, STAGES=STAGES, planned_names=planned_names)
    return env


class _Site:
    """The application's shared parts: config, templates, pollers."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.runs_dir = Path(config.runs_dir)
        self.env = _environment()
        self.hub = Hub()
        self.concurrency: dict[str, int] = {}  # run id -> most jobs seen running at once (the ETA's divisor)

    def render(self, template: str, **values: Any) -> str:
        return self.env.get_template(template).render(**values)

    def page(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(self.render(template, **values), status_code=status)

    # -- one run ---------------------------------------------------------------------------------------------

    def run_root(self, run_id: str) -> Path | None:
        if not plain_name(run_id):
            return None
        base = self.runs_dir.resolve()
        root = (base / run_id).resolve()
        return root if root.is_relative_to(base) and root.parent == base and root.is_dir() else None

    def run_state(self, run_id: str) -> RunState:
        root = self.run_root(run_id)
        if root is None:
            raise StoreError(f"no run {run_id!r}")
        snap = read_ledger(root)
        running = sum(1 for j in snap.jobs.values() if j.state == "running") if snap is not None else 0
        seen = self.concurrency[run_id] = max(self.concurrency.get(run_id, 1), running)
        return load_run_state(self.runs_dir, run_id, snapshot=snap, concurrency=seen)

    def fragments(self, state: RunState) -> dict[str, str]:
        board = self.config.boards.get(state.run_id)
        build = board.snapshot() if board is not None else None
        values = {"s": state, "build": build}
        return {
            "head": self.render("_run_head.html", **values),
            "running": self.render("_run_running.html", **values),
            "failures": self.render("_run_failures.html", **values),
            "peaks": self.render("_run_peaks.html", **values),
            "finished": self.render("_run_finished.html", **values),
        }

    def run_message(self, run_id: str, previous: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        state = self.run_state(run_id)
        cells = {k: c.to_dict() for k, c in state.cells.items()}
        # a site or model the page does not know yet (a model's first job): the page reloads its grid
        shape = [state.sites, state.models]
        fragments = self.fragments(state)
        full: dict[str, Any] = {"cells": cells, "fragments": fragments, "shape": shape, "now": time.time()}
        if previous is None:
            return full, None
        delta: dict[str, Any] = {"now": full["now"]}
        old_cells: dict[str, Any] = previous.get("cells") or {}
        changed = {k: v for k, v in cells.items() if old_cells.get(k) != v}
        if changed:
            delta["cells"] = changed
        old_fragments: dict[str, str] = previous.get("fragments") or {}
        frags = {k: v for k, v in fragments.items() if old_fragments.get(k) != v}
        if frags:
            delta["fragments"] = frags
        if shape != previous.get("shape"):
            delta["shape"] = shape
            delta["grid"] = self.render("_run_grid.html", s=state)
        return full, (delta if len(delta) > 1 else None)

    def run_signature(self, run_id: str) -> Hashable:
        root = self.run_root(run_id)
        if root is None:
            return None
        stats: list[tuple[int, int] | None] = []
        for name in ("summary.json", LOCK_FILE, "report.html", "ranking"):
            try:
                st = os.stat(root / name)
                stats.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stats.append(None)
        board = self.config.boards.get(run_id)
        return (ledger_signature(root), tuple(stats), board.version if board is not None else None)

    def run_poller(self, run_id: str) -> Poller:
        return self.hub.poller(
            f"run:{run_id}",
            lambda: Poller(
                signature=lambda: self.run_signature(run_id),
                render=lambda prev: self.run_message(run_id, prev),
                interval=self.config.interval,
            ),
        )

    # -- the runs list ---------------------------------------------------------------------------------------

    def listing_signature(self) -> Hashable:
        out = []
        try:
            entries = sorted(self.runs_dir.iterdir())
        except OSError:
            return None
        for p in entries:
            sig: list[Any] = [p.name]
            for name in ("ledger.sqlite", "ledger.sqlite-wal", "summary.json", LOCK_FILE, "dry_run.json"):
                try:
                    st = os.stat(p / name)
                    sig.append((st.st_mtime_ns, st.st_size))
                except OSError:
                    sig.append(None)
            out.append(tuple(sig))
        boards = tuple((n, b.version) for n, b in sorted(self.config.boards.items()))
        return (tuple(out), boards)

    def listing_message(self, previous: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        html = self.render("_runs_table.html", listing=load_listing(self.runs_dir), boards=self.config.boards)
        full = {"fragments": {"runs": html}}
        if previous is not None and previous.get("fragments") == full["fragments"]:
            return full, None
        return full, (full if previous is not None else None)

    def board_message(self, name: str, previous: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        board = self.config.boards.get(name)
        html = self.render("_live_table.html", b=board.snapshot() if board is not None else None)
        full = {"fragments": {"board": html}, "now": time.time()}
        if previous is not None and previous.get("fragments") == full["fragments"]:
            return full, None
        return full, (full if previous is not None else None)


def _not_found(site: _Site, what: str) -> HTMLResponse:
    return site.page("error.html", status=404, message=f"not found: {what}")


async def _event_stream(request: Request, poller: Poller) -> AsyncIterator[str]:
    queue, first = await poller.subscribe()
    try:
        yield first
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected() or queue not in poller.subscribers:
                    return
                yield ": keepalive\n\n"
                continue
            if message == CLOSING:
                return
            yield message
    finally:
        poller.unsubscribe(queue)


def _sse_response(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        body, media_type="text/event-stream", headers={"cache-control": "no-store", "x-accel-buffering": "no"}
    )


def _log_path(site: _Site, run_id: str, site_name: str, job: str) -> Path | None:
    if not (plain_name(run_id) and plain_name(site_name) and plain_name(job)):
        return None
    return safe_file(site.runs_dir, [run_id, "sites", site_name, "logs", f"{job}.log"])


async def _log_stream(request: Request, hub: Hub, root: Path, path: Path, key: str) -> AsyncIterator[str]:
    """The end of the log, then what is appended to it, until the job is finished and its log read (or the cap)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        size = path.stat().st_size
    except OSError:
        yield sse("end", {"reason": "the log cannot be read"})
        return
    start = max(0, size - LOG_PAGE_BYTES)
    sent, offset, idle = 0, start, 0.0
    yield sse("meta", {"skipped": start})
    while not hub.closing:
        try:
            size = path.stat().st_size
        except OSError:
            yield sse("end", {"reason": "the log is gone"})
            return
        if size < offset:  # truncated or replaced: start again from its beginning
            offset, decoder = 0, codecs.getincrementaldecoder("utf-8")(errors="replace")
            yield sse("reset", {})
        if size > offset:
            data = await asyncio.to_thread(_read_at, path, offset, min(LOG_CHUNK, size - offset))
            offset += len(data)
            sent += len(data)
            text = decoder.decode(data)
            if text:
                yield sse("log", text)
            if sent >= LOG_STREAM_CAP:
                yield sse("end", {"reason": f"stream capped at {LOG_STREAM_CAP // 1024**2} MiB: reload for the end"})
                return
            idle = 0.0
            continue
        if idle <= 0:  # nothing new: is the job still running?
            state = await asyncio.to_thread(read_job_state, root, key)
            if state != "running":
                yield sse("end", {"reason": f"job {state or 'not running'}"})
                return
            idle = 2.0
        if hub.closing or await request.is_disconnected():
            return
        await asyncio.sleep(LOG_POLL_S)
        idle -= LOG_POLL_S


def _read_at(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def create_app(config: ServeConfig) -> Starlette:
    """The ASGI application for ``config`` (uvicorn serves it; tests use starlette's TestClient)."""
    site = _Site(config)

    async def runs_page(request: Request) -> Response:
        listing = await asyncio.to_thread(load_listing, site.runs_dir)
        return site.page("runs.html", listing=listing, boards=config.boards, runs_dir=site.runs_dir)

    async def runs_events(request: Request) -> Response:
        poller = site.hub.poller(
            "listing",
            lambda: Poller(site.listing_signature, site.listing_message, interval=1.0, refresh_s=10.0),
        )
        return _sse_response(_event_stream(request, poller))

    async def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if site.run_root(run_id) is None:
            return _not_found(site, f"run {run_id}")
        try:
            state = await asyncio.to_thread(site.run_state, run_id)
        except StoreError:
            return _not_found(site, f"run {run_id}")
        return site.page("run.html", s=state, f=site.fragments(state), now=time.time())

    async def run_events(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if site.run_root(run_id) is None:
            return PlainTextResponse("not found", status_code=404)
        return _sse_response(_event_stream(request, site.run_poller(run_id)))

    async def job_page(request: Request) -> Response:
        run_id, site_name, job = (request.path_params[k] for k in ("run_id", "site", "job"))
        root = site.run_root(run_id)
        if root is None or not plain_name(site_name) or not plain_name(job):
            return _not_found(site, "job")
        snap = await asyncio.to_thread(read_ledger, root)
        row = snap.jobs.get(f"{site_name}/{job}") if snap is not None else None
        record = row.record if row is not None else None
        if record is None:
            try:
                state = await asyncio.to_thread(site.run_state, run_id)
            except StoreError:
                return _not_found(site, "job")
            if f"{site_name}/{job}" not in state.cells and job not in planned_names(state.models):
                return _not_found(site, f"job {site_name}/{job}")
        log = _log_path(site, run_id, site_name, job)
        return site.page(
            "job.html",
            run_id=run_id,
            site=site_name,
            job=job,
            row=row,
            record=record,
            has_log=log is not None,
            cap=LOG_PAGE_BYTES,
            now=time.time(),
        )

    async def job_log(request: Request) -> Response:
        run_id, site_name, job = (request.path_params[k] for k in ("run_id", "site", "job"))
        path = _log_path(site, run_id, site_name, job)
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        end = await asyncio.to_thread(read_end, path, LOG_PAGE_BYTES)
        if end is None:
            return PlainTextResponse("not found", status_code=404)
        text, cut = end
        head = f"[... the first part of the log is not shown: the last {LOG_PAGE_BYTES // 1024} KiB follow]\n"
        return PlainTextResponse((head if cut else "") + text, media_type="text/plain; charset=utf-8")

    async def job_log_stream(request: Request) -> Response:
        run_id, site_name, job = (request.path_params[k] for k in ("run_id", "site", "job"))
        path = _log_path(site, run_id, site_name, job)
        root = site.run_root(run_id)
        if path is None or root is None:
            return PlainTextResponse("not found", status_code=404)
        return _sse_response(_log_stream(request, site.hub, root, path, f"{site_name}/{job}"))

    async def run_file(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        rel = request.path_params["path"]
        parts = rel.split("/")
        path = safe_file(site.runs_dir, [run_id, *parts]) if not rel.startswith("/") else None
        kind = SERVED_SUFFIXES.get(path.suffix.lower()) if path is not None else None
        if path is None or kind is None or (kind == "text/html" and path.name != "report.html"):
            return PlainTextResponse("not found", status_code=404)
        if path.suffix == ".log":
            tail = await asyncio.to_thread(read_tail, path, 10_000, LOG_PAGE_BYTES)
            return PlainTextResponse(tail or "", media_type="text/plain; charset=utf-8")
        headers = {"content-security-policy": REPORT_CSP} if kind == "text/html" else {}
        media = f"{kind}; charset=utf-8" if kind.startswith("text/") else kind
        return FileResponse(path, media_type=media, headers=headers)

    async def dry_run_page(request: Request) -> Response:
        name = request.path_params["name"]
        if not plain_name(name):
            return _not_found(site, "dry run")
        try:
            view = await asyncio.to_thread(load_dry_run, site.runs_dir, name)
        except StoreError:
            return _not_found(site, f"dry run {name}")
        return site.page("dryrun.html", d=view)

    async def live_page(request: Request) -> Response:
        name = request.path_params["name"]
        board = config.boards.get(name)
        if board is None:
            return _not_found(site, f"live view {name}")
        return site.page("live.html", b=board.snapshot(), name=name, now=time.time())

    async def live_events(request: Request) -> Response:
        name = request.path_params["name"]
        board = config.boards.get(name)
        if board is None:
            return PlainTextResponse("not found", status_code=404)
        poller = site.hub.poller(
            f"live:{name}",
            lambda: Poller(lambda: board.version, lambda prev: site.board_message(name, prev), interval=0.25),
        )
        return _sse_response(_event_stream(request, poller))

    async def not_found(request: Request, exc: Exception) -> Response:
        return _not_found(site, request.url.path)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await site.hub.close()

    static = Path(__file__).with_name("static")
    app = Starlette(
        routes=[
            Route("/", runs_page),
            Route("/events", runs_events),
            Route("/runs/{run_id}", run_page),
            Route("/runs/{run_id}/events", run_events),
            Route("/runs/{run_id}/jobs/{site}/{job}", job_page),
            Route("/runs/{run_id}/jobs/{site}/{job}/log", job_log),
            Route("/runs/{run_id}/jobs/{site}/{job}/log/stream", job_log_stream),
            Route("/runs/{run_id}/files/{path:path}", run_file),
            Route("/dry-runs/{name}", dry_run_page),
            Route("/live/{name}", live_page),
            Route("/live/{name}/events", live_events),
            Mount("/static", StaticFiles(directory=static), name="static"),
        ],
        exception_handlers={404: not_found},
        lifespan=lifespan,
        middleware=[
            Middleware(SecurityMiddleware, token=config.token, loopback_only=config.loopback and config.token is None)
        ],
    )
    app.state.site = site
    return app
