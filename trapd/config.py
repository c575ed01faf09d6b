"""Load and check the station's config.yaml.

Technicians edit config.yaml on site, so every mistake is reported with its
line, its key path, the value found and what would be valid, and all mistakes
are reported at once (`ConfigError.problems`), not one per attempt.

The YAML is composed into a node tree with PyYAML's safe loader (nothing in
the file is ever executed) and the tree is walked against the frozen
dataclasses below. Each setting field carries a `_Rule` in its metadata (what
it accepts and how to say so); each section field names its dataclass. Rules
that link fields live in each section's `validate()`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import reprlib
from dataclasses import dataclass, field, fields
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from trapd.errors import ConfigError
from trapd.location import EXACT, PUBLISH_CHOICES

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"

# Full resolution of the Raspberry Pi HQ camera (IMX477): no stream is larger.
_SENSOR_SIZE_PX = (4056, 3040)
# Smallest main stream worth saving as a photo.
_MIN_MAIN_SIZE_PX = (64, 48)
# GPIO numbers (BCM numbering) usable on the Pi's 40-pin header.
_FIRST_GPIO, _LAST_GPIO = 2, 27
# Buffers the camera must always have free to keep capturing; the rest may be
# held as pre-trigger frames or lent to the encoders.
CAMERA_FREE_BUFFERS = 2
# Time zones in use on Earth run from UTC-12:00 to UTC+14:00.
_MIN_UTC_OFFSET_MIN, _MAX_UTC_OFFSET_MIN = -12 * 60, 14 * 60
_UTC_OFFSET_PATTERN = re.compile(r"([+-])([0-9]{2}):([0-9]{2})")

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_NULL_TAG = "tag:yaml.org,2002:null"


class _NoValue:
    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE = _NoValue()
"""`Problem.value` when there is no value to show (missing or unknown key, ...)."""

_INVALID = object()  # what the reader returns for a value it has reported


# --------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------

_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = 80
_SHORT_REPR.maxother = 80


def _show(value: object) -> str:
    """A value as a technician would recognise it from the YAML, kept short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, tuple):
        value = list(value)
    return _SHORT_REPR.repr(value)


@dataclass(frozen=True)
class Problem:
    """One mistake in a config file.

    `path` is the dotted key path ("filter.pixel_threshold"), or "" for the
    file as a whole; `line` is 1-based, None when no line applies. `expected`
    says what a valid value looks like; when `value is NO_VALUE` (a missing,
    unknown or duplicate key, a YAML syntax error, an unreadable file) it is
    the whole message.
    """

    path: str
    line: int | None
    value: object
    expected: str
    source: str = "config.yaml"

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        if self.value is NO_VALUE:
            subject = f"{self.path}: " if self.path else ""
            return f"{where}: {subject}{self.expected}"
        return f"{where}: {self.path} = {_show(self.value)}: expected {self.expected}"


# --------------------------------------------------------------------------
# Rules: what one setting accepts
# --------------------------------------------------------------------------


