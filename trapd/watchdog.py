"""systemd watchdog pings that stop when the camera stops.

Under `WatchdogSec=` systemd sets WATCHDOG_USEC and restarts the service when
no `WATCHDOG=1` arrives within it. A ping only says "alive" if frames are still
coming: `Watchdog.tick` pings at half the interval, and only while the newest
SensorTimestamp is younger than the interval, so a capture that hangs inside
libcamera (or a reopen loop that never yields a frame) becomes a restart. The
camera's own back-off keeps retrying meanwhile; the watchdog, not the back-off,
decides when the process is restarted, and the log says when it stops (and
starts again) feeding systemd.
"""

from __future__ import annotations

import logging
import os

from trapd.clock import Clock

log = logging.getLogger(__name__)

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
        self._starved = False
        self.pings = 0

    def tick(self, last_frame_ns: int | None) -> bool:
        """Ping if due and the last frame is fresh; True if a ping went out."""
        if self.interval_ns is None:
            return False
        now = self._clock.monotonic_ns()
        if last_frame_ns is None or now - last_frame_ns > self.interval_ns:
            if not self._starved:
                self._starved = True
                log.error("watchdog: no camera frame %s: not pinging systemd, which restarts "
                          "trapd when WatchdogSec (%.0f s) passes without a ping",
                          "yet" if last_frame_ns is None
                          else f"for {(now - last_frame_ns) / 1e9:.1f} s", self.interval_ns / 1e9)
            return False
        if self._starved:
            self._starved = False
            log.warning("watchdog: camera frames again, pinging systemd again")
        if self._last_ping_ns is not None and now - self._last_ping_ns < self.interval_ns // 2:
            return False
        self._notify("WATCHDOG=1")
        self._last_ping_ns = now
        self.pings += 1
        return True
