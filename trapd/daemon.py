"""The process: builds the stages from a Config, runs the pipeline, handles signals.

SIGTERM/SIGINT: finish the event in flight, close the queue, exit 0.
SIGHUP: reload config.yaml between events; an invalid file keeps the running
config and the log says why.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from trapd.camera import Camera
from trapd.clock import Clock, SystemClock
from trapd.config import Config, load_config
from trapd.deployments import OperationLog, capture_state
from trapd.errors import ConfigError, GpioUnavailable, HardwareError, TrapdError
from trapd.location import for_images
from trapd.metadata import StationInfo, camera_identity
from trapd.operating import Operating
from trapd.sensors import Sensors
from trapd.status_led import StatusLed
from trapd.storage import Store
from trapd.event import EventReport
from trapd.trap import Trap
from trapd.trigger import PirTrigger
from trapd.watchdog import Watchdog, watchdog_interval_ns

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
IN_LOOP_WAIT_S = 30.0       # real seconds another thread waits for the loop to run its work
T = TypeVar("T")


def sd_notify(message: str) -> bool:
    """Tell systemd (Type=notify) about our state; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)     # a full socket queue must never stall the trap
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            log.warning("sd_notify %s not sent: %s", message, exc)
            return False
    return True


def read_serial_number(cpuinfo: Path = CPUINFO) -> str:
    """The Pi's board serial ("Serial : 10000000a1b2c3d4"), or "unknown"."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Serial" and value.strip():
                return value.strip()
    except OSError:
        pass
    return "unknown"


def station_info(config: Config, camera_model: str) -> StationInfo:
    s = config.station
    where = s.location
    published = for_images(where.latitude, where.longitude, where.elevation_m,
                           where.uncertainty_m, where.publish)
    return StationInfo(
        station_id=s.station_id, deployment_id=s.deployment_id,
        latitude=published.latitude, longitude=published.longitude,
        elevation_m=published.elevation_m, uncertainty_m=published.uncertainty_m,
        heading_deg=s.camera.heading_deg, owner=s.owner, license=s.license,
        serial_number=read_serial_number() if s.serial_number == "auto" else s.serial_number,
        camera_model=camera_model, utc_offset=config.time.tz)


@dataclass
class Hardware:
    """The seams: which Picamera2 class, which gpiozero pin factory, which clock,
    and (None = the files named in config `sensors:`) which sensors."""

    picamera2_class: type
    pin_factory: object | None
    clock: Clock
    sensors: Sensors | None = None


def real_hardware() -> Hardware:
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise HardwareError(
            f"no camera software ({exc}): on a Raspberry Pi install python3-picamera2 with apt "
            "and create the venv with --system-site-packages; elsewhere use `trapd sim`") from exc
    return Hardware(Picamera2, None, SystemClock())


def build_trap(config: Config, hardware: Hardware, storage_root: str | None = None,
               on_event: Callable[[EventReport], None] | None = None, debug=None) -> Trap:
    """Open camera, PIR and queue; close whatever opened if a later one fails.
    A camera that does not open is no reason to stop: the trap starts without
    it (degraded, `camera_unavailable`), records PIR events without images and
    keeps retrying the camera with back-off."""
    store = Store(storage_root or config.storage.root, config.storage.min_free_mb)
    camera = Camera(hardware.picamera2_class, config.hardware.camera, hardware.clock,
                    health=store.health)
    try:
        camera.try_open()
        pir = PirTrigger(config.hardware.pir_pin, hardware.clock, hardware.pin_factory)
    except BaseException:
        camera.close()
        store.close()
        raise
    sensors = hardware.sensors or sensors_from(config, hardware.pin_factory)
    try:
        operating = Operating(config, camera, hardware.clock, sensors, hardware.pin_factory)
    except BaseException:
        pir.close()
        camera.close()
        store.close()
        raise
    trap = Trap(config, camera, pir, store, hardware.clock,
                station_info(config, camera.model), on_event, sensors, debug, operating)
    if config.hardware.status_led_pin is not None:
        trap.status_led = StatusLed(config.hardware.status_led_pin, hardware.pin_factory)
        store.health.listen(trap.status_led.show)
    return trap


def sensors_from(config: Config, pin_factory=None) -> Sensors:
    s = config.sensors
    return Sensors(s.cpu_temperature_file, s.ambient_temperature_file, pin_factory,
                   s.battery_adc_channel, s.battery_divider, s.adc_reference_v)


def close_trap(trap: Trap) -> None:
    trap.close()
    if trap.status_led is not None:
        trap.status_led.close()
    trap.pir.close()
    trap.camera.close()
    trap.store.close()


class Daemon:
    def __init__(self, config_path: str | None, config: Config, trap: Trap) -> None:
        self.config_path = config_path
        self.config = config
        self.trap = trap
        self.operation = OperationLog(trap.store, trap.clock)   # deployment and effort record
        self.operation.arm(config, *camera_identity(trap.station))
        self._stop = False
        self._reloads_asked = 0         # request_reload() calls so far
        self._reloads_done = 0          # of those, how many a finished reload has answered
        self._reloaded = threading.Condition()
        self.last_reload = {"ok": True, "message": "running the config it started with"}
        self._clock_steps: queue.SimpleQueue = queue.SimpleQueue()
        self._work: queue.SimpleQueue = queue.SimpleQueue()     # (work, Future) from in_loop
        self._looping = False
        self.watchdog = Watchdog(watchdog_interval_ns(), trap.clock, sd_notify)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    def request_stop(self, *_) -> None:
        self._stop = True
        self.trap.wake()

    def request_reload(self, *_) -> None:
        self._reloads_asked += 1

    def reload_and_report(self, timeout_s: float = 60.0) -> dict:
        """request_reload, then wait (real time; an event in flight delays it)
        for the outcome: {"ok", "message"} (check-config's lines on refusal)."""
        if self.config_path is None:
            return {"ok": False, "message": "this trap runs without a config file to reload"}
        with self._reloaded:
            self.request_reload()
            wanted = self._reloads_asked
            self.trap.wake()
            if not self._reloaded.wait_for(lambda: self._reloads_done >= wanted, timeout_s):
                return {"ok": False, "message": f"not applied within {timeout_s:g} s (an event "
                                                "in flight?); it applies when the trap is free"}
            return dict(self.last_reload)

    def note_clock_step(self, step_ns: int, source: str, confirmed_by: str) -> None:
        """The wall clock was just set (from another thread): recorded by the loop."""
        self._clock_steps.put((self.trap.clock.wall_ns(), step_ns, source, confirmed_by))

    def in_loop(self, work: Callable[[], T], wait_s: float = IN_LOOP_WAIT_S) -> T:
        """`work()` run by the daemon's loop between two frames (from another thread, e.g.
        the setup link's): the loop is the index's one writer. Its result, or its exception.
        Keep `work` short: the trap's next frame waits for it."""
        if not self._looping:
            raise TrapdError("the trap is not running its loop (starting or stopping)")
        done: Future = Future()
        self._work.put((work, done))
        self.trap.wake()
        try:
            return done.result(wait_s)
        except FutureTimeout:
            if done.cancel():       # never runs later, behind the caller's back
                raise TrapdError(f"the trap did not get to it within {wait_s:g} s; "
                                 "nothing was done") from None
            return done.result()    # the loop started it just now: it is short

    def _run_work(self) -> None:
        while not self._work.empty():
            work, done = self._work.get()
            if not done.set_running_or_notify_cancel():
                continue
            try:
                done.set_result(work())
            except BaseException as exc:        # handed to the caller, who reports it
                done.set_exception(exc)

    def show_status_code(self) -> None:
        """The trap's status on the LED for a few seconds (start-up, on demand)."""
        if self.trap.status_led is not None:
            from trapd.health_summary import led_status
            self.trap.status_led.show_status(led_status(self.trap, self.config))

    def run(self, until: Callable[[], bool] = lambda: False) -> int:
        log.info("trapd running: station %s, deployment %s",
                 self.config.station.station_id, self.config.station.deployment_id)
        sd_notify("READY=1")
        self.show_status_code()
        self.operation.beat(capture_state(self.trap))
        self._looping = True
        while not (self._stop or until() or self.trap.stop_requested):
            self.trap.step()
            self._run_work()
            self._record_clock_steps()
            self.operation.beat(capture_state(self.trap))
            self.watchdog.tick(self.trap.last_frame_ns)
            if self._reloads_asked != self._reloads_done and not self.trap.in_event:
                asked = self._reloads_asked
                self.reload()
                with self._reloaded:
                    self._reloads_done = asked
                    self._reloaded.notify_all()
        sd_notify("STOPPING=1")
        self._looping = False
        self._run_work()            # whatever was handed in before the loop ended
        self.trap.finish()
        self._record_clock_steps()
        self.operation.close()
        log.info("trapd stopped")
        return 0

    def _record_clock_steps(self) -> None:
        while not self._clock_steps.empty():
            self.operation.clock_step(*self._clock_steps.get())

    def reload(self) -> bool:
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config reload refused, keeping the running config:\n%s", exc)
            self.last_reload = {"ok": False, "message": f"{exc}\n{len(exc.problems)} problem(s) "
                                f"in {self.config_path}; the running config is kept"}
            return False
        self.trap.reconfigure(config, station_info(config, self.trap.camera.model))
        if config.station.deployment_id != self.config.station.deployment_id:
            self.operation.arm(config, *camera_identity(self.trap.station))
        self.config = self.trap.config
        log.info("config reloaded from %s", self.config_path)
        self.last_reload = {"ok": True, "message": f"config reloaded from {self.config_path}"}
        return True


def run(config_path: str | None) -> int:
    config = load_config(config_path)
    hardware = real_hardware()
    try:
        trap = build_trap(config, hardware)
    except GpioUnavailable as exc:
        raise GpioUnavailable(f"{exc} (on a Pi: user in the gpio group, python3-lgpio installed, "
                              "GPIOZERO_PIN_FACTORY=lgpio)") from exc
    daemon = Daemon(config_path, config, trap)
    daemon.install_signal_handlers()
    fleet = setup = None
    try:
        if config.fleet.enabled:  # telemetry and sync in a background thread (trapd/fleet)
            from trapd.fleet.worker import start_fleet
            fleet = start_fleet(config, trap, config_path=config_path,
                                request_reload=daemon.request_reload)
        if config.setup.enabled:  # setup mode and the setup link (trapd/setup)
            from trapd.setup.service import start_setup_or_say_why
            setup = start_setup_or_say_why(daemon, hardware.pin_factory)
        return daemon.run()
    finally:
        if setup:
            setup.stop()
        if fleet:
            fleet.stop()
        close_trap(trap)
