"""The setup page: a Starlette app a technician opens on a phone at the trap.

It never touches the camera or GPIO: it asks the daemon over the setup link
(trapd/setup/link.py, through LinkPool) for the live view, PIR edges, events,
health, clock, reload, the setup photo and the deployment's end, and it reads and writes config.yaml itself with
check-config's rules (trapd/setup/config_page.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

import anyio
import cv2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from trapd.config import load_config
from trapd.errors import ConfigError
from trapd.setup import auth, config_page
from trapd.setup.linkpool import LinkError, LinkPool, Streams

STATIC = Path(__file__).parent / "static"
PREVIEW_WIDTH = 640
THUMB_WIDTH = 240
KEEPALIVE_S = 15.0               # an SSE comment now and then keeps phones' sockets open
STOP_CHECK_S = 0.5               # how soon an open stream notices the page closing
MAX_JSON_BODY = 300 * 1024


class SetupPage:
    """One page server's state: who is logged in, the link, the config file."""

    def __init__(self, config_path: str, secret: bytes, connect: Callable[[], object]) -> None:
        self.config_path = os.fspath(config_path)
        self.secret = secret
        self.sessions = auth.Sessions()
        self.link = LinkPool(connect)
        self.streams = Streams(self.link)
        # set (from any thread) when the page is about to close: streams end by themselves
        self.stopping = threading.Event()

    # --- pages -----------------------------------------------------------
    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def login(self, request: Request) -> Response:
        return await auth.login(request, self.sessions, self.secret)

    async def logout(self, request: Request) -> Response:
        return await auth.logout(request, self.sessions)

    # --- from the daemon -------------------------------------------------
    async def preview(self, request: Request) -> Response:
        """The newest camera frame; its overlay and day/night ride in headers so
        one request per frame is enough."""
        view = await self.link.acall("preview", PREVIEW_WIDTH)
        headers = {"X-Seq": str(view["seq"]), "X-Wall-Ns": str(view["wall_ns"]),
                   "X-Night": "1" if view.get("night") else "0",
                   "X-Overlay": json.dumps(view.get("overlay") or {}, separators=(",", ":"))}
        return Response(view["jpeg"], media_type="image/jpeg", headers=headers)

    async def health(self, request: Request) -> Response:
        health = await self.link.acall("health")
        mode = await self.link.acall("mode")
        return JSONResponse({"health": health, "mode": mode, "page_wall_ns": time.time_ns()})

    async def stream(self, request: Request) -> Response:
        """Server-Sent Events: `edge` for each PIR edge, `event` for each finished event."""
        queue = self.streams.subscribe()

        async def messages():
            try:
                yield "retry: 1000\n\n"
                quiet_s = 0.0
                while not self.stopping.is_set():
                    try:
                        kind, item = await asyncio.wait_for(queue.get(), STOP_CHECK_S)
                    except asyncio.TimeoutError:
                        quiet_s += STOP_CHECK_S
                        if quiet_s >= KEEPALIVE_S:
                            quiet_s = 0.0
                            yield ": keep-alive\n\n"
                        continue
                    name = "edge" if kind == "edges" else "event"
                    yield f"event: {name}\ndata: {json.dumps(item, separators=(',', ':'))}\n\n"
            finally:
                self.streams.unsubscribe(queue)

        return StreamingResponse(messages(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    async def set_clock(self, request: Request) -> Response:
        body = await _json_body(request)
        wall_ns = body.get("wall_ns")
        if not isinstance(wall_ns, int) or wall_ns <= 0:
            return _error("wall_ns: the phone's time in nanoseconds since 1970", 400)
        who = str(body.get("confirmed_by") or "setup page")[:64]
        return JSONResponse(await self.link.acall("set_clock", wall_ns, who))

    async def image(self, request: Request) -> Response:
        """A small copy of one stored photo (path relative to storage.root)."""
        found = self._stored_image(request.query_params.get("path", ""))
        if found is None:
            return _error("no such image", 404)
        jpeg = await anyio.to_thread.run_sync(_thumbnail, found)
        if jpeg is None:
            return _error("the image cannot be read", 404)
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    def _stored_image(self, relative: str) -> Path | None:
        root = self._storage_root()
        if root is None or not relative.lower().endswith(".jpg"):
            return None
        candidate = (root / relative).resolve()
        if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
            return None           # nothing outside storage.root, links included
        return candidate

    def _storage_root(self) -> Path | None:
        try:
            return Path(load_config(self.config_path).storage.root)
        except ConfigError:       # a broken file names no images
            return None

    # --- config.yaml -----------------------------------------------------
    async def config_text(self, request: Request) -> Response:
        text = config_page.read_config_text(self.config_path)
        return JSONResponse({"path": self.config_path, "text": text})

    async def check_config(self, request: Request) -> Response:
        text = (await _json_body(request)).get("text")
        if not isinstance(text, str):
            return _error("text: the whole config.yaml", 400)
        checked = config_page.check_config_text(text, self.config_path)
        return JSONResponse(checked.as_json())

    async def write_config(self, request: Request) -> Response:
        text = (await _json_body(request)).get("text")
        if not isinstance(text, str):
            return _error("text: the whole config.yaml", 400)
        checked = await anyio.to_thread.run_sync(config_page.write_config_text, text,
                                                 self.config_path)
        return await self._applied(checked)

    async def set_location(self, request: Request) -> Response:
        body = await _json_body(request)
        try:
            values = [float(body[k]) for k in ("latitude", "longitude", "accuracy_m")]
        except (KeyError, TypeError, ValueError):
            return _error("latitude, longitude and accuracy_m: numbers", 400)
        checked = await anyio.to_thread.run_sync(config_page.set_location, self.config_path,
                                                 *values)
        return await self._applied(checked)

    # --- deployment: the daemon's calls (trapd/setup/deployment.py) ------------
    async def deployments(self, request: Request) -> Response:
        return JSONResponse(await self.link.acall("deployments"))

    async def setup_photo(self, request: Request) -> Response:
        body = await _json_body(request)
        kind = body.get("kind")
        if kind not in ("setup", "pickup"):
            return _error("kind: setup or pickup", 400)
        who = str(body.get("confirmed_by") or "").strip()[:64] or "setup page"
        try:
            photo = await self.link.acall("setup_photo", kind, who)
        except LinkError as exc:
            return _error(f"no {kind} photo: {exc}", 502)
        root = self._storage_root()
        photo["path"] = str(root / photo["file"]) if root else photo["file"]
        return JSONResponse(photo)

    async def end_deployment(self, request: Request) -> Response:
        await _json_body(request)           # JSON only, as every change here
        ended = await self.link.acall("end_deployment")
        return JSONResponse(ended, status_code=200 if ended["ok"] else 422)

    async def start_deployment(self, request: Request) -> Response:
        """`trapd deployment start`'s check by the daemon (the card's deployments),
        then the checked write of config.yaml here, then the daemon's reload."""
        new_id = str((await _json_body(request)).get("deployment_id") or "").strip()
        if not new_id:
            return JSONResponse(_refusal("a new deployment id is needed"), status_code=422)
        verdict = await self.link.acall("check_deployment_id", new_id)
        if not verdict["ok"]:
            return JSONResponse(_refusal(verdict["message"]), status_code=422)
        checked = await anyio.to_thread.run_sync(config_page.start_deployment, self.config_path,
                                                 new_id)
        return await self._applied(checked)

    async def _applied(self, checked: config_page.Checked) -> Response:
        """A write's verdict, and when it was written, the daemon's reload of it."""
        result = checked.as_json()
        if checked.ok:
            result["previous"] = Path(config_page.previous_path(self.config_path)).name
            result["reload"] = await self.link.acall("reload")
        return JSONResponse(result, status_code=200 if checked.ok else 422)

    # --- lifetime --------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        pumps = asyncio.create_task(self.streams.run())
        try:
            yield
        finally:
            pumps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumps
            self.link.close()


async def _json_body(request: Request) -> dict:
    """A JSON object body. Only JSON is taken, so no other site's form can post here
    (a cross-site JSON post needs a CORS pre-flight, which gets nothing)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise _Refused("send application/json", 415)
    body = await auth.read_at_most(request, MAX_JSON_BODY)
    if body is None:
        raise _Refused("too large", 413)
    try:
        value = json.loads(body)
    except ValueError:
        raise _Refused("not JSON", 400) from None
    if not isinstance(value, dict):
        raise _Refused("expected a JSON object", 400)
    return value


class _Refused(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _refusal(message: str) -> dict:
    """A refused change, as check-config's verdicts are shown."""
    return config_page.Checked([{"line": None, "message": message}]).as_json()


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _refused(request: Request, exc: _Refused) -> Response:
    return _error(str(exc), exc.status)


async def _link_down(request: Request, exc: Exception) -> Response:
    return _error(f"the trap daemon did not answer: {exc}", 503)


async def _config_unreadable(request: Request, exc: Exception) -> Response:
    return _error(str(exc), 500)


def _thumbnail(path: Path) -> bytes | None:
    image = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_4)   # decodes a quarter: fast
    if image is None:
        return None
    height, width = image.shape[:2]
    if width > THUMB_WIDTH:
        image = cv2.resize(image, (THUMB_WIDTH, round(height * THUMB_WIDTH / width)),
                           interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
    return jpeg.tobytes() if ok else None


def create_app(config_path: str, secret: bytes, connect: Callable[[], object]) -> Starlette:
    """The page for the config at `config_path`; `connect()` makes a LinkClient."""
    page = SetupPage(config_path, secret, connect)
    routes = [
        Route("/", page.index),
        Route(auth.LOGIN_PATH, page.login, methods=["GET", "POST"]),
        Route("/logout", page.logout, methods=["POST"]),
        Route("/api/preview.jpg", page.preview),
        Route("/api/health", page.health),
        Route("/api/stream", page.stream),
        Route("/api/clock", page.set_clock, methods=["POST"]),
        Route("/api/image", page.image),
        Route("/api/config", page.config_text),
        Route("/api/config", page.write_config, methods=["POST"]),
        Route("/api/config/check", page.check_config, methods=["POST"]),
        Route("/api/location", page.set_location, methods=["POST"]),
        Route("/api/deployment", page.deployments),
        Route("/api/deployment/photo", page.setup_photo, methods=["POST"]),
        Route("/api/deployment/end", page.end_deployment, methods=["POST"]),
        Route("/api/deployment/start", page.start_deployment, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {_Refused: _refused, LinkError: _link_down, ConnectionError: _link_down,
                EOFError: _link_down, ConfigError: _config_unreadable}
    app = Starlette(routes=routes, lifespan=page.lifespan, exception_handlers=handlers,
                    middleware=[Middleware(auth.RequireSession, sessions=page.sessions)])
    app.state.page = page
    app.state.before_stop = page.stopping.set
    return app
