"""A PIR sensor: its output pin goes high when a warm body is in its zone.

Like an HC-SR501 in retriggering mode: the output rises `delay_s` after a warm
body enters the lens's zone, stays high while it is there and for `hold_s`
after it leaves. Cold or out-of-range animals are missed; wind-warmed
vegetation gives false triggers. With footage, a pass is a run of frames
labelled `animal` (the labels say nothing of where, so the zone is not used).
The output drives a gpiozero MockFactory
pin at the scheduled instants of the simulation clock, so trapd's own
DigitalInputDevice callback runs exactly as it would on lgpio's thread.
"""

from __future__ import annotations

from gpiozero.pins.mock import MockPin

from hw_sim.footage import FootagePass
from hw_sim.scenario import AnimalPass, PirSpec

SCAN_STEP_S = 0.02


class PirOutputPin(MockPin):
    """A GPIO wired to a PIR's push-pull output: the sensor drives the line,
    so the input's pull resistor does not change its level (a plain MockPin
    snaps to its pull when a device opens it). Use with
    `factory.pin(n, pin_class=PirOutputPin)` before the device opens it."""

    def _set_pull(self, value):
        driven = self.state
        super()._set_pull(value)
        if driven != self.state:
            self.drive_high() if driven else self.drive_low()


def _in_zone_intervals(animal: AnimalPass, zone: tuple[float, float]) -> list[tuple[float, float]]:
    """When the animal's body overlaps the zone, found by scanning its pass."""
    intervals, start = [], None
    steps = int(animal.cross_s / SCAN_STEP_S) + 1
    for i in range(steps + 1):
        s = animal.enter_s + i * SCAN_STEP_S
        box = animal.box_at(s)
        inside = box is not None and box[2] > zone[0] and box[0] < zone[1]
        if inside and start is None:
            start = s
        elif not inside and start is not None:
            intervals.append((start, s))
            start = None
    if start is not None:
        intervals.append((start, animal.leave_s))
    return intervals


def output_intervals(spec: PirSpec, animals: tuple[AnimalPass, ...]) -> list[tuple[float, float]]:
    """(rise_s, fall_s) of the PIR output over the scenario, merged."""
    raw = []
    for animal in animals:
        if animal.warm and animal.in_pir_range:
            raw += [(a + spec.delay_s, b + spec.hold_s) for a, b in _in_zone_intervals(animal, spec.zone)]
    return _merged(raw + _false_triggers(spec))


def footage_output_intervals(spec: PirSpec, passes: tuple[FootagePass, ...]) -> list[tuple[float, float]]:
    """(rise_s, fall_s) of the PIR output over footage: each labelled pass, and the false triggers."""
    raw = [(p.enter_s + spec.delay_s, p.leave_s + spec.hold_s) for p in passes]
    return _merged(raw + _false_triggers(spec))


def _false_triggers(spec: PirSpec) -> list[tuple[float, float]]:
    return [(f.at_s, f.at_s + f.duration_s) for f in spec.false_triggers]


def _merged(raw: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for rise, fall in sorted(raw):
        if merged and rise <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], fall))
        else:
            merged.append((rise, fall))
    return merged


class PirModel:
    def __init__(self, spec: PirSpec, animals: tuple[AnimalPass, ...], pin, clock,
                 start_ns: int, footage_passes: tuple[FootagePass, ...] | None = None) -> None:
        self.intervals = (output_intervals(spec, animals) if footage_passes is None
                          else footage_output_intervals(spec, footage_passes))
        self._pin = pin
        self._clock = clock
        self._start_ns = start_ns

    def schedule(self) -> None:
        for rise, fall in self.intervals:
            self._clock.call_at(self._start_ns + int(rise * 1e9), self._pin.drive_high)
            self._clock.call_at(self._start_ns + int(fall * 1e9), self._pin.drive_low)
