"""The setup link: the setup page asks the daemon over a Unix socket.

Python's multiprocessing.connection does the framing and the challenge-
response with the per-trap secret as authkey (HMAC; the secret itself never
crosses the socket), so a client without the secret gets nothing. Messages
are JSON (bytes as base64), never pickle: neither side runs what the other
sends.

Server: one thread accepts, one thread per connection answers (a long-poll
waits on its own thread). The handshake runs on the connection's thread, so
a client that connects and stays silent blocks nobody.

Client (the page, `trapd setup`): `LinkClient(socket_path, secret)`; each
call takes an idle connection or opens one, so calls from several threads
run side by side. Every failure is a LinkError with one line.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import stat
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Callable

from trapd.errors import TrapdError

log = logging.getLogger(__name__)

ACCEPT_POLL_S = 0.5          # how soon close() is noticed by the accepting thread
CALL_MARGIN_S = 30.0         # a call's answer may take this long beyond its own wait
SOCKET_MODE = 0o660          # the page may run as another user of the trap's group


class LinkError(TrapdError):
    """The setup link failed: daemon not there, wrong secret, or the call refused."""


def _encode(value) -> bytes:
    return json.dumps(value, default=_bytes_as_json).encode()


def _bytes_as_json(value):
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"{type(value).__name__} cannot go over the setup link")


def _decode(data: bytes):
    return json.loads(data, object_hook=lambda d: base64.b64decode(d["__bytes__"])
                      if set(d) == {"__bytes__"} else d)


class LinkServer:
    """Serves `handle(name, kwargs) -> value` on a Unix socket at `path`."""

    def __init__(self, path: str | os.PathLike, secret: bytes,
                 handle: Callable[[str, dict], object]) -> None:
        self.path = Path(path)
        self._secret = secret
        self._handle = handle
        self._closed = threading.Event()
        self._open: set[Connection] = set()
        self._open_lock = threading.Lock()
        self._socket = self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="trapd-setup-link",
                                        daemon=True)

    def _listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._remove_stale_socket()
            sock.bind(str(self.path))
            os.chmod(self.path, SOCKET_MODE)
            sock.listen(8)
        except OSError as exc:
            sock.close()
            raise LinkError(f"setup link {self.path}: cannot listen: {exc.strerror or exc}") from None
        sock.settimeout(ACCEPT_POLL_S)
        return sock

    def _remove_stale_socket(self) -> None:
        """A socket file left by a daemon that did not stop cleanly goes; one that
        another process still answers on is refused."""
        try:
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                return              # bind says what is wrong with it
        except FileNotFoundError:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()
                return
        raise LinkError(f"setup link {self.path}: another process serves it (a second trapd?)")

    def start(self) -> "LinkServer":
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._socket.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                if self._closed.is_set():
                    return
                log.warning("setup link: accept failed (%s); trying again", exc)
                self._closed.wait(ACCEPT_POLL_S)
                continue
            client.settimeout(None)
            threading.Thread(target=self._serve, args=(Connection(client.detach()),),
                             name="trapd-setup-call", daemon=True).start()

    def _serve(self, conn: Connection) -> None:
        with self._open_lock:
            self._open.add(conn)
        try:
            self._talk(conn)
        finally:
            with self._open_lock:
                self._open.discard(conn)
            conn.close()

    def _talk(self, conn: Connection) -> None:
        try:
            deliver_challenge(conn, self._secret)
            answer_challenge(conn, self._secret)
        except (AuthenticationError, OSError, EOFError) as exc:
            log.warning("setup link: a client was refused (%s)", exc)
            return
        while not self._closed.is_set():
            try:
                request = _decode(conn.recv_bytes())
            except (EOFError, OSError):
                return
            except ValueError:
                conn.send_bytes(_encode(["error", "not a setup link request"]))
                continue
            conn.send_bytes(_encode(self._answer(request)))

    def _answer(self, request) -> list:
        try:
            name, kwargs = request
            return ["ok", self._handle(name, dict(kwargs))]
        except TrapdError as exc:
            return ["error", str(exc)]
        except (ValueError, TypeError, KeyError) as exc:
            return ["error", f"bad request: {exc}"]
        except Exception as exc:            # the link must never take the daemon down
            log.exception("setup link: %s failed", request[0] if request else request)
            return ["error", f"failed in the daemon: {exc}"]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2 * ACCEPT_POLL_S)
        self._socket.close()
        with self._open_lock:
            for conn in self._open:     # wakes their threads' recv with end of file
                _shut_down(conn.fileno())
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _shut_down(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()       # the Connection still owns (and closes) the descriptor


class LinkClient:
    """The daemon's setup calls, from another process. Thread-safe."""

    def __init__(self, socket_path: str | os.PathLike, secret: bytes) -> None:
        self.socket_path = str(socket_path)
        self._secret = secret
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._release(self._connect())      # say at once if the daemon or the secret is wrong

    # -- the calls ---------------------------------------------------------------
    def mode(self) -> dict:
        return self._call("mode")

    def open_setup(self, seconds: float) -> dict:
        return self._call("open_setup", seconds=seconds)

    def health(self) -> dict:
        return self._call("health")

    def preview(self, max_width: int = 640) -> dict:
        return self._call("preview", max_width=max_width)

    def edges(self, after_seq: int, wait_s: float) -> dict:
        return self._call("edges", wait_s, after_seq=after_seq, wait_s=wait_s)

    def events(self, after_seq: int, wait_s: float) -> dict:
        return self._call("events", wait_s, after_seq=after_seq, wait_s=wait_s)

    def set_clock(self, wall_ns: int, confirmed_by: str) -> dict:
        return self._call("set_clock", wall_ns=wall_ns, confirmed_by=confirmed_by)

    def reload(self) -> dict:
        return self._call("reload", 60.0)

    def setup_photo(self, kind: str, confirmed_by: str) -> dict:
        return self._call("setup_photo", 30.0, kind=kind, confirmed_by=confirmed_by)

    def end_deployment(self) -> dict:
        return self._call("end_deployment")

    def deployments(self) -> dict:
        return self._call("deployments")

    def check_deployment_id(self, new_id: str) -> dict:
        return self._call("check_deployment_id", new_id=new_id)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- plumbing ----------------------------------------------------------------
    def _call(self, name: str, patience_s: float = 0.0, **kwargs):
        """`name(**kwargs)` in the daemon; its answer may take `patience_s` (a long-poll)."""
        request = _encode([name, kwargs])
        conn, pooled = self._take()
        try:
            conn.send_bytes(request)
        except OSError:
            conn.close()
            if not pooled:
                raise LinkError(f"setup link {self.socket_path}: the daemon closed the link") from None
            conn, pooled = self._connect(), False    # the daemon restarted since: once more
            conn.send_bytes(request)
        try:
            if not conn.poll(patience_s + CALL_MARGIN_S):
                raise LinkError(f"setup link {self.socket_path}: no answer to {name} "
                                f"within {patience_s + CALL_MARGIN_S:g} s")
            status, value = _decode(conn.recv_bytes())
        except (EOFError, OSError) as exc:
            conn.close()
            raise LinkError(f"setup link {self.socket_path}: the daemon closed the link "
                            f"({exc or 'end of file'}); is it restarting?") from None
        except LinkError:
            conn.close()
            raise
        self._release(conn)
        if status != "ok":
            raise LinkError(value)
        return value

    def _take(self) -> tuple[Connection, bool]:
        """An idle connection (True) or a new one (False)."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _release(self, conn: Connection) -> None:
        with self._lock:
            self._idle.append(conn)

    def _connect(self) -> Connection:
        try:
            return Client(self.socket_path, family="AF_UNIX", authkey=self._secret)
        except AuthenticationError:
            raise LinkError("setup link refused: wrong secret") from None
        except (FileNotFoundError, ConnectionRefusedError):
            raise LinkError(f"setup link {self.socket_path}: no daemon there (is trapd running, "
                            "with setup.enabled: true?)") from None
        except PermissionError:
            raise LinkError(f"setup link {self.socket_path}: no permission to open it (run as "
                            "the trapd user or its group)") from None
        except (OSError, EOFError) as exc:
            raise LinkError(f"setup link {self.socket_path}: {exc}") from None
