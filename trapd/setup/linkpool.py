"""The page's side of the setup link: LinkClient calls made from the async app
without blocking it, and one long-poll per stream (PIR edges, finished events)
shared by every open page."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

import anyio

from trapd.setup.link import LinkError

log = logging.getLogger("trapd.setup.page")

LONG_POLL_S = 2.0      # short, so a stopping page waits little for its last poll
QUEUE_LENGTH = 200     # items a slow page may fall behind before it loses some
RETRY_S = 1.0


class LinkPool:
    """One LinkClient (thread-safe: a connection per call in flight), made when
    first needed and made again after the daemon was not there."""

    def __init__(self, connect: Callable[[], object]) -> None:
        self._connect = connect
        self._client = None
        self._lock = threading.Lock()

    def call(self, name: str, *args):
        """Blocking: LinkClient.<name>(*args); LinkError when the daemon is not there."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()     # LinkError if no daemon answers
            client = self._client
        return getattr(client, name)(*args)

    async def acall(self, name: str, *args):
        """LinkClient.<name>(*args) on a worker thread, for a request handler."""
        return await anyio.to_thread.run_sync(self.call, name, *args)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


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
