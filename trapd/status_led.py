"""The degraded state as a blink code on the status LED, for the technician
who reaches the trap without a phone or laptop.

Healthy: dark (a light could scare animals or draw people). Degraded: every
PERIOD_S, short flashes, as many as the code of the most serious state.
"""

from __future__ import annotations

import itertools

from gpiozero import LED

from trapd.health import (CAMERA_UNAVAILABLE, INDEX_DAMAGED, INDEX_FULL, STORAGE_FULL,
                          STORAGE_LINK)

TICK_S = 0.25        # one flash, or one gap between flashes
PERIOD_S = 20.0
# Flashes per state; the most serious (highest) is shown when several hold.
BLINK_CODES = {STORAGE_FULL: 1, INDEX_FULL: 2, STORAGE_LINK: 3, INDEX_DAMAGED: 4,
               CAMERA_UNAVAILABLE: 5}


def blink_code(degraded: dict) -> int:
    return max((BLINK_CODES.get(state, 6) for state in degraded), default=0)


def pattern(code: int):
    """LED values, one per TICK_S, repeating every PERIOD_S."""
    flashes = [1, 0] * code
    return itertools.cycle(flashes + [0] * (int(PERIOD_S / TICK_S) - len(flashes)))


class StatusLed:
    def __init__(self, pin: int, pin_factory=None) -> None:
        self._led = LED(pin, pin_factory=pin_factory)
        self._led.source_delay = TICK_S
        self.code = 0

    def show(self, degraded: dict) -> None:
        code = blink_code(degraded)
        if code == self.code:
            return
        self.code = code
        self._led.source = None
        self._led.off()
        if code:
            self._led.source = pattern(code)

    def close(self) -> None:
        self._led.source = None
        self._led.close()
