"""systemd watchdog pings that stop when the camera stops.

Under `WatchdogSec=` systemd sets WATCHDOG_USEC and restarts the service when
no `WATCHDOG=1` arrives within it. A ping only says "alive" if frames are still
coming: `Watchdog.tick` pings at half the interval, and only while the newest
SensorTimestamp is younger than the interval, so a capture that hangs inside
libcamera (or a reopen loop that never yields a frame) becomes a restart.
"""

from __future__ import annotations

import os

from trapd.clock import Clock

US = 1000


def watchdog_interval_ns(environ=os.environ, pid: int | None = None) -> int | None:
    """The interval systemd asked for, or None (no watchdog, or meant for another process)."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID")
    if owner and owner.strip() != str(pid if pid is not None else os.getpid()):
        return None
    try:
        interval = int(usec)
    except ValueError:
        return None
    return interval * US if interval > 0 else None


class Watchdog:
    def __init__(self, interval_ns: int | None, clock: Clock, notify) -> None:
        """`notify(message) -> bool` sends to systemd (trapd.daemon.sd_notify)."""
        self.interval_ns = interval_ns
        self._clock = clock
        self._notify = notify
        self._last_ping_ns: int | None = None
        self.pings = 0

    def tick(self, last_frame_ns: int | None) -> bool:
        """Ping if due and the last frame is fresh; True if a ping went out."""
        if self.interval_ns is None or last_frame_ns is None:
            return False
        now = self._clock.monotonic_ns()
        if now - last_frame_ns > self.interval_ns:
            return False
        if self._last_ping_ns is not None and now - self._last_ping_ns < self.interval_ns // 2:
            return False
        self._notify("WATCHDOG=1")
        self._last_ping_ns = now
        self.pings += 1
        return True