def _unchanged(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class _Rule:
    """What one setting accepts, and how to say so in an error message."""

    expected: str
    is_valid: Callable[[Any], bool]
    convert: Callable[[Any], Any] = _unchanged
    nullable: bool = False

    def accepts(self, value: Any) -> bool:
        return (self.nullable and value is None) or self.is_valid(value)

    def to_field_value(self, value: Any) -> Any:
        return None if value is None else self.convert(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_text(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _describe_range(noun: str, low: float, high: float, unit: str, nullable: bool) -> str:
    if high == math.inf:
        bounds = f"of at least {_number_text(low)}"
    else:
        bounds = f"from {_number_text(low)} to {_number_text(high)}"
    text = " ".join(part for part in (noun, bounds, unit) if part)
    return f"{text}, or null" if nullable else text


def _integer(
    low: int, high: float, unit: str = "", *, nullable: bool = False, odd: bool = False
) -> _Rule:
    return _Rule(
        expected=_describe_range("an odd integer" if odd else "an integer", low, high, unit, nullable),
        is_valid=lambda v: _is_int(v) and low <= v <= high and (not odd or v % 2 == 1),
        nullable=nullable,
    )


def _integer_choice(choices: tuple[int, ...], unit: str) -> _Rule:
    return _Rule(
        expected=f"{' or '.join(map(str, choices))} {unit}",
        is_valid=lambda v: _is_int(v) and v in choices,
    )


def _number(low: float, high: float, unit: str = "", *, nullable: bool = False) -> _Rule:
    return _Rule(
        expected=_describe_range("a number", low, high, unit, nullable),
        is_valid=lambda v: _is_number(v) and low <= v <= high,
        convert=float,
        nullable=nullable,
    )


def _choice(choices: tuple[str, ...]) -> _Rule:
    return _Rule(expected=f"one of {', '.join(choices)}", is_valid=lambda v: v in choices)


def _flag() -> _Rule:
    return _Rule(expected="true or false", is_valid=lambda v: isinstance(v, bool))


def _text(pattern: str, expected: str) -> _Rule:
    compiled = re.compile(pattern)
    return _Rule(
        expected=expected,
        is_valid=lambda v: isinstance(v, str) and compiled.fullmatch(v) is not None,
    )


def _is_size(value: Any, width_range: tuple[int, int], height_range: tuple[int, int]) -> bool:
    if not (isinstance(value, list) and len(value) == 2):
        return False
    if not all(_is_int(n) and n % 2 == 0 for n in value):
        return False
    width, height = value
    return width_range[0] <= width <= width_range[1] and height_range[0] <= height <= height_range[1]


def _size(width_range: tuple[int, int], height_range: tuple[int, int]) -> _Rule:
    return _Rule(
        expected=(
            "[width, height] in pixels, two even integers: "
            f"width {width_range[0]} to {width_range[1]}, height {height_range[0]} to {height_range[1]}"
        ),
        is_valid=lambda v: _is_size(v, width_range, height_range),
        convert=tuple,
    )


def _utc_offset_minutes(text: str) -> int | None:
    """Minutes east of UTC for '+HH:MM' / '-HH:MM', or None if malformed or off the map."""
    match = _UTC_OFFSET_PATTERN.fullmatch(text)
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    if int(minutes) >= 60:
        return None
    offset = (int(hours) * 60 + int(minutes)) * (-1 if sign == "-" else 1)
    return offset if _MIN_UTC_OFFSET_MIN <= offset <= _MAX_UTC_OFFSET_MIN else None


def _gpio_pin(*, nullable: bool = False) -> _Rule:
    return _integer(_FIRST_GPIO, _LAST_GPIO, "(BCM GPIO number)", nullable=nullable)


_ONE_LINE_OF_TEXT = _text(r"[^\x00-\x1f\x7f]*", "text on one line")

_UTC_OFFSET_RULE = _Rule(
    expected=(
        "text '+HH:MM' or '-HH:MM' from -12:00 to +14:00, in quotes "
        "(unquoted, YAML reads +10:00 as a number)"
    ),
    is_valid=lambda v: isinstance(v, str) and _utc_offset_minutes(v) is not None,
)

_DIRECTORY_RULE = _Rule(
    expected="a non-empty directory path",
    is_valid=lambda v: isinstance(v, str) and v.strip() != "" and "\0" not in v,
)


def _is_fraction(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _is_mask(value: Any) -> bool:
    if isinstance(value, list) and len(value) == 4 and all(_is_fraction(v) for v in value):
        return value[0] < value[2] and value[1] < value[3]
    return (isinstance(value, list) and len(value) >= 3
            and all(isinstance(p, list) and len(p) == 2 and all(_is_fraction(v) for v in p)
                    for p in value))


def _as_polygon(mask: list) -> tuple:
    if len(mask) == 4 and not isinstance(mask[0], list):
        x0, y0, x1, y1 = (float(v) for v in mask)
        return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    return tuple((float(x), float(y)) for x, y in mask)


_MASKS_RULE = _Rule(
    expected=("a list of areas in frame fractions (0 to 1, from the top left): each a rectangle "
              "[x0, y0, x1, y1] or a polygon [[x, y], [x, y], [x, y], ...]"),
    is_valid=lambda v: isinstance(v, list) and all(_is_mask(m) for m in v),
    convert=lambda v: tuple(_as_polygon(m) for m in v),
)


def _setting(rule: _Rule, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field read from one YAML value; no default = required."""
    return field(default=default, metadata={"rule": rule})


def _section(cls: type, *, required: bool = False) -> Any:
    """A dataclass field read from a nested YAML mapping."""
    if required:
        return field(metadata={"section": cls})
    return field(default_factory=cls, metadata={"section": cls})


def _is_required(config_field: dataclasses.Field) -> bool:
    return (
        config_field.default is dataclasses.MISSING
        and config_field.default_factory is dataclasses.MISSING
    )


# --------------------------------------------------------------------------
# Config sections
# --------------------------------------------------------------------------


class _Section:
    """Base of every config section."""

    def validate(self) -> list[Problem]:
        """Rules linking this section's fields; [] when they hold.

        Problem paths are relative to the section and lines are None: the
        reader fills both in from the file.
        """
        return []


@dataclass(frozen=True)
class LocationConfig(_Section):
    latitude: float = _setting(_number(-90, 90, "degrees north (WGS84)"))
    longitude: float = _setting(_number(-180, 180, "degrees east (WGS84)"))
    elevation_m: float | None = _setting(_number(-500, 9000, "metres", nullable=True), None)
    uncertainty_m: int = _setting(_integer(1, math.inf, "metres"), 10)
    # How much of the position leaves the trap (images' GPS, exports): see trapd/location.py.
    publish: str = _setting(_choice(PUBLISH_CHOICES), EXACT)


@dataclass(frozen=True)
class CameraMountConfig(_Section):
    height_m: float | None = _setting(_number(0, 20, "metres above ground", nullable=True), None)
    heading_deg: int | None = _setting(_integer(0, 360, "degrees from north", nullable=True), None)
    tilt_deg: int | None = _setting(_integer(-90, 90, "degrees above level", nullable=True), None)


@dataclass(frozen=True)
class StationConfig(_Section):
    station_id: str = _setting(
        _text(
            r"[A-Za-z0-9-]{1,32}",
            "1 to 32 letters A-Z, digits or '-': no spaces, '/', '.' or '_', because it "
            "starts every file name (<station>_<date>_...) and '_' separates the parts",
        )
    )
    deployment_id: str = _setting(
        _text(
            r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}",
            "1 to 64 letters A-Z, digits, '.', '_' or '-', not starting with '.' "
            "(it names a directory)",
        )
    )
    location: LocationConfig = _section(LocationConfig, required=True)
    camera: CameraMountConfig = _section(CameraMountConfig)
    # Person or organisation, for EXIF Artist/Copyright.
    owner: str = _setting(_ONE_LINE_OF_TEXT, "")
    license: str = _setting(_ONE_LINE_OF_TEXT, "CC-BY-4.0")
    # "auto" = read from the Pi's /proc/cpuinfo at run time.
    serial_number: str = _setting(
        _text(r"[\x20-\x7e]{1,64}", "'auto' or 1 to 64 printable ASCII characters"), "auto"
    )


@dataclass(frozen=True)
class CameraConfig(_Section):
    main_size: tuple[int, int] = _setting(
        _size((_MIN_MAIN_SIZE_PX[0], _SENSOR_SIZE_PX[0]), (_MIN_MAIN_SIZE_PX[1], _SENSOR_SIZE_PX[1])),
        (2028, 1520),
    )
    lores_size: tuple[int, int] = _setting(
        _size((2, _SENSOR_SIZE_PX[0]), (2, _SENSOR_SIZE_PX[1])), (320, 240)
    )
    frame_rate: float = _setting(_number(1, 60, "frames per second"), 10.0)
    rotation_deg: int = _setting(_integer_choice((0, 180), "degrees"), 0)
    buffer_count: int = _setting(_integer(2, 12, "buffers"), 6)
    capture_timeout_s: float = _setting(_number(0.1, 30, "seconds"), 2.0)
    # The lens's horizontal field of view (sets how big an animal looks at a distance).
    horizontal_fov_deg: float = _setting(_number(10, 180, "degrees"), 62.2)

    def validate(self) -> list[Problem]:
        main_width, main_height = self.main_size
        lores_width, lores_height = self.lores_size
        if lores_width <= main_width and lores_height <= main_height:
            return []
        return [
            Problem(
                "lores_size",
                None,
                self.lores_size,
                f"no wider or taller than main_size [{main_width}, {main_height}]",
            )
        ]


@dataclass(frozen=True)
class HardwareConfig(_Section):
    pir_pin: int = _setting(_gpio_pin(), 17)
    ir_lamp_pin: int | None = _setting(_gpio_pin(nullable=True), None)
    status_led_pin: int | None = _setting(_gpio_pin(nullable=True), None)
    camera: CameraConfig = _section(CameraConfig)

    def validate(self) -> list[Problem]:
        problems = []
        first_user_of_pin: dict[int, str] = {}
        for name in ("pir_pin", "ir_lamp_pin", "status_led_pin"):
            pin = getattr(self, name)
            if pin is None:
                continue
            if pin in first_user_of_pin:
                expected = f"a GPIO pin not already used by {first_user_of_pin[pin]}"
                problems.append(Problem(name, None, pin, expected))
            else:
                first_user_of_pin[pin] = name
        return problems


@dataclass(frozen=True)
class TriggerConfig(_Section):
    # PIR edges this long after an event ends are ignored.
    quiet_period_s: float = _setting(_number(0, 3600, "seconds"), 0.0)
    # Re-triggers extend an event up to this.
    max_event_s: float = _setting(_number(1, 600, "seconds"), 30.0)


@dataclass(frozen=True)
class BurstConfig(_Section):
    # Frames captured after the PIR edge.
    frames: int = _setting(_integer(1, 100, "frames"), 5)
    # 0 = every camera frame.
    interval_s: float = _setting(_number(0, 60, "seconds"), 0.5)
    # Frames from before the edge, held in camera buffers until the event.
    pre_trigger_frames: int = _setting(_integer(0, 10, "frames"), 2)


@dataclass(frozen=True)
class FilterConfig(_Section):
    enabled: bool = _setting(_flag(), True)  # false = keep every frame
    # Sensitivity in field terms: the smallest animal that must be kept, and
    # how far away; the smallest blob that counts is derived from them.
    min_animal_length_m: float = _setting(_number(0.05, 5, "metres (body length)"), 0.4)
    max_distance_m: float = _setting(_number(0.5, 100, "metres"), 10.0)
    # Overrides the derived value: largest changed blob, as a fraction of the frame.
    min_blob_fraction: float | None = _setting(
        _number(0, 1, "(fraction of the frame)", nullable=True), None)
    # Smallest luma difference counted as change (raised automatically in noisy frames).
    pixel_threshold: int = _setting(_integer(1, 255), 18)
    blur_px: int = _setting(_integer(1, 31, "pixels", odd=True), 5)
    # Above this fraction of the frame changed at once it is a light change, not motion.
    light_change_fraction: float = _setting(_number(0.05, 1, "(fraction of the frame)"), 0.5)
    # Frames before the trigger (spread over background_window_s) that make the background.
    background_frames: int = _setting(_integer(1, 30, "frames"), 6)
    background_window_s: float = _setting(_number(0, 30, "seconds"), 2.0)
    # Areas never counted as motion: polygons [[x, y], ...] or rectangles [x0, y0, x1, y1].
    masks: tuple = _setting(_MASKS_RULE, ())
    keep_first_post_trigger: bool = _setting(_flag(), False)


@dataclass(frozen=True)
class StorageConfig(_Section):
    # A relative root is resolved against the current working directory.
    root: str = _setting(_DIRECTORY_RULE, "/var/lib/trapd")
    min_free_mb: int = _setting(_integer(0, 1_000_000, "MB"), 200)
    jpeg_quality: int = _setting(_integer(10, 100), 90)


@dataclass(frozen=True)
class TimeConfig(_Section):
    utc_offset: str = _setting(_UTC_OFFSET_RULE, "+00:00")

    @property
    def tz(self) -> timezone:
        return timezone(timedelta(minutes=_utc_offset_minutes(self.utc_offset)))


# Camtrap DP 1.0.2 enumerations (camtrap-dp-profile.json).
SAMPLING_DESIGNS = ("simpleRandom", "systematicRandom", "clusteredRandom", "experimental",
                    "targeted", "opportunistic")
CONTRIBUTOR_ROLES = ("contact", "principalInvestigator", "rightsHolder", "publisher",
                     "contributor")
_CONTRIBUTOR_KEYS = ("title", "role", "email", "organization")
# Data Package licence names, e.g. CC0-1.0 (SPDX identifiers fit).
_LICENSE_NAME = r"[-a-zA-Z0-9._]+"


@dataclass(frozen=True)
class Contributor:
    title: str
    role: str = "contributor"
    email: str | None = None
    organization: str | None = None


def _is_contributor(entry: Any) -> bool:
    if not isinstance(entry, dict) or not set(entry) <= set(_CONTRIBUTOR_KEYS):
        return False
    title = entry.get("title")
    if not isinstance(title, str) or not title.strip() or not _ONE_LINE_OF_TEXT.is_valid(title):
        return False
    if entry.get("role", "contributor") not in CONTRIBUTOR_ROLES:
        return False
    return all(entry.get(k) is None or (isinstance(entry[k], str) and _ONE_LINE_OF_TEXT.is_valid(entry[k]))
               for k in ("email", "organization"))


_CONTRIBUTORS_RULE = _Rule(
    expected=(
        "a list of people or organisations, each '- {title: NAME, role: ROLE}' with optional "
        f"email and organization; ROLE one of {', '.join(CONTRIBUTOR_ROLES)}"
    ),
    is_valid=lambda v: isinstance(v, list) and all(_is_contributor(e) for e in v),
    convert=lambda v: tuple(Contributor(**e) for e in v),
)


@dataclass(frozen=True)
class ProjectConfig(_Section):
    """What a Camtrap DP export says about the study (datapackage.json `project`)."""

    # "" = "Camera trap station <station_id>".
    title: str = _setting(_ONE_LINE_OF_TEXT, "")
    sampling_design: str = _setting(_choice(SAMPLING_DESIGNS), "opportunistic")
    individual_animals: bool = _setting(_flag(), False)
    # Licence of the exported tables; the images carry station.license.
    data_license: str = _setting(_text(_LICENSE_NAME, "a licence identifier such as CC0-1.0 "
                                       "or CC-BY-4.0 (letters, digits, '.', '_', '-')"), "CC0-1.0")
    # [] = station.owner as rights holder.
    contributors: tuple[Contributor, ...] = _setting(_CONTRIBUTORS_RULE, ())


_SENSOR_FILE_RULE = _Rule(
    expected="an absolute path to a sysfs file holding millidegrees Celsius, or null",
    is_valid=lambda v: isinstance(v, str) and v.startswith("/") and "\0" not in v,
    nullable=True,
)


@dataclass(frozen=True)
class SensorsConfig(_Section):
    cpu_temperature_file: str | None = _setting(_SENSOR_FILE_RULE,
                                                "/sys/class/thermal/thermal_zone0/temp")
    # e.g. a DS18B20 probe: /sys/bus/w1/devices/28-xxxxxxxxxxxx/temperature
    ambient_temperature_file: str | None = _setting(_SENSOR_FILE_RULE, None)
    # Battery voltage through an MCP3008 ADC (SPI0): channel 0-7, null = none;
    # volts at the battery per volt at the ADC input (the divider ratio).
    battery_adc_channel: int | None = _setting(_integer(0, 7, "(MCP3008 channel)", nullable=True), None)
    battery_divider: float = _setting(_number(1, 100, "(volts per ADC volt)"), 4.0)
    adc_reference_v: float = _setting(_number(1, 5.5, "volts"), 3.3)


# --- night, schedules and power (issue 6) ---------------------------------
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


# --------------------------------------------------------------------------
# fleet: telemetry (MQTT) and image sync (S3); see trapd/fleet/ and docs/fleet.md
# --------------------------------------------------------------------------

_WINDOW_PATTERN = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")
_PATH_OR_NULL = _Rule(expected="an absolute file path, or null",
                      is_valid=lambda v: isinstance(v, str) and v.startswith("/") and "\0" not in v,
                      nullable=True)
_URL_OR_NULL = lambda schemes: _Rule(  # noqa: E731
    expected=f"a URL starting with {' or '.join(s + '://' for s in schemes)}, or null",
    is_valid=lambda v: isinstance(v, str) and any(v.startswith(s + "://") and len(v) > len(s) + 3
                                                  for s in schemes),
    nullable=True)
_WINDOWS_RULE = _Rule(
    expected="a list of local-time windows 'HH:MM-HH:MM' in quotes, e.g. ['22:00-06:00']; "
             "[] = any time",
    is_valid=lambda v: isinstance(v, list) and all(
        isinstance(w, str) and _WINDOW_PATTERN.fullmatch(w) for w in v),
    convert=tuple)
_NAME_RULE = _text(r"[A-Za-z0-9._-]{1,64}", "1-64 letters, digits, '.', '_' or '-'")


@dataclass(frozen=True)
class TelemetryConfig(_Section):
    # mqtts://host:8883 (TLS with this trap's client certificate); null = no telemetry.
    broker_url: str | None = _setting(_URL_OR_NULL(("mqtts", "mqtt")), None)
    ca_file: str | None = _setting(_PATH_OR_NULL, None)
    cert_file: str | None = _setting(_PATH_OR_NULL, None)
    # Private key, mode 0600.
    key_file: str | None = _setting(_PATH_OR_NULL, None)
    heartbeat_interval_s: int = _setting(_integer(10, 86400, "seconds"), 900)
    max_inflight: int = _setting(_integer(1, 100, "messages"), 10)

    def validate(self) -> list[Problem]:
        if self.broker_url and self.broker_url.startswith("mqtts://"):
            return [Problem(name, None, None, "a file path: mqtts:// needs the CA, this trap's "
                            "certificate and its key") for name in ("ca_file", "cert_file", "key_file")
                    if getattr(self, name) is None]
        return []


@dataclass(frozen=True)
class SyncConfig(_Section):
    enabled: bool = _setting(_flag(), False)
    # S3 endpoint, e.g. https://store.station.lan:8333; null = AWS S3.
    endpoint_url: str | None = _setting(_URL_OR_NULL(("https", "http")), None)
    bucket: str = _setting(_text(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name"),
                           "camtrap-raw")
    region: str = _setting(_NAME_RULE, "us-east-1")
    # File (mode 0600) with aws_access_key_id = ... and aws_secret_access_key = ... lines.
    credentials_file: str | None = _setting(_PATH_OR_NULL, None)
    ca_file: str | None = _setting(_PATH_OR_NULL, None)
    multipart_threshold_mb: int = _setting(_integer(5, 4096, "MB"), 8)
    part_size_mb: int = _setting(_integer(5, 4096, "MB"), 8)
    # Megabytes sent per local day; null = no limit.
    daily_budget_mb: float | None = _setting(_number(0, 1_000_000, "MB", nullable=True), None)
    windows: tuple = _setting(_WINDOWS_RULE, ())
    # Stop syncing below this battery voltage; null = never stop for the battery.
    min_battery_v: float | None = _setting(_number(0, 60, "volts", nullable=True), None)
    interval_s: int = _setting(_integer(10, 86400, "seconds"), 300)

    def validate(self) -> list[Problem]:
        if self.enabled and self.credentials_file is None:
            return [Problem("credentials_file", None, None, "a file path when sync is enabled")]
        return []


@dataclass(frozen=True)
class FleetConfig(_Section):
    enabled: bool = _setting(_flag(), False)
    # First part of every object key: <project>/<station>/<deployment>/<YYYY>/<MM>/<DD>/<file>.
    project: str = _setting(_NAME_RULE, "camtrap")
    telemetry: TelemetryConfig = _section(TelemetryConfig)
    sync: SyncConfig = _section(SyncConfig)


@dataclass(frozen=True)
class Config(_Section):
    station: StationConfig = _section(StationConfig, required=True)
    hardware: HardwareConfig = _section(HardwareConfig)
    trigger: TriggerConfig = _section(TriggerConfig)
    burst: BurstConfig = _section(BurstConfig)
    filter: FilterConfig = _section(FilterConfig)
    storage: StorageConfig = _section(StorageConfig)
    time: TimeConfig = _section(TimeConfig)
    project: ProjectConfig = _section(ProjectConfig)
    sensors: SensorsConfig = _section(SensorsConfig)
    night: NightConfig = _section(NightConfig)
    schedule: ScheduleConfig = _section(ScheduleConfig)
    power: PowerConfig = _section(PowerConfig)
    fleet: FleetConfig = _section(FleetConfig)

    def validate(self) -> list[Problem]:
        return self._pre_trigger_problems() + self._burst_length_problems()

    def _pre_trigger_problems(self) -> list[Problem]:
        buffer_count = self.hardware.camera.buffer_count
        most = buffer_count - CAMERA_FREE_BUFFERS
        if self.burst.pre_trigger_frames <= most:
            return []
        expected = (
            f"at most {most}: hardware.camera.buffer_count ({buffer_count}) minus the "
            f"{CAMERA_FREE_BUFFERS} buffers the camera needs free to keep capturing"
        )
        return [Problem("burst.pre_trigger_frames", None, self.burst.pre_trigger_frames, expected)]

    def _burst_length_problems(self) -> list[Problem]:
        burst_s = self.burst.frames * self.burst.interval_s
        if burst_s <= self.trigger.max_event_s:
            return []
        expected = (
            f"a burst that fits in trigger.max_event_s = {self.trigger.max_event_s:g} s, but "
            f"burst.frames x burst.interval_s = {self.burst.frames} x {self.burst.interval_s:g} s "
            f"= {burst_s:g} s"
        )
        return [Problem("burst.frames", None, self.burst.frames, expected)]


# --------------------------------------------------------------------------
# Reading the YAML node tree
# --------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _key_text(node: Node) -> str:
    """A key as it appears in messages: quoted when empty or unprintable."""
    if isinstance(node, ScalarNode):
        return node.value if node.value.isprintable() and node.value else repr(node.value)
    return "<list>" if isinstance(node, SequenceNode) else "<mapping>"


def _kind(node: Node) -> str:
    if node.tag not in (_MAP_TAG, _SEQ_TAG) and not isinstance(node, ScalarNode):
        return f"a value tagged {node.tag} (YAML tags are not allowed)"
    return "a list" if isinstance(node, SequenceNode) else "a single value"


def _expected_for(config_field: dataclasses.Field) -> str:
    section_cls = config_field.metadata.get("section")
    if section_cls is None:
        return config_field.metadata["rule"].expected
    required = [section_field.name for section_field in fields(section_cls) if _is_required(section_field)]
    return f"a section with {', '.join(required)}"


def _unknown_key_message(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    return f"unknown key; allowed here: {', '.join(allowed)}"


def _construction_failure(error: Exception) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        return error.problem
    return f"{type(error).__name__}: {error}"


class _Reader:
    """Walks a composed YAML tree against the config dataclasses, collecting
    every problem instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self._key_lines: dict[str, int] = {}

    def report(self, path: str, line: int | None, expected: str, value: object = NO_VALUE) -> None:
        self.problems.append(Problem(path, line, value, expected, self.source))

    def read_section(self, cls: type, node: Node, path: str, line: int | None) -> Any:
        """The `cls` instance for a mapping node, or _INVALID once reported."""
        entries = self._entries(node, path, line)
        if entries is _INVALID:
            return _INVALID
        self._report_unknown_keys(cls, entries, path)
        values = {}
        for config_field in fields(cls):
            field_path = _join(path, config_field.name)
            if config_field.name in entries:
                key_line, value_node = entries[config_field.name]
                values[config_field.name] = self._read_field(config_field, value_node, field_path, key_line)
            elif _is_required(config_field):
                self.report(field_path, line, f"missing; expected {_expected_for(config_field)}")
                values[config_field.name] = _INVALID
        if any(value is _INVALID for value in values.values()):
            return _INVALID
        section = cls(**values)
        self._report_validation(section, path)
        return section

    def _entries(self, node: Node, path: str, line: int | None) -> Any:
        """{key: (key line, value node)} of a mapping; {} for null; _INVALID once reported."""
        if isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
            return {}
        if not isinstance(node, MappingNode) or node.tag != _MAP_TAG:
            expected = f"expected a section of indented 'key: value' lines, not {_kind(node)}"
            self.report(path, line or _line(node), expected)
            return _INVALID
        entries: dict[str, tuple[int, Node]] = {}
        for key_node, value_node in node.value:
            key, key_line = _key_text(key_node), _line(key_node)
            if key in entries:
                first_line = entries[key][0]
                self.report(
                    _join(path, key),
                    key_line,
                    f"duplicate key (first at line {first_line}); YAML would silently use only the last one",
                )
            entries[key] = (key_line, value_node)
            self._key_lines[_join(path, key)] = key_line
        return entries

    def _report_unknown_keys(self, cls: type, entries: dict, path: str) -> None:
        allowed = [config_field.name for config_field in fields(cls)]
        for key, (key_line, _) in entries.items():
            if key not in allowed:
                self.report(_join(path, key), key_line, _unknown_key_message(key, allowed))

    def _read_field(self, config_field: dataclasses.Field, node: Node, path: str, line: int) -> Any:
        section_cls = config_field.metadata.get("section")
        if section_cls is not None:
            return self.read_section(section_cls, node, path, line)
        return self._read_setting(config_field.metadata["rule"], node, path, line)

    def _read_setting(self, rule: _Rule, node: Node, path: str, line: int) -> Any:
        value = self._construct(node, path, line)
        if value is _INVALID:
            return _INVALID
        if not rule.accepts(value):
            self.report(path, line, rule.expected, value)
            return _INVALID
        return rule.to_field_value(value)

    def _construct(self, node: Node, path: str, line: int) -> Any:
        """The plain Python value of a node, built by the safe constructor only."""
        # PyYAML's constructors fail in many ways on malformed tagged values
        # (`!!int x` is a ValueError, `!!bool x` a KeyError, unknown tags a
        # ConstructorError); every one of them is the technician's to fix.
        try:
            return SafeConstructor().construct_object(node, deep=True)
        except Exception as error:
            reason = _construction_failure(error)
            self.report(path, line, f"cannot be read ({reason}); expected a plain value without a '!!' tag")
            return _INVALID

    def _report_validation(self, section: _Section, path: str) -> None:
        for problem in section.validate():
            full_path = _join(path, problem.path)
            self.problems.append(
                dataclasses.replace(
                    problem, path=full_path, line=self._key_lines.get(full_path), source=self.source
                )
            )


# --------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------


def _file_error(message: str, source: str, line: int | None = None) -> ConfigError:
    """A ConfigError for the file as a whole (path "")."""
    return ConfigError([Problem("", line, NO_VALUE, message, source)])


def _syntax_error(error: yaml.YAMLError, text: str, source: str) -> ConfigError:
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        message = f"YAML syntax error: special character U+{error.character:04X} is not allowed"
        return _file_error(message, source, line)
    mark = error.problem_mark or error.context_mark
    hint = "check indentation (spaces, not tabs), colons and quotes on this line and the one above"
    message = f"YAML syntax error: {error.problem or error.context}; {hint}"
    return _file_error(message, source, mark.line + 1 if mark else None)


def _compose(text: str, source: str) -> Node:
    """The YAML node tree of `text`; raises ConfigError if it is not valid, non-empty YAML."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.reader.ReaderError, yaml.MarkedYAMLError) as error:
        raise _syntax_error(error, text, source) from None
    except RecursionError:
        raise _file_error("YAML is nested too deeply to read", source) from None
    if root is None:
        sections = ", ".join(f"{config_field.name}:" for config_field in fields(Config))
        raise _file_error(f"the file has no settings; expected sections {sections}", source)
    return root


def parse_config(text: str, source: str = "config.yaml") -> Config:
    """Read config YAML text; raises ConfigError listing every problem found."""
    reader = _Reader(source)
    config = reader.read_section(Config, _compose(text, source), "", None)
    if reader.problems:
        raise ConfigError(sorted(reader.problems, key=lambda problem: problem.line or 0))
    return config


def _read_text(path: Path, source: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise _file_error(f"cannot read the file: {error}", source) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        message = "the file is not UTF-8 text; save it as UTF-8 in the editor"
        raise _file_error(message, source, line) from None


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and check a config file (default: the shipped config.yaml)."""
    source = os.fspath(DEFAULT_CONFIG_PATH if path is None else path)  # as given, for messages
    return parse_config(_read_text(Path(source), source), source)


def _gpio_text(pin: int | None) -> str:
    return "none" if pin is None else f"GPIO {pin}"


def config_summary(cfg: Config) -> str:
    """A few lines a technician can check against the station in front of them."""
    station, location, hardware = cfg.station, cfg.station.location, cfg.hardware
    camera, burst, storage = hardware.camera, cfg.burst, cfg.storage
    elevation = "not set" if location.elevation_m is None else f"{location.elevation_m:g} m"
    return "\n".join(
        [
            f"station {station.station_id}, deployment {station.deployment_id}, "
            f"owner {station.owner or 'not set'}",
            f"location {location.latitude}, {location.longitude} (±{location.uncertainty_m} m), "
            f"elevation {elevation}, UTC offset {cfg.time.utc_offset}",
            f"PIR on {_gpio_text(hardware.pir_pin)}, IR lamp {_gpio_text(hardware.ir_lamp_pin)}, "
            f"status LED {_gpio_text(hardware.status_led_pin)}",
            f"camera main {camera.main_size[0]}x{camera.main_size[1]}, "
            f"lores {camera.lores_size[0]}x{camera.lores_size[1]}, {camera.frame_rate:g} fps, "
            f"rotation {camera.rotation_deg}°",
            f"burst {burst.frames} frames every {burst.interval_s:g} s, "
            f"{burst.pre_trigger_frames} pre-trigger frames",
            f"storage {storage.root} (keep {storage.min_free_mb} MB free)",
        ]
    )


def load_config_with(overrides: dict, path: str | os.PathLike | None = None) -> Config:
    """A config file with some settings replaced (nested sections merge key by
    key), validated like the file itself: for benches and the simulator."""
    source = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    settings = merge_settings(yaml.safe_load(_read_text(source, str(source))) or {}, overrides)
    return parse_config(yaml.safe_dump(settings), source=f"{source} (with overrides)")


def merge_settings(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_config_main(path: str | None) -> int:
    """`trapd check-config [PATH]`: print every problem, or OK and a summary."""
    shown = str(DEFAULT_CONFIG_PATH) if path is None else path
    try:
        config = load_config(path)
    except ConfigError as error:
        for problem in error.problems:
            print(problem)
        print(f"{len(error.problems)} problem(s) in {shown}")
        return 1
    print(f"{shown}: OK")
    print(config_summary(config))
    return 0
