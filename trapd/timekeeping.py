"""Honest time: is the kernel clock synchronised, and did the wall clock jump?

Most Pis have no real-time clock: until NTP (or a GPS) sets it, the wall clock
starts from the last saved time (fake-hwclock) and is wrong by however long
the trap was off. Two facts are recorded per event so an export can say so:

- `kernel_clock_synchronised()` asks the kernel through adjtimex(2) (read-only,
  modes = 0, no privileges needed): the STA_UNSYNC status bit (or the
  TIME_ERROR return) means no time source has disciplined the clock;
- `WallClockWatch` compares wall - monotonic between observations: the
  monotonic clock never steps, so a change in that offset is a wall-clock
  step (NTP's first sync, a technician's `date -s`), while NTP's slewing
  (at most 500 ppm) stays far below the threshold between frames.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

NS = 1_000_000_000
STA_UNSYNC = 0x0040      # <linux/timex.h>: clock not synchronised
TIME_ERROR = 5           # adjtimex return value: clock not synchronised
# A step smaller than this between two frames is not reported as a jump.
WALL_JUMP_THRESHOLD_NS = 1 * NS


class _Timex(ctypes.Structure):
    """The head of `struct timex` up to `status`; the rest is padding we never read."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("_rest", ctypes.c_byte * 256)]


def kernel_clock_synchronised() -> bool | None:
    """True if the kernel's clock is disciplined by a time source, False if
    not, None where adjtimex is unavailable (not Linux)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    try:
        adjtimex = ctypes.CDLL(libc_name, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    timex = _Timex()  # zeroed: modes = 0 reads without changing anything
    state = adjtimex(ctypes.byref(timex))
    if state == -1:
        log.warning("adjtimex failed (errno %d): clock sync status unknown", ctypes.get_errno())
        return None
    return state != TIME_ERROR and not timex.status & STA_UNSYNC


class WallClockWatch:
    """Spots wall-clock steps by watching wall - monotonic between observations."""

    def __init__(self, threshold_ns: int = WALL_JUMP_THRESHOLD_NS) -> None:
        self.threshold_ns = threshold_ns
        self._offset_ns: int | None = None

    def observe(self, monotonic_ns: int, wall_ns: int) -> int:
        """The step (ns, signed) since the previous observation, or 0."""
        offset = wall_ns - monotonic_ns
        previous, self._offset_ns = self._offset_ns, offset
        if previous is None:
            return 0
        step = offset - previous
        return step if abs(step) >= self.threshold_ns else 0
