"""How the trap operates right now: day or night, lamp, schedule window, power mode.

One object the pipeline asks, frame by frame and while idle:

- day/night from the camera's own Lux estimate with hysteresis (night below
  `night_below_lux`, day above `day_above_lux`, each held `switch_after_s`),
  or from the sun's elevation at the station (`night.detect: sun`);
- the IR lamp (a gpiozero OutputDevice, or PWMOutputDevice for a dimmable
  lamp): on for the whole night, or only during events, or never;
- the night exposure cap (ExposureTime fixed at `max_exposure_us`, gain
  automatic) so a walking animal is not a blur;
- the schedule window now open (or none: idle) and its power mode;
- the battery: below `battery_low_v` standby, below `battery_critical_v` stop.

Every lighting switch (lamp or mode) is reported as a time: frames exposed
after it need a new background, so the switch itself is never motion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gpiozero import OutputDevice, PWMOutputDevice
from gpiozero.exc import GPIOZeroError

from trapd.clock import Clock
from trapd.config import Config, Window
from trapd.errors import GpioUnavailable
from trapd.schedule import Schedule

log = logging.getLogger(__name__)

NS = 1_000_000_000
BATTERY_CHECK_S = 60.0
IDLE_RECHECK_S = 60.0     # while idle, re-read the schedule and battery this often
STREAMING, STANDBY, IDLE = "streaming", "standby", "idle"


class IrLamp:
    """The IR illuminator on a GPIO: on/off, or PWM at `level`."""

    def __init__(self, pin: int | None, level: float | None, pin_factory=None) -> None:
        self._level = level
        self._device = None
        if pin is None:
            return
        try:
            if level is None:
                self._device = OutputDevice(pin, initial_value=False, pin_factory=pin_factory)
            else:
                self._device = PWMOutputDevice(pin, initial_value=0, pin_factory=pin_factory)
        except (GPIOZeroError, OSError, RuntimeError) as exc:
            raise GpioUnavailable(f"cannot open the IR lamp on GPIO{pin}: {exc}") from exc

    @property
    def fitted(self) -> bool:
        return self._device is not None

    @property
    def is_on(self) -> bool:
        return bool(self._device is not None and self._device.value)

    def set(self, on: bool) -> bool:
        """Switch; True if the state changed."""
        if self._device is None or on == self.is_on:
            return False
        self._device.value = (self._level or 1) if on else 0
        return True

    def close(self) -> None:
        if self._device is not None:
            self._device.off()
            self._device.close()


class DayNight:
    """Night/day from the camera's Lux with hysteresis and a hold time."""

    def __init__(self, night_below_lux: float, day_above_lux: float, switch_after_s: float) -> None:
        self.night = False
        self._night_below = night_below_lux
        self._day_above = day_above_lux
        self._hold_ns = int(switch_after_s * NS)
        self._contrary_since: int | None = None

    def observe(self, lux: float | None, t_ns: int) -> bool:
        """Feed one frame's Lux; True if day/night switched now."""
        if lux is None:
            return False
        contrary = lux > self._day_above if self.night else lux < self._night_below
        if not contrary:
            self._contrary_since = None
            return False
        if self._contrary_since is None:
            self._contrary_since = t_ns
        if t_ns - self._contrary_since < self._hold_ns:
            return False
        self.night = not self.night
        self._contrary_since = None
        return True


@dataclass
class Status:
    mode: str            # streaming | standby | idle
    window: Window | None
    night: bool
    lamp_on: bool
    battery_v: float | None


