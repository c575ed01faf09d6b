"""The one clock every wait and timestamp in trapd goes through.

`SystemClock` is the real thing. `VirtualClock` (used by hw_sim) is a
discrete-event clock: simulated hardware schedules callbacks with `call_at`,
and time only moves when someone sleeps or calls `advance_to`, so an hour of
scenario runs in seconds and every run is repeatable. `RealtimeClock` runs the
same schedule at the pace of the wall clock, for honest latency figures.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Callable, Protocol

from trapd.errors import TrapdError
from trapd.timekeeping import kernel_clock_synchronised


class Clock(Protocol):
    def monotonic_ns(self) -> int:
        """Monotonic time; the clock of the camera's SensorTimestamp."""

    def wall_ns(self) -> int:
        """Wall-clock (UTC) time in ns since the epoch."""

    def sleep(self, seconds: float) -> None:
        """Wait; in virtual time this runs whatever is due meanwhile."""

    def is_synchronised(self) -> bool | None:
        """Is the wall clock set from a time source (NTP, GPS)? None = unknown."""

    def wait_for(self, event: threading.Event, timeout_s: float) -> bool:
        """Block until `event` is set or `timeout_s` passes (no polling); True if set."""

    def set_wall_ns(self, wall_ns: int) -> None:
        """Set the wall clock (a technician's confirmed time); ClockError if not allowed."""


class ClockError(TrapdError):
    """The wall clock cannot be set (no CAP_SYS_TIME)."""


class SystemClock:
    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ns(self) -> int:
        return time.time_ns()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def is_synchronised(self) -> bool | None:
        return kernel_clock_synchronised()

    def wait_for(self, event: threading.Event, timeout_s: float) -> bool:
        return event.wait(max(0.0, timeout_s))

    def set_wall_ns(self, wall_ns: int) -> None:
        try:
            time.clock_settime_ns(time.CLOCK_REALTIME, wall_ns)
        except PermissionError:
            raise ClockError("cannot set the clock: trapd may not (it needs CAP_SYS_TIME; "
                             "trapd.service forbids it with ProtectClock=yes: see docs/setup.md)"
                             ) from None
        except OSError as exc:
            raise ClockError(f"cannot set the clock: {exc.strerror or exc}") from None


class VirtualClock:
    """Simulated time. Callbacks run in the caller's thread, in time order,
    with `monotonic_ns()` reading exactly their scheduled time."""

    def __init__(self, start_monotonic_ns: int = 1_000_000_000_000, start_wall_ns: int = 0):
        self._now = start_monotonic_ns
        self._wall_offset = (start_wall_ns or time.time_ns()) - start_monotonic_ns
        self._due: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._lock = threading.RLock()
        self.synchronised: bool | None = True  # hw_sim scenarios may say otherwise

    def is_synchronised(self) -> bool | None:
        return self.synchronised

    def monotonic_ns(self) -> int:
        return self._now

    def wall_ns(self) -> int:
        return self._now + self._wall_offset

    def step_wall(self, delta_ns: int, synchronised: bool | None = None) -> None:
        """Make the wall clock jump (as NTP or a technician would); NTP's first
        step also makes the clock synchronised (`synchronised=True`)."""
        self._wall_offset += delta_ns
        if synchronised is not None:
            self.synchronised = synchronised

    def set_wall_ns(self, wall_ns: int) -> None:
        self._wall_offset = wall_ns - self._now

    def call_at(self, t_ns: int, callback: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._due, (max(t_ns, self._now), next(self._order), callback))

    def sleep(self, seconds: float) -> None:
        self.advance_to(self._now + max(0, int(seconds * 1e9)))

    def wait_for(self, event: threading.Event, timeout_s: float) -> bool:
        """Run what is due, in order, until `event` is set or the timeout passes."""
        deadline = self._now + max(0, int(timeout_s * 1e9))
        while not event.is_set():
            with self._lock:
                if not self._due or self._due[0][0] > deadline:
                    break
                when, _, callback = heapq.heappop(self._due)
            self._pace_to(when)
            self._now = max(self._now, when)
            callback()
        if not event.is_set():
            self._pace_to(deadline)
            self._now = max(self._now, deadline)
        return event.is_set()

    def advance_to(self, t_ns: int) -> None:
        while True:
            with self._lock:
                if not self._due or self._due[0][0] > t_ns:
                    break
                when, _, callback = heapq.heappop(self._due)
            self._pace_to(when)
            self._now = max(self._now, when)
            callback()
        self._pace_to(t_ns)
        self._now = max(self._now, t_ns)

    def _pace_to(self, t_ns: int) -> None:
        """Virtual time does not wait."""


class RealtimeClock(VirtualClock):
    """The simulated schedule played at wall-clock pace: `monotonic_ns()` is
    the real monotonic clock, so measured latencies include real work."""

    def __init__(self) -> None:
        super().__init__(start_monotonic_ns=time.monotonic_ns(), start_wall_ns=time.time_ns())

    def monotonic_ns(self) -> int:
        self._now = max(self._now, time.monotonic_ns())
        return self._now

    def _pace_to(self, t_ns: int) -> None:
        delay = t_ns - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
