"""The setup page's lock: the per-trap secret, typed once on the login form, buys a
random session cookie; without one every request but the login form gets 401 and
nothing else."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

COOKIE = "trapd_session"
LOGIN_PATH = "/login"
SESSION_TTL_S = 4 * 3600          # a long field visit; setup mode itself ends sooner
MAX_SESSIONS = 16                 # a few phones; the oldest goes first
MAX_LOGIN_BODY = 4096
WRONG_SECRET_DELAY_S = 1.0        # slows guessing without holding a thread
LOGIN_PAGE = (Path(__file__).parent / "static" / "login.html").read_text(encoding="utf-8")

# Sent with every response: nothing from elsewhere, never framed, never cached.
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; connect-src 'self'; "
     b"frame-ancestors 'none'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class Sessions:
    """Session tokens handed out after a correct secret, each valid SESSION_TTL_S."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, monotonic=time.monotonic) -> None:
        self._ttl_s, self._monotonic = ttl_s, monotonic
        self._expiry: dict[str, float] = {}

    def new(self) -> str:
        now = self._monotonic()
        self._expiry = {t: e for t, e in self._expiry.items() if e > now}
        while len(self._expiry) >= MAX_SESSIONS:
            del self._expiry[min(self._expiry, key=self._expiry.get)]
        token = secrets.token_urlsafe(32)
        self._expiry[token] = now + self._ttl_s
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        # compare_digest against every live token: the time taken says nothing about them
        found = False
        for known, expiry in list(self._expiry.items()):
            if hmac.compare_digest(known, token) and expiry > self._monotonic():
                found = True
        return found

    def end(self, token: str | None) -> None:
        self._expiry.pop(token or "", None)


def secret_matches(given: str, secret: bytes) -> bool:
    return hmac.compare_digest(given.strip().encode("utf-8"), secret)


def _cookie_token(scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:          # a malformed header is simply no session
                return None
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


def login_page(message: str = "", status: int = 401) -> HTMLResponse:
    return HTMLResponse(LOGIN_PAGE.replace("{{message}}", message), status_code=status)


def refused(path: str) -> Response:
    if path.startswith("/api/"):
        return JSONResponse({"error": "login required"}, status_code=401)
    return login_page()


class RequireSession:
    """ASGI middleware: the login form is open, everything else needs a session.
    Adds SECURITY_HEADERS to every response."""

    def __init__(self, app, sessions: Sessions) -> None:
        self.app, self.sessions = app, sessions

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in SECURITY_HEADERS if h[0] not in present]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        if scope["path"] == LOGIN_PATH or self.sessions.valid(_cookie_token(scope)):
            await self.app(scope, receive, send_with_headers)
            return
        await refused(scope["path"])(scope, receive, send_with_headers)


async def read_at_most(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes: read as it streams in, so
    a client on the hotspot cannot make the page hold a body of any size."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def login(request: Request, sessions: Sessions, secret: bytes) -> Response:
    """GET: the form. POST secret=...: a session cookie and on to the page."""
    if request.method == "GET":
        return login_page(status=200)
    body = await read_at_most(request, MAX_LOGIN_BODY)
    given = parse_qs((body or b"").decode("utf-8", "replace")).get("secret", [""])[0]
    if not secret or not secret_matches(given, secret):
        await asyncio.sleep(WRONG_SECRET_DELAY_S)
        return login_page("That is not this trap's secret.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, sessions.new(), max_age=SESSION_TTL_S, path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


async def logout(request: Request, sessions: Sessions) -> Response:
    sessions.end(_cookie_token(request.scope))
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
