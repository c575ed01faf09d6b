"""config.yaml sections `night`, `schedule` and `power` (read by trapd/operating.py
and trapd/schedule.py); importable from trapd.config like every section."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from trapd.schema import Problem
from trapd.schema import Rule as _Rule
from trapd.schema import Section as _Section
from trapd.schema import choice as _choice
from trapd.schema import integer as _integer
from trapd.schema import is_number as _is_number
from trapd.schema import number as _number
from trapd.schema import setting as _setting

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
POWER_MODES = ("streaming", "standby")
_TIME_OF_DAY = re.compile(r"(?:(sunrise|sunset)([+-]))?([0-9]{2}):([0-9]{2})|(sunrise|sunset)")


def parse_time_of_day(text: str) -> tuple[str | None, int] | None:
    """'HH:MM' -> (None, minutes after midnight); 'sunset-00:30' -> ('sunset', -30);
    'sunrise' -> ('sunrise', 0); None if malformed."""
    match = _TIME_OF_DAY.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    anchor, sign, hours, minutes, bare = match.groups()
    if bare:
        return bare, 0
    if int(hours) > 23 or int(minutes) > 59:
        return None
    offset = int(hours) * 60 + int(minutes)
    return (anchor, -offset if sign == "-" else offset) if anchor else (None, offset)


@dataclass(frozen=True)
class Window:
    """One operating window: from `start` to `end` local time (crossing midnight
    if end < start), on `days`, in power `mode`, with timelapse every `timelapse_s`."""

    start: str
    end: str
    days: tuple[str, ...] = WEEKDAYS
    mode: str | None = None          # None = power.mode
    timelapse_s: float | None = None


_WINDOW_KEYS = ("start", "end", "days", "mode", "timelapse_s")


def _is_window(entry: Any) -> bool:
    if not isinstance(entry, dict) or not set(entry) <= set(_WINDOW_KEYS):
        return False
    if parse_time_of_day(entry.get("start")) is None or parse_time_of_day(entry.get("end")) is None:
        return False
    days = entry.get("days", list(WEEKDAYS))
    if not (isinstance(days, list) and days and all(d in WEEKDAYS for d in days)):
        return False
    if entry.get("mode") not in (None, *POWER_MODES):
        return False
    lapse = entry.get("timelapse_s")
    return lapse is None or (_is_number(lapse) and 1 <= lapse <= 86400)


_WINDOWS_RULE = _Rule(
    expected=("a list of windows, each '- {start: TIME, end: TIME}' with optional days "
              "[mon, ..., sun], mode (streaming or standby) and timelapse_s (1 to 86400); "
              "TIME is 'HH:MM' local time or relative to the sun: 'sunset-00:30', "
              "'sunrise+01:00', 'sunset'"),
    is_valid=lambda v: isinstance(v, list) and all(_is_window(e) for e in v),
    convert=lambda v: tuple(Window(**{**e, "days": tuple(e.get("days", WEEKDAYS))}) for e in v),
)


@dataclass(frozen=True)
class NightConfig(_Section):
    # How day and night are told apart: the camera's own light estimate (Lux,
    # with hysteresis) or the sun's elevation at station.location.
    detect: str = _setting(_choice(("camera", "sun")), "camera")
    night_below_lux: float = _setting(_number(0, 10000, "lux"), 5.0)
    day_above_lux: float = _setting(_number(0, 10000, "lux"), 40.0)
    # A reading must hold this long before day/night switches.
    switch_after_s: float = _setting(_number(0, 600, "seconds"), 3.0)
    # IR lamp at night: off, continuous, or only during events (saves power,
    # draws fewer insects; pre-trigger frames are then unlit).
    lamp: str = _setting(_choice(("off", "continuous", "events")), "continuous")
    # PWM duty cycle 0.05 to 1 for a dimmable lamp, null = plain on/off output.
    lamp_level: float | None = _setting(_number(0.05, 1, "(duty cycle)", nullable=True), None)
    # Longest exposure at night, so a walking animal is not a blur.
    max_exposure_us: int = _setting(_integer(100, 1_000_000, "microseconds"), 20000)

    def validate(self) -> list[Problem]:
        if self.day_above_lux > self.night_below_lux:
            return []
        return [Problem("day_above_lux", None, self.day_above_lux,
                        f"more than night_below_lux ({self.night_below_lux:g}): the gap is "
                        "the hysteresis that stops the lamp from flickering")]


@dataclass(frozen=True)
class ScheduleConfig(_Section):
    # [] = always operating.
    windows: tuple[Window, ...] = _setting(_WINDOWS_RULE, ())


@dataclass(frozen=True)
class PowerConfig(_Section):
    # streaming: camera always on, pre-trigger frames, fastest; standby: camera
    # stopped while idle, started on the PIR edge (no pre-trigger frames).
    mode: str = _setting(_choice(POWER_MODES), "streaming")
    # Battery thresholds (need sensors.battery_adc_channel): below low the
    # trap goes to standby, below critical it stops cleanly.
    battery_low_v: float | None = _setting(_number(0, 60, "volts", nullable=True), None)
    battery_critical_v: float | None = _setting(_number(0, 60, "volts", nullable=True), None)

    def validate(self) -> list[Problem]:
        low, critical = self.battery_low_v, self.battery_critical_v
        if low is None or critical is None or critical < low:
            return []
        return [Problem("battery_critical_v", None, critical, f"less than battery_low_v ({low:g})")]
