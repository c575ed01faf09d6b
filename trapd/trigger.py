"""Trigger stage: PIR edges in, timestamped `Trigger`s out.

The PIR is a gpiozero `DigitalInputDevice` with edge callbacks, not
`MotionSensor`, whose 10 Hz polling adds 0-100 ms and drops short pulses.
The callback runs on the pin factory's thread (lgpio's single FIFO thread on a
Pi, the caller's thread under MockFactory); it only timestamps the edge and
keeps it, so it never blocks other GPIO events. Only the earliest edge not yet
taken is kept; later ones are counted (`coalesced_edges`), so a PIR chattering
at kHz costs constant memory and cannot build a backlog of stale triggers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from gpiozero import DigitalInputDevice
from gpiozero.exc import GPIOZeroError

from trapd.clock import Clock
from trapd.errors import GpioUnavailable

PIR = "pir"
TIMER = "timer"
MANUAL = "manual"


@dataclass(frozen=True)
class Trigger:
    source: str
    t_monotonic_ns: int
    t_wall_ns: int


class PirTrigger:
    """Owns the PIR input. `get()` hands out the earliest edge not yet taken;
    edges while one is waiting are counted and coalesced into it (a PIR
    chattering at 1 kHz must not build a backlog)."""

    def __init__(self, pin: int, clock: Clock, pin_factory=None) -> None:
        self._clock = clock
        self._pending: Trigger | None = None
        self._pending_changed = threading.Condition()
        self.coalesced_edges = 0
        # Set on every rising edge: a stopped camera (standby) waits on it.
        self.edge = threading.Event()
        # Called with every rising edge's Trigger, coalesced ones too (the setup
        # page's walk test); each must return at once (the pin factory's thread).
        self.edge_listeners: list = []
        try:
            self._device = DigitalInputDevice(
                pin, pull_up=False, bounce_time=None, pin_factory=pin_factory
            )
        except (GPIOZeroError, OSError, RuntimeError) as exc:
            raise GpioUnavailable(f"cannot open the PIR on GPIO{pin}: {exc}") from exc
        self._device.when_activated = self._on_rising_edge
        if self._device.is_active:
            # gpiozero fires only on edges: an animal already in front of the
            # sensor at start-up would otherwise go unrecorded.
            self._on_rising_edge()

    @property
    def is_active(self) -> bool:
        return bool(self._device.is_active)

    def _on_rising_edge(self) -> None:
        edge = Trigger(PIR, self._clock.monotonic_ns(), self._clock.wall_ns())
        with self._pending_changed:
            if self._pending is not None:
                self.coalesced_edges += 1
            else:
                self._pending = edge
                self._pending_changed.notify_all()
        self.edge.set()
        for listener in self.edge_listeners:
            listener(edge)

    def has_pending(self) -> bool:
        return self._pending is not None

    def get(self, timeout_s: float | None = 0) -> Trigger | None:
        """The earliest edge not yet taken, or None if none arrives within
        `timeout_s` (0 = poll, None = wait for ever)."""
        with self._pending_changed:
            if timeout_s != 0:
                self._pending_changed.wait_for(lambda: self._pending is not None, timeout_s)
            trigger, self._pending = self._pending, None
            return trigger

    def close(self) -> None:
        self._device.close()
