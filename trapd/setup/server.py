"""Serves the setup page only while the daemon says setup mode is on: the link's
mode() is asked about once a second; the port is opened when it turns on and
closed when it turns off (or the daemon goes away)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Callable

import uvicorn

from trapd.setup.linkpool import LinkError

log = logging.getLogger("trapd.setup.page")

MODE_POLL_S = 1.0
BIND_RETRY_S = 10.0        # the hotspot's address may come up after setup mode does
SHUTDOWN_GRACE_S = 2       # open event streams get this long before they are cut


class PageServer:
    """uvicorn on a thread of its own, started and stopped as setup mode comes and goes."""

    def __init__(self, app_factory: Callable[[], object], host: str, port: int,
                 tls: tuple[str, str] | None = None) -> None:
        """`tls`: (certificate file, key file) to serve https, else plain http."""
        self.app_factory, self.host, self.port, self.tls = app_factory, host, port, tls
        self._app = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Listen, then serve on a thread. OSError (and nothing served) when the address
        cannot be bound: the hotspot is not up yet, or the port is taken."""
        listener = socket.create_server(
            (self.host, self.port), family=socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self._app = self.app_factory()
        config = uvicorn.Config(self._app, host=self.host, port=self.port,
                                log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=SHUTDOWN_GRACE_S, loop="asyncio",
                                http="h11", ws="none",
                                ssl_certfile=self.tls[0] if self.tls else None,
                                ssl_keyfile=self.tls[1] if self.tls else None)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None   # not the main thread
        self._thread = threading.Thread(target=self._serve, args=(listener,), name="setup-page",
                                        daemon=True)
        self._thread.start()
        log.info("setup page open on %s://%s:%d/", "https" if self.tls else "http",
                 self.host, self.port)

    def _serve(self, listener: socket.socket) -> None:
        with listener:
            asyncio.run(self._server.serve(sockets=[listener]))

    def stop(self) -> None:
        if self._server is None:
            return
        before_stop = getattr(getattr(self._app, "state", None), "before_stop", None)
        if before_stop:
            before_stop()         # open event streams end, so the shutdown waits for none
        self._server.should_exit = True
        self._thread.join(timeout=SHUTDOWN_GRACE_S + 5)
        self._server = self._thread = None
        log.info("setup page closed")


def setup_mode_active(mode: Callable[[], dict]) -> tuple[bool, str | None]:
    """(active, why not) from the link; a link that fails means off."""
    try:
        return bool(mode()["active"]), None
    except (LinkError, OSError, EOFError) as exc:
        return False, f"no link to the trap daemon ({exc})"


def serve_while_setup_mode(server: PageServer, mode: Callable[[], dict],
                           stop: threading.Event, poll_s: float = MODE_POLL_S,
                           bind_retry_s: float = BIND_RETRY_S) -> None:
    """Until `stop` is set: open the page while setup mode is on, close it when off.
    Each reason the page stays closed is logged once, when it first holds."""
    said = None
    cannot_bind = None          # why the last attempt to listen failed, until one works
    next_bind = 0.0
    try:
        while not stop.is_set():
            active, why_not = setup_mode_active(mode)
            if active and not server.running and time.monotonic() >= next_bind:
                try:
                    server.start()
                    cannot_bind = None
                except OSError as exc:
                    cannot_bind = (f"cannot listen on {server.host}:{server.port} "
                                   f"({exc.strerror or exc}): is the hotspot up, and "
                                   "setup.bind_address an address of this Pi? Trying again "
                                   f"every {bind_retry_s:g} s")
                    next_bind = time.monotonic() + bind_retry_s
            elif not active:
                cannot_bind = None
                if server.running:
                    server.stop()
            why_not = why_not or cannot_bind
            if why_not != said:
                if why_not:
                    log.warning("setup page: %s; the page stays closed", why_not)
                said = why_not
            stop.wait(poll_s)
    finally:
        server.stop()
