"""The server's safety rules: who may ask (a token off localhost) and which files may be served.

- Bound to a loopback address the server needs no token, but refuses a ``Host`` header that names anything but
  loopback (a web page elsewhere cannot reach it through DNS rebinding). Bound to any other address it
  requires a token on every request: ``?token=`` (then kept in an HttpOnly cookie), the cookie, or
  ``Authorization: Bearer``.
- A path from a request names a file only when each part is a plain name (no ``..``, no separators, not
  absolute) and the resolved file, symlinks followed, lies under the resolved runs directory; anything else is
  a 404, the same answer as a file that does not exist.
- Every response says ``nosniff`` and a content security policy that runs only the server's own script.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

__all__ = [
    "COOKIE",
    "PAGE_CSP",
    "REPORT_CSP",
    "SecurityMiddleware",
    "is_loopback",
    "new_token",
    "plain_name",
    "safe_file",
]

COOKIE = "fedsim_token"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_token() -> str:
    return secrets.token_urlsafe(18)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine only."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plain_name(part: str) -> bool:
    """A single path component fedsim could have written: letters, digits, ``.``, ``_``, ``-``; no ``..``."""
    return bool(_NAME.fullmatch(part)) and ".." not in part


def safe_file(root: Path, parts: list[str]) -> Path | None:
    """``root/parts...`` when every part is a plain name and the resolved path is a regular file under the
    resolved ``root`` (a symlink out of it is refused); None otherwise."""
    if not parts or not all(plain_name(p) for p in parts):
        return None
    base = Path(root).resolve()
    try:
        target = base.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


def _host_of(header: str) -> str:
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class SecurityMiddleware:
    """Checks every HTTP request (token or loopback ``Host``) and adds the security headers to every answer."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    def _token_of(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[str | None, bool]:
        """The token the request carries and whether it came in the query (then it is set as a cookie)."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0], True
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # a malformed Cookie header is no token
            return None, False
        morsel = cookies.get(COOKIE)
        return (morsel.value if morsel is not None else None), False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if self.loopback_only and not is_loopback(_host_of(headers.get(b"host", b"").decode("latin-1"))):
            await _plain(send, 403, "forbidden: this server answers only requests for localhost")
            return
        set_cookie = False
        if self.token is not None:
            given, from_query = self._token_of(scope, headers)
            if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
                await _plain(send, 401, "unauthorized: open the URL with ?token=... that fedsim serve printed")
                return
            set_cookie = from_query

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                names = {k.lower() for k, _ in raw}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                ]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", PAGE_CSP.encode()))
                if set_cookie and self.token is not None:
                    extra.append((b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()))
                message["headers"] = raw + [(k, v) for k, v in extra if k not in names or k == b"set-cookie"]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
