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
import re

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


_UNITS_SHIFT = re.compile(r"([+-])(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_CLOCK_SHIFT = re.compile(r"([+-])(\d+):([0-5]\d)(?::([0-5]\d))?")


def parse_shift(text: str) -> int:
    """A signed whole-second duration in ns: '+1d2h', '-86400s', '-30m', '+01:30:00'.

    Raises ValueError naming the accepted forms."""
    text = text.strip()
    units = _UNITS_SHIFT.fullmatch(text)
    if units and any(units.groups()[1:]):
        days, hours, minutes, seconds = (int(g or 0) for g in units.groups()[1:])
    elif clock := _CLOCK_SHIFT.fullmatch(text):
        days, (hours, minutes, seconds) = 0, (int(g or 0) for g in clock.groups()[1:])
    else:
        raise ValueError(f"shift {text!r}: expected a sign and a duration, e.g. +1h, -1d, "
                         "+2h30m, -45s or +01:30:00")
    total_s = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return (-total_s if text.startswith("-") else total_s) * NS


def format_shift(shift_ns: int) -> str:
    sign = "-" if shift_ns < 0 else "+"
    minutes, seconds = divmod(abs(shift_ns) // NS, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"
