"""Setup mode: when the setup page may be open.

On for `after_boot_s` after the daemon starts, for `session_s` after a press
of the setup button (a gpiozero Button on `button_pin`, to ground), or for
the time `trapd setup` asks over the link; off when the time is up. Time is
the trap's Clock (monotonic for the deadline, so setting the wall clock from
the phone does not shorten or stretch the session).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from gpiozero import Button
from gpiozero.exc import GPIOZeroError

from trapd.clock import Clock
from trapd.config_setup import SetupConfig
from trapd.errors import GpioUnavailable

log = logging.getLogger(__name__)

NS = 1_000_000_000
BOOT, BUTTON, COMMAND = "boot", "button", "command"


class SetupMode:
    def __init__(self, config: SetupConfig, clock: Clock, pin_factory=None,
                 on_open: Callable[[str], None] | None = None) -> None:
        self._clock = clock
        self._session_s = config.session_s
        self._lock = threading.Lock()
        self._until_ns: int | None = None
        self._why: str | None = None
        self.on_open = on_open        # e.g. show the LED code; called outside the lock
        self._button = None
        if config.button_pin is not None:
            try:
                self._button = Button(config.button_pin, pin_factory=pin_factory)
            except (GPIOZeroError, OSError, RuntimeError) as exc:
                raise GpioUnavailable(f"cannot open the setup button on GPIO{config.button_pin}: "
                                      f"{exc}") from exc
            self._button.when_pressed = lambda: self.open(BUTTON, self._session_s)
        if config.after_boot_s:
            self.open(BOOT, config.after_boot_s)

    def open(self, why: str, seconds: float) -> dict:
        """Setup mode on for `seconds` from now (never shortening a longer session)."""
        until = self._clock.monotonic_ns() + int(seconds * NS)
        with self._lock:
            if self._until_ns is None or until > self._until_ns or not self._active_locked():
                self._until_ns, self._why = until, why
        log.info("setup mode on (%s) for %.0f s", why, seconds)
        if self.on_open:
            self.on_open(why)
        return self.state()

    @property
    def active(self) -> bool:
        with self._lock:
            return self._active_locked()

    def _active_locked(self) -> bool:
        if self._until_ns is None:
            return False
        if self._clock.monotonic_ns() < self._until_ns:
            return True
        log.info("setup mode off (%s session ended)", self._why)
        self._until_ns = self._why = None
        return False

    def state(self) -> dict:
        """{"active", "until_wall_ns", "why"} as the link's mode() gives it."""
        with self._lock:
            if not self._active_locked():
                return {"active": False, "until_wall_ns": None, "why": None}
            left_ns = self._until_ns - self._clock.monotonic_ns()
            return {"active": True, "until_wall_ns": self._clock.wall_ns() + left_ns,
                    "why": self._why}

    def close(self) -> None:
        if self._button is not None:
            self._button.close()
