"""Slow sensors read once per event: temperatures and battery voltage.

Temperatures come from sysfs files holding millidegrees Celsius, read through
gpiozero's `CPUTemperature(sensor_file=...)`: the SoC's thermal zone (always
there on a Pi), and optionally an ambient probe such as a DS18B20 on the
1-wire bus (`/sys/bus/w1/devices/28-*/temperature`, same format). The file
path is the seam: hw_sim points it at files it writes.

The CPU runs 10-30 degC above the air around it, so its reading is never
passed off as the ambient temperature (EXIF AmbientTemperature); see
metadata.py. A sensor that cannot be read gives None and one log line.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from gpiozero import MCP3008, CPUTemperature
from gpiozero.exc import GPIOZeroError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SensorReadings:
    cpu_temperature_c: float | None = None
    ambient_temperature_c: float | None = None
    battery_voltage_v: float | None = None


class _TemperatureFile:
    def __init__(self, what: str, path: str | None, pin_factory) -> None:
        self.what = what
        self.path = path
        self._pin_factory = pin_factory
        self._device = None
        self._failed = False

    def read_c(self) -> float | None:
        if self.path is None or self._failed:
            return None
        try:
            if self._device is None:
                self._device = CPUTemperature(sensor_file=self.path, pin_factory=self._pin_factory)
            return round(float(self._device.temperature), 1)
        except (OSError, ValueError, GPIOZeroError) as exc:
            self._failed = True
            log.warning("%s sensor %s cannot be read (%s); images go without it",
                        self.what, self.path, exc)
            return None

    def close(self) -> None:
        if self._device is not None:
            self._device.close()


class _BatteryAdc:
    """Battery voltage through a divider into an MCP3008 channel (gpiozero, SPI)."""

    def __init__(self, channel: int | None, divider: float, reference_v: float,
                 pin_factory) -> None:
        self.channel = channel
        self._divider = divider
        self._reference_v = reference_v
        self._pin_factory = pin_factory
        self._device = None
        self._failed = False

    def read_v(self) -> float | None:
        if self.channel is None or self._failed:
            return None
        try:
            if self._device is None:
                self._device = MCP3008(self.channel, max_voltage=self._reference_v,
                                       pin_factory=self._pin_factory)
            return round(float(self._device.voltage) * self._divider, 2)
        except (OSError, ValueError, GPIOZeroError) as exc:
            self._failed = True
            log.warning("battery ADC (MCP3008 channel %s) cannot be read (%s); images go "
                        "without battery voltage", self.channel, exc)
            return None

    def close(self) -> None:
        if self._device is not None:
            self._device.close()


class Sensors:
    def __init__(self, cpu_temperature_file: str | None = None,
                 ambient_temperature_file: str | None = None, pin_factory=None,
                 battery_adc_channel: int | None = None, battery_divider: float = 1.0,
                 adc_reference_v: float = 3.3) -> None:
        self._cpu = _TemperatureFile("CPU temperature", cpu_temperature_file, pin_factory)
        self._ambient = _TemperatureFile("ambient temperature", ambient_temperature_file,
                                         pin_factory)
        self._battery = _BatteryAdc(battery_adc_channel, battery_divider, adc_reference_v,
                                    pin_factory)
        # The trap reads these, and so does the setup page's health block on the link's
        # thread: one reader at a time (the ADC is opened on first use, once).
        self._lock = threading.Lock()

    def read(self) -> SensorReadings:
        with self._lock:
            return SensorReadings(cpu_temperature_c=self._cpu.read_c(),
                                  ambient_temperature_c=self._ambient.read_c(),
                                  battery_voltage_v=self._battery.read_v())

    def battery_v(self) -> float | None:
        with self._lock:
            return self._battery.read_v()

    def close(self) -> None:
        self._cpu.close()
        self._ambient.close()
        self._battery.close()
