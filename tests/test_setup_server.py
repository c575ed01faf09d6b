"""The setup page's listener: opened only while setup mode is on, and an address
the Pi does not have (the hotspot not up yet) is one log line, retried, never a
false "open" and never a line a second."""

from __future__ import annotations

import logging
import threading
import time
import urllib.request

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from setup_page_harness import free_port, wait_until  # noqa: E402
from trapd.setup.server import PageServer, serve_while_setup_mode  # noqa: E402

# TEST-NET-1 (RFC 5737): never an address of this machine.
NOT_OURS = "192.0.2.1"


def hello_app():
    return Starlette(routes=[Route("/", lambda request: PlainTextResponse("setup page"))])


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
        return reply.read().decode()


def test_an_address_the_pi_lacks_is_one_line_and_the_page_opens_once_it_can_bind(caplog):
    port = free_port()
    server = PageServer(hello_app, NOT_OURS, port)
    stop = threading.Event()
    loop = threading.Thread(target=serve_while_setup_mode,
                            args=(server, lambda: {"active": True}, stop, 0.05, 0.3))
    with caplog.at_level(logging.INFO, logger="trapd.setup.page"):
        loop.start()
        try:
            time.sleep(1.5)                  # about 5 attempts to bind, 30 polls
            said = [r.getMessage() for r in caplog.records]
            assert len(said) == 1 and f"cannot listen on {NOT_OURS}:{port}" in said[0]
            assert "hotspot" in said[0] and not server.running
            server.host = "127.0.0.1"        # the hotspot's address is up now
            assert wait_until(lambda: server.running)
            assert get(port) == "setup page"
            assert any("setup page open" in r.getMessage() for r in caplog.records)
        finally:
            stop.set()
            loop.join(15)
    with pytest.raises(OSError):
        get(port)                            # closed again


def test_the_page_closes_when_setup_mode_ends():
    port = free_port()
    server = PageServer(hello_app, "127.0.0.1", port)
    active = threading.Event()
    active.set()
    stop = threading.Event()
    loop = threading.Thread(target=serve_while_setup_mode,
                            args=(server, lambda: {"active": active.is_set()}, stop, 0.05))
    loop.start()
    try:
        assert wait_until(lambda: server.running)
        assert get(port) == "setup page"
        active.clear()
        assert wait_until(lambda: not server.running)
        with pytest.raises(OSError):
            get(port)
    finally:
        stop.set()
        loop.join(15)
