"""Starting the web view: a listening socket, a uvicorn server for :func:`fedsim.serve.app.create_app`, in the
foreground (``fedsim serve``, ``python -m fedsim.serve``) or in a background thread (``--serve``).

Imports nothing of the CLI (typer, rich) so the lean server process stays small; starlette and uvicorn are
imported when a server is made.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fedsim.errors import SpecError

if TYPE_CHECKING:
    import uvicorn

    from fedsim.serve.hub import Hub
    from fedsim.serve.live import LiveBoard

__all__ = ["DEFAULT_PORT", "Served", "listen", "make_server", "run_foreground", "start_background"]

DEFAULT_PORT = 8765
START_TIMEOUT_S = 5.0


@dataclass
class Served:
    """A server running in a background thread of this process."""

    url: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port); SpecError (exit 2) when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        raise SpecError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="--port") from exc
    sock.setblocking(False)
    return sock


def make_server(
    runs_dir: Path, host: str, port: int, token: str | None, boards: dict[str, LiveBoard] | None
) -> tuple[uvicorn.Server, socket.socket, str]:
    """The server, its bound socket and the URL to print (with the token, generated off loopback)."""
    import uvicorn

    from fedsim.serve.app import ServeConfig, create_app
    from fedsim.serve.security import is_loopback, new_token

    if not is_loopback(host) and token is None:
        token = new_token()  # never an open server on a network
    sock = listen(host, port)
    actual = int(sock.getsockname()[1])
    shared = boards if boards is not None else {}  # the caller's dict: boards added later show up
    app = create_app(ServeConfig(Path(runs_dir), host=host, port=actual, token=token, boards=shared))
    hub: Hub = app.state.site.hub

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            hub.shut()  # open pages' streams end now: uvicorn would wait for them, then cancel them noisily
            await super().shutdown(sockets)

    server = Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2)
    )
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{actual}/" + (f"?token={token}" if token else "")
    return server, sock, url


def start_background(
    runs_dir: Path,
    port: int,
    *,
    host: str = "127.0.0.1",
    token: str | None = None,
    boards: dict[str, LiveBoard] | None = None,
) -> Served:
    """Serve ``runs_dir`` from a daemon thread of this process; returns once the server listens."""
    server, sock, url = make_server(runs_dir, host, port, token, boards)
    # uvicorn leaves signals alone off the main thread: the command's own Ctrl-C handling stays in charge
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="fedsim-serve", daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(int(START_TIMEOUT_S / 0.025)):
        if server.started or not thread.is_alive():
            break
        started.wait(0.025)
    return Served(url, int(sock.getsockname()[1]), server, thread)


def run_foreground(
    runs_dir: Path, host: str, port: int, token: str | None, say: Callable[[str], object] = print
) -> None:
    """Serve ``runs_dir`` until Ctrl-C (or SIGTERM), saying the URL first."""
    if not Path(runs_dir).is_dir():
        raise SpecError(f"{runs_dir} is not a directory", field="--runs-dir")
    server, sock, url = make_server(runs_dir, host, port, token, None)
    say(f"fedsim serve: {url}  (runs in {runs_dir}; Ctrl-C stops)")
    server.run(sockets=[sock])
