"""Degraded states: faults the trap outlives, named, so that it can say why.

The daemon does not exit for a fault it can outlive (DESIGN.md, "Staying
alive"). Each such condition is set here with the reason, logged once when it
starts and once when it ends, and kept in `<storage root>/health.json` so that
`trapd status` (another process) and the fleet heartbeat show it. One-off
repairs (an index rebuilt from the photos) are kept there too, newest last.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

HEALTH_FILE = "health.json"
RECENT_REPAIRS = 20

# The degraded states.
STORAGE_FULL = "storage_full"            # below the floor or ENOSPC: images not saved
INDEX_FULL = "index_full"                # the index cannot grow: rows not recorded
INDEX_DAMAGED = "index_damaged"          # the index failed while running; rebuilt at the next start
STORAGE_LINK = "storage_link"            # images/ links out of the storage root: not written through
CAMERA_UNAVAILABLE = "camera_unavailable"  # capture or open failing; retried with back-off


class Health:
    """The trap's degraded states (thread-safe: writer threads report a full card)."""

    def __init__(self, path: Path | None = None, wall_ns=time.time_ns) -> None:
        self._path = path
        self._wall_ns = wall_ns
        self._lock = threading.Lock()
        self._degraded: dict[str, dict] = {}
        self._repairs: list[dict] = _read(path).get("repairs", [])[-RECENT_REPAIRS:]
        self._listeners: list = []
        self._save()

    def listen(self, callback) -> None:
        """`callback(degraded)` now and after every change (e.g. the status LED)."""
        self._listeners.append(callback)
        callback(self.snapshot()["degraded"])

    def _tell(self) -> None:
        degraded = self.snapshot()["degraded"]
        for callback in self._listeners:
            callback(degraded)

    def set(self, state: str, why: str) -> bool:
        """Enter (or update the reason of) a degraded state; True if it is new."""
        with self._lock:
            new = state not in self._degraded
            if not new and self._degraded[state]["why"] == why:
                return False
            since = self._wall_ns() if new else self._degraded[state]["since_wall_ns"]
            self._degraded[state] = {"why": why, "since_wall_ns": since}
            self._save()
        if new:
            log.error("degraded: %s: %s", state, why)
            self._tell()
        return new

    def clear(self, state: str, how: str = "") -> bool:
        with self._lock:
            if self._degraded.pop(state, None) is None:
                return False
            self._save()
        log.warning("recovered: %s%s", state, f" ({how})" if how else "")
        self._tell()
        return True

    def repaired(self, what: str) -> None:
        """Record a repair done without stopping (e.g. the index rebuilt)."""
        with self._lock:
            self._repairs = (self._repairs + [{"what": what, "wall_ns": self._wall_ns()}])[
                -RECENT_REPAIRS:]
            self._save()

    def is_set(self, state: str) -> bool:
        return state in self._degraded

    def snapshot(self) -> dict:
        with self._lock:
            return {"degraded": {k: dict(v) for k, v in self._degraded.items()},
                    "repairs": [dict(r) for r in self._repairs]}

    def _save(self) -> None:
        if self._path is None:
            return
        temporary = self._path.with_name(self._path.name + ".tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps({"degraded": self._degraded, "repairs": self._repairs}))
                f.flush()
                os.fsync(f.fileno())    # a power cut must not leave it empty (LazyFS showed it)
            os.replace(temporary, self._path)
            directory = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:   # a full card: the log still says it
            log.debug("health file not written: %s", exc)


def read_health(root: str | os.PathLike) -> dict:
    """What the running (or last) daemon reported, for `trapd status`."""
    found = _read(Path(root) / HEALTH_FILE)
    return {"degraded": found.get("degraded", {}), "repairs": found.get("repairs", [])}


def _read(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
