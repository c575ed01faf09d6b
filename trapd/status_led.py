"""The status LED: what a technician without a phone or laptop can read.

All the time: dark while healthy (a light could scare animals or draw
people); degraded: every PERIOD_S, short flashes, as many as the code of the
most serious state (BLINK_CODES).

At start-up and on demand (`trapd setup`, the setup button) the trap's
status is shown for about SHOW_S, its pattern repeated: one long glow for
healthy, else the most serious of no camera, card full, another degraded
state, battery low, clock not synchronised (STATUS_PATTERNS; the README has
the table). While setup mode is on, each PIR edge gives one short flash
(the walk test).

One generator drives the LED (gpiozero's `source`, one value per TICK_S):
what was asked for last (a status code, an edge flash) plays first, then
the degraded pattern resumes.
"""

from __future__ import annotations

import itertools
import threading

from gpiozero import LED

from trapd.health import (CAMERA_UNAVAILABLE, INDEX_DAMAGED, INDEX_FULL, STORAGE_FULL,
                          STORAGE_LINK)

TICK_S = 0.25        # one flash, or one gap between flashes
PERIOD_S = 20.0
SHOW_S = 10.0        # a status code is repeated for about this long
# Flashes per state; the most serious (highest) is shown when several hold.
BLINK_CODES = {STORAGE_FULL: 1, INDEX_FULL: 2, STORAGE_LINK: 3, INDEX_DAMAGED: 4,
               CAMERA_UNAVAILABLE: 5}

# The status codes, most serious first; DEGRADED is any other degraded state.
HEALTHY, NO_CAMERA, CARD_FULL, DEGRADED, BATTERY_LOW, CLOCK_NOT_SYNCED = (
    "healthy", "no camera", "card full", "degraded", "battery low", "clock not synchronised")
_SHORT, _LONG, _PAUSE = [1, 0], [1, 1, 1, 1, 0], [0] * 8   # 0.25 s flash, 1 s glow, 2 s pause
STATUS_PATTERNS = {
    HEALTHY: [1] * 8 + [0] * 4,                     # one 2 s glow
    NO_CAMERA: _SHORT * 5 + _PAUSE,                 # 5 short, as its degraded code
    CARD_FULL: _SHORT * 1 + _PAUSE,                 # 1 short, as its degraded code
    DEGRADED: _SHORT * 2 + _LONG + _PAUSE,          # 2 short, 1 long
    BATTERY_LOW: _LONG * 3 + _PAUSE,                # 3 long
    CLOCK_NOT_SYNCED: _LONG + _SHORT * 2 + _PAUSE,  # 1 long, 2 short
}
EDGE_FLASH = [1, 0]
MAX_WAITING_FLASHES = 3   # a chattering PIR must not queue minutes of flashes


def blink_code(degraded: dict) -> int:
    return max((BLINK_CODES.get(state, 6) for state in degraded), default=0)


def status_code(degraded: dict, battery_low: bool, clock_synced: bool | None) -> str:
    """The one status to show: the most serious that holds, else healthy."""
    if CAMERA_UNAVAILABLE in degraded:
        return NO_CAMERA
    if STORAGE_FULL in degraded:
        return CARD_FULL
    if degraded:
        return DEGRADED
    if battery_low:
        return BATTERY_LOW
    if clock_synced is False:
        return CLOCK_NOT_SYNCED
    return HEALTHY


def pattern(code: int):
    """LED values, one per TICK_S, repeating every PERIOD_S."""
    flashes = [1, 0] * code
    return itertools.cycle(flashes + [0] * (int(PERIOD_S / TICK_S) - len(flashes)))


def status_pattern(status: str, seconds: float = SHOW_S) -> list[int]:
    """`status`'s pattern repeated for about `seconds` (at least once), then dark."""
    once = STATUS_PATTERNS[status]
    repeats = max(1, round(seconds / TICK_S / len(once)))
    return once * repeats


class StatusLed:
    def __init__(self, pin: int, pin_factory=None) -> None:
        self._led = LED(pin, pin_factory=pin_factory)
        self._lock = threading.Lock()
        self._shown: list[int] = []         # asked-for values, played before the degraded pattern
        self._flashes = 0                   # edge flashes waiting to be played after them
        self._degraded = pattern(0)
        self.code = 0
        self.status: str | None = None      # the last status code shown
        self._playing = False               # a source thread is feeding the LED
        self._led.source_delay = TICK_S

    def show(self, degraded: dict) -> None:
        """The degraded states changed (Health's listener)."""
        code = blink_code(degraded)
        if code == self.code:
            return
        with self._lock:
            self.code = code
            self._degraded = pattern(code)      # its flashes start now
        self._play()

    def show_status(self, status: str, seconds: float = SHOW_S) -> None:
        """Show a status code (STATUS_PATTERNS) for about `seconds`, from now."""
        with self._lock:
            self.status = status
            self._shown = status_pattern(status, seconds)
        self._play()

    def flash(self) -> None:
        """One short flash, after what is being shown (a PIR edge in the walk test)."""
        with self._lock:
            self._flashes = min(self._flashes + 1, MAX_WAITING_FLASHES)
        self._play()

    def _play(self) -> None:
        """Feed the LED from a source thread while there is anything to show. A healthy,
        dark LED has none: nothing wakes the CPU four times a second for it."""
        with self._lock:
            if self._playing:
                return
            self._playing = True
        self._led.source = self._values()       # outside the lock: this joins the old thread

    def _values(self):
        yield 0     # one dark tick first: what is asked in the same instant is shown whole
        while True:
            with self._lock:
                if not self._shown and self._flashes:
                    self._flashes -= 1
                    self._shown = list(EDGE_FLASH)
                if not self._shown and self.code == 0:
                    self._playing = False
                    break
                value = self._shown.pop(0) if self._shown else next(self._degraded)
            yield value
        yield 0                                 # dark when it stops

    def close(self) -> None:
        self._led.source = None
        self._led.close()
