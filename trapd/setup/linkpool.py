"""The page's side of the setup link: LinkClient calls made from the async app
without blocking it, and one long-poll per stream (PIR edges, finished events)
shared by every open page."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

import anyio

log = logging.getLogger("trapd.setup.page")

try:
    from trapd.setup.link import LinkError
except ImportError:            # the daemon's side of the link is not in this tree yet
    class LinkError(Exception):  # type: ignore[no-redef]
        """The daemon is not there, or the secret is wrong."""

LONG_POLL_S = 2.0      # short, so a stopping page waits little for its last poll
MAX_IDLE_CLIENTS = 4
QUEUE_LENGTH = 200     # items a slow page may fall behind before it loses some
RETRY_S = 1.0


class LinkPool:
    """LinkClients made on demand, one per call in flight (a client is one socket,
    not to be shared between threads), kept for reuse when the call worked."""

    def __init__(self, connect: Callable[[], object]) -> None:
        self._connect = connect
        self._idle: list = []
        self._lock = threading.Lock()

    def call(self, name: str, *args):
        """Blocking: LinkClient.<name>(*args)."""
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = self._connect()
        try:
            result = getattr(client, name)(*args)
        except BaseException:
            _close(client)
            raise
        with self._lock:
            if len(self._idle) < MAX_IDLE_CLIENTS:
                self._idle.append(client)
                return result
        _close(client)
        return result

    async def acall(self, name: str, *args):
        """LinkClient.<name>(*args) on a worker thread, for a request handler."""
        return await anyio.to_thread.run_sync(self.call, name, *args)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            _close(client)


def _close(client) -> None:
    try:
        client.close()
    except Exception:          # closing a broken socket may fail; it is going anyway
        pass


class Streams:
    """The link's streams ("edges", "events") fanned out to every subscribed page:
    one long-poll per stream for all of them, not one per page."""

    def __init__(self, pool: LinkPool, kinds: tuple[str, ...] = ("edges", "events")) -> None:
        self.pool, self.kinds = pool, kinds
        self._queues: set[asyncio.Queue] = set()

    def subscribe(self) -> asyncio.Queue:
        """A queue of (kind, item) for one page."""
        queue: asyncio.Queue = asyncio.Queue(QUEUE_LENGTH)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._queues.discard(queue)

    async def run(self) -> None:
        """Until cancelled (when the app stops): every stream's long-poll."""
        await asyncio.gather(*(self._pump(kind) for kind in self.kinds))

    async def _pump(self, kind: str) -> None:
        seq = None
        failing = False
        while True:
            try:
                if seq is None:     # start after whatever happened before this page
                    seq = (await self._poll(kind, 0, 0.0))["seq"]
                reply = await self._poll(kind, seq, LONG_POLL_S)
            except (LinkError, OSError, EOFError) as exc:
                if not failing:
                    log.warning("setup page: the link's %s failed (%s); retrying", kind, exc)
                failing = True
                await asyncio.sleep(RETRY_S)
                continue
            failing = False
            seq = reply["seq"]
            for item in reply.get(kind, []):
                self._hand_on(kind, item)

    async def _poll(self, kind: str, after_seq: int, wait_s: float) -> dict:
        return await anyio.to_thread.run_sync(self.pool.call, kind, after_seq, wait_s,
                                              abandon_on_cancel=True)

    def _hand_on(self, kind: str, item: dict) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait((kind, item))
            except asyncio.QueueFull:
                pass
