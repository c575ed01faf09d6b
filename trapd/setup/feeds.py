"""Numbered feeds the setup page long-polls: PIR edges and finished events.

The trap's threads only append (a short lock, no I/O); the link's threads
wait on the condition with a timeout in real time (the page's wait_s).
"""

from __future__ import annotations

import threading
from collections import deque

KEPT = 200      # entries a feed remembers; a page that fell further behind misses some


class Feed:
    def __init__(self, kept: int = KEPT) -> None:
        self._entries: deque[dict] = deque(maxlen=kept)
        self._seq = 0
        self._changed = threading.Condition()

    def add(self, entry: dict) -> dict:
        """Append `entry` (a dict, given its "seq"); returns it."""
        with self._changed:
            self._seq += 1
            entry["seq"] = self._seq
            self._entries.append(entry)
            self._changed.notify_all()
        return entry

    def update(self, match, changes: dict) -> None:
        """Change the entries for which `match(entry)` holds (e.g. an edge's event_id)."""
        with self._changed:
            for entry in self._entries:
                if match(entry):
                    entry.update(changes)

    def after(self, after_seq: int, wait_s: float, key: str) -> dict:
        """{"seq": newest, key: [entries newer than after_seq]}, waiting up to
        `wait_s` (real seconds) for one if there is none yet."""
        with self._changed:
            self._changed.wait_for(lambda: self._seq > after_seq, max(0.0, wait_s))
            newer = [dict(e) for e in self._entries if e["seq"] > after_seq]
            return {"seq": self._seq, key: newer}
