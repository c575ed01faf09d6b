"""Load and check the station's config.yaml.

Technicians edit config.yaml on site, so every mistake is reported with its
line, its key path, the value found and what would be valid, and all mistakes
are reported at once (`ConfigError.problems`), not one per attempt.

The frozen dataclasses below say what each section holds: each setting field
carries a rule in its metadata (what it accepts and how to say so), each
section field names its dataclass, and rules that link fields live in each
section's `validate()`. trapd/schema.py reads the file against them (the
simulator's scenario files are read the same way). The station, fleet, setup
and operating sections live in config_<name>.py beside this file.

A relative `storage.root` is taken from the config file's folder when the
file is loaded by path (`load_config`), so where photos go never depends on
the directory trapd happens to be started in; `parse_config` (text, no file)
joins it to `base_dir` if given, else leaves it relative.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

# Sections kept in their own modules, importable from here like the rest.
from trapd.config_fleet import FleetConfig, SyncConfig, TelemetryConfig  # noqa: F401
from trapd.config_setup import SetupConfig  # noqa: F401
from trapd.config_station import (  # noqa: F401
    CONTRIBUTOR_ROLES, MAX_CONTRIBUTORS, MAX_EMAIL_CHARS, MAX_NAME_CHARS, SAMPLING_DESIGNS,
    CameraMountConfig, Contributor, LocationConfig, ProjectConfig, StationConfig)
from trapd.config_operating import (  # noqa: F401
    POWER_MODES,
    WEEKDAYS,
    NightConfig,
    PowerConfig,
    ScheduleConfig,
    Window,
    parse_time_of_day,
)
from trapd.errors import ConfigError
from trapd.schema import NO_VALUE, Problem  # noqa: F401 (re-exported)
from trapd.schema import Section as _Section
from trapd.schema import Rule as _Rule
from trapd.schema import flag as _flag
from trapd.schema import integer as _integer
from trapd.schema import integer_choice as _integer_choice
from trapd.schema import is_free_text as _is_free_text
from trapd.schema import is_int as _is_int
from trapd.schema import is_number as _is_number
from trapd.schema import number as _number
from trapd.schema import read_document, read_text
from trapd.schema import section as _section
from trapd.schema import setting as _setting

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


# Linux's PATH_MAX is 4096 bytes; a UTF-8 character takes up to 4.
MAX_PATH_CHARS = 1024

_UTC_OFFSET_RULE = _Rule(
    expected=(
        "text '+HH:MM' or '-HH:MM' from -12:00 to +14:00, in quotes "
        "(unquoted, YAML reads +10:00 as a number)"
    ),
    is_valid=lambda v: isinstance(v, str) and _utc_offset_minutes(v) is not None,
)

_DIRECTORY_RULE = _Rule(
    expected=f"a directory path on one line, at most {MAX_PATH_CHARS} characters",
    is_valid=lambda v: _is_free_text(v, MAX_PATH_CHARS) and v.strip() != "",
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


# --------------------------------------------------------------------------
# Config sections
# --------------------------------------------------------------------------


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
    # Standby: wake the camera this often for a view of the empty scene (None: never).
    reference_every_s: float | None = _setting(_number(60, 86400, "seconds", nullable=True), None)


@dataclass(frozen=True)
class StorageConfig(_Section):
    # A relative root is taken from the config file's folder (see load_config).
    root: str = _setting(_DIRECTORY_RULE, "/var/lib/trapd")
    min_free_mb: int = _setting(_integer(0, 1_000_000, "MB"), 200)
    jpeg_quality: int = _setting(_integer(10, 100), 90)


@dataclass(frozen=True)
class TimeConfig(_Section):
    utc_offset: str = _setting(_UTC_OFFSET_RULE, "+00:00")

    @property
    def tz(self) -> timezone:
        return timezone(timedelta(minutes=_utc_offset_minutes(self.utc_offset)))


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
    setup: SetupConfig = _section(SetupConfig)

    def validate(self) -> list[Problem]:
        return (self._pre_trigger_problems() + self._burst_length_problems()
                + self._button_pin_problems())

    def _button_pin_problems(self) -> list[Problem]:
        pin = self.setup.button_pin
        users = {getattr(self.hardware, n): n for n in ("status_led_pin", "ir_lamp_pin", "pir_pin")}
        if pin is None or pin not in users:
            return []
        return [Problem("setup.button_pin", None, pin,
                        f"a GPIO pin not already used by hardware.{users[pin]}")]

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
# Public functions
# --------------------------------------------------------------------------


def _with_root_from(config: Config, base_dir: str | os.PathLike | None) -> Config:
    """`config` with a relative storage.root (and setup's files) joined to
    `base_dir` (None: unchanged)."""
    if base_dir is None:
        return config

    def absolute(path: str) -> str:
        return path if os.path.isabs(path) else os.path.normpath(
            os.path.join(os.path.abspath(base_dir), path))

    setup = config.setup
    return dataclasses.replace(
        config, storage=dataclasses.replace(config.storage, root=absolute(config.storage.root)),
        setup=dataclasses.replace(setup, secret_file=absolute(setup.secret_file),
                                  link_socket=absolute(setup.link_socket)))


def parse_config_lines(text: str, source: str = "config.yaml",
                       base_dir: str | os.PathLike | None = None) -> tuple[Config, dict[str, int]]:
    """Like parse_config, also giving the line of every key ({"storage.root": 250, ...})."""
    document = read_document(Config, text, source, ConfigError)
    return _with_root_from(document.value, base_dir), document.key_lines


def parse_config(text: str, source: str = "config.yaml",
                 base_dir: str | os.PathLike | None = None) -> Config:
    """Read config YAML text; raises ConfigError listing every problem found.

    A relative storage.root is joined to `base_dir` when given; without it
    it stays relative (to the working directory of whoever opens it)."""
    return parse_config_lines(text, source, base_dir)[0]


def config_folder(path: str | os.PathLike) -> str:
    """The folder a config file is in, as an absolute path (links not followed)."""
    return os.path.dirname(os.path.abspath(path))


def load_config_lines(path: str | os.PathLike | None = None) -> tuple[Config, dict[str, int]]:
    """Like load_config, also giving the line of every key."""
    source = os.fspath(DEFAULT_CONFIG_PATH if path is None else path)  # as given, for messages
    return parse_config_lines(read_text(source, source, ConfigError), source, config_folder(source))


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and check a config file (default: the shipped config.yaml). A
    relative storage.root is taken from the file's folder."""
    return load_config_lines(path)[0]


def load_config_with(overrides: dict, path: str | os.PathLike | None = None) -> Config:
    """A config file with some settings replaced (nested sections merge key by
    key), validated like the file itself: for benches and the simulator."""
    source = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    settings = merge_settings(yaml.safe_load(read_text(source, str(source), ConfigError)) or {},
                              overrides)
    return parse_config(yaml.safe_dump(settings), source=f"{source} (with overrides)",
                        base_dir=config_folder(source))


def merge_settings(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_summary(cfg: Config) -> str:
    """A few lines a technician can check against the station in front of them."""
    from trapd.check_config import config_summary as summary
    return summary(cfg)


def check_config_main(path: str | None) -> int:
    """`trapd check-config [PATH]` (trapd/check_config.py)."""
    from trapd.check_config import check_config_main as main
    return main(path)
