"""The IR lamp as the scene sees it: a MockFactory output pin with a history.

trapd switches the lamp through gpiozero (OutputDevice or PWMOutputDevice);
this pin records every level with the simulation clock's time, and the scene
asks `level_at(t)` for the instant it renders (mid-exposure), so a frame
exposed before the switch is dark and one after it is lit.
"""

from __future__ import annotations

import bisect

from gpiozero.pins.mock import MockPin


class LampPin(MockPin):
    """Use with `factory.pin(n, pin_class=LampPin, clock=clock)`. An on/off
    output (MockFactory hands PWM devices a MockPWMPin only when the factory's
    own pin_class is one, so a dimmed lamp is not simulated)."""

    def __init__(self, factory, info, clock=None):
        self._clock = clock
        self.history_ns: list[int] = []
        self.levels: list[float] = []
        super().__init__(factory, info)

    def _set_state(self, value):
        super()._set_state(value)
        if self._clock is not None:
            now = self._clock.monotonic_ns()
            if self.history_ns and self.history_ns[-1] == now:
                self.levels[-1] = float(self.state)
            else:
                self.history_ns.append(now)
                self.levels.append(float(self.state))

    def level_at(self, t_ns: int) -> float:
        i = bisect.bisect_right(self.history_ns, t_ns)
        return self.levels[i - 1] if i else 0.0


def attach_lamp(scene, factory, pin: int | None, clock):
    """Wire a lamp pin to the scene; None if the station has no lamp."""
    if pin is None:
        return None
    lamp = factory.pin(pin, pin_class=LampPin, clock=clock)
    scene.lamp = lamp.level_at
    return lamp