class Operating:
    def __init__(self, config: Config, camera, clock: Clock, sensors, pin_factory=None) -> None:
        self.config = config
        self._camera = camera
        self._clock = clock
        self._sensors = sensors
        night = config.night
        self.lamp = IrLamp(config.hardware.ir_lamp_pin if night.lamp != "off" else None,
                           night.lamp_level, pin_factory)
        self.day_night = DayNight(night.night_below_lux, night.day_above_lux, night.switch_after_s)
        where = config.station.location
        self.schedule = Schedule(config.schedule.windows, where.latitude, where.longitude,
                                 config.time.tz)
        self.lighting_changed_ns = 0       # frames exposed before this need a new background
        self.stop_requested = False
        self._in_event = False
        self._battery_v: float | None = None
        self._battery_low = False
        self._battery_checked_ns: int | None = None
        self._next_timelapse_ns: int | None = None
        self._window_cache: tuple[int, Window | None] | None = None
        self._camera_on_until_ns = 0

    def reconfigure(self, config: Config) -> None:
        """A reloaded config (SIGHUP): schedule, power mode, night thresholds and
        battery limits from now on; the lamp's pin stays (hardware: a restart)."""
        self.config = config
        night = config.night
        was_night = self.day_night.night
        self.day_night = DayNight(night.night_below_lux, night.day_above_lux, night.switch_after_s)
        self.day_night.night = was_night
        where = config.station.location
        self.schedule = Schedule(config.schedule.windows, where.latitude, where.longitude,
                                 config.time.tz)
        self._window_cache = None
        self._next_timelapse_ns = None

    def window(self) -> Window | None:
        """The schedule window open now (re-read at most once a second)."""
        now = self._clock.monotonic_ns()
        if self._window_cache is None or now - self._window_cache[0] >= NS:
            self._window_cache = (now, self.schedule.window_at(self._clock.wall_ns()))
        return self._window_cache[1]

    # -- lighting ------------------------------------------------------------
    def observe_frame(self, frame) -> None:
        """Day/night from this frame (or the sun); switch lamp and exposure cap."""
        if self.config.night.detect == "sun":
            is_night = self.schedule.is_night(frame.wall_ns)
            switched = is_night != self.day_night.night
            self.day_night.night = is_night
        else:
            switched = self.day_night.observe(frame.metadata.get("Lux"), frame.sensor_timestamp_ns)
        if switched:
            self._switch_mode()

    def _switch_mode(self) -> None:
        night = self.day_night.night
        log.info("%s: %s", "night" if night else "day",
                 f"IR lamp {self.config.night.lamp}, exposure fixed at "
                 f"{self.config.night.max_exposure_us} us" if night else "lamp off, auto exposure")
        cap = self.config.night.max_exposure_us if night else 0
        try:
            self._camera.set_controls({"ExposureTime": cap})
        except (RuntimeError, AttributeError) as exc:
            log.warning("could not set the exposure limit: %s", exc)
        self._set_lamp()
        self.lighting_changed_ns = self._clock.monotonic_ns()

    def _set_lamp(self) -> None:
        mode = self.config.night.lamp
        on = self.day_night.night and (mode == "continuous" or (mode == "events" and self._in_event))
        if self.lamp.set(on):
            self.lighting_changed_ns = self._clock.monotonic_ns()

    def event_started(self) -> None:
        self._in_event = True
        self._set_lamp()

    def event_ended(self) -> None:
        self._in_event = False
        self._set_lamp()

    def needs_rebase(self, frame) -> bool:
        """True for frames exposed wholly after the last lighting switch, until
        `rebased` is called: the filter's background must be retaken."""
        if not self.lighting_changed_ns:
            return False
        exposure_ns = int(frame.metadata.get("ExposureTime", 0)) * 1000
        return frame.sensor_timestamp_ns - exposure_ns >= self.lighting_changed_ns

    def rebased(self) -> None:
        self.lighting_changed_ns = 0

    # -- schedule and power --------------------------------------------------
    def keep_camera_on(self, until_ns: int) -> None:
        """Someone is watching the live view (the setup page): the camera runs
        until `until_ns` (monotonic) even in standby or outside every window."""
        self._camera_on_until_ns = max(self._camera_on_until_ns, until_ns)

    def camera_kept_on(self) -> bool:
        return self._clock.monotonic_ns() < self._camera_on_until_ns

    def mode(self) -> str:
        """streaming, standby or idle, now (the trap's thread: may read the battery)."""
        self._check_battery()
        return self.current_mode()

    def current_mode(self) -> str:
        """The mode by the battery as last read: for other threads (the setup link, the
        fleet), which must not read the ADC or change the battery state behind the trap."""
        window = self.window()
        if window is None:
            return IDLE
        if self._battery_low:
            return STANDBY
        return window.mode or self.config.power.mode

    def timelapse_due(self) -> bool:
        """True once per timelapse interval inside a window that asks for it."""
        window = self.window()
        now = self._clock.monotonic_ns()
        if window is None or not window.timelapse_s:
            self._next_timelapse_ns = None
            return False
        if self._next_timelapse_ns is None:
            self._next_timelapse_ns = now
        if now < self._next_timelapse_ns:
            return False
        self._next_timelapse_ns = now + int(window.timelapse_s * NS)
        return True

    def idle_timeout_s(self) -> float:
        """How long a stopped camera may sleep before the schedule or timer needs a look."""
        timeout = IDLE_RECHECK_S
        if self._next_timelapse_ns is not None:
            timeout = min(timeout, (self._next_timelapse_ns - self._clock.monotonic_ns()) / NS)
        return max(timeout, 0.0)

    def _check_battery(self) -> None:
        now = self._clock.monotonic_ns()
        if self._battery_checked_ns is not None and now - self._battery_checked_ns < BATTERY_CHECK_S * NS:
            return
        self._battery_checked_ns = now
        volts = self._sensors.battery_v() if hasattr(self._sensors, "battery_v") else None
        self._battery_v = volts
        power = self.config.power
        if volts is None:
            return
        low = power.battery_low_v is not None and volts < power.battery_low_v
        if low != self._battery_low:
            self._battery_low = low
            log.warning("battery %.2f V: %s", volts, "low, switching to standby" if low
                        else "recovered, back to the configured power mode")
        if power.battery_critical_v is not None and volts < power.battery_critical_v:
            if not self.stop_requested:
                log.error("battery %.2f V below the critical %.2f V: stopping cleanly",
                          volts, power.battery_critical_v)
            self.stop_requested = True

    def status(self) -> Status:
        window = self.window()
        return Status(self.mode(), window, self.day_night.night, self.lamp.is_on, self._battery_v)

    @property
    def last_battery_v(self) -> float | None:
        """The battery voltage as last read by the trap (None: never, or no sensor)."""
        return self._battery_v

    def close(self) -> None:
        self.lamp.close()
