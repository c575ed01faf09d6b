"""Run trapd, unchanged, against a simulated scenario and score it.

The simulator plugs in at trapd's seams only: the Picamera2 class (a
CameraRig bound to the scene), gpiozero's MockFactory (its PIR pin driven by
the PIR model), the clock (virtual, or real time with `realtime=True`; the
scenario's `clock:` sets whether it is synchronised and when it steps), and
the sensors' sysfs files (written in a temporary directory). A scenario with
`footage:` shows real frames (FootageScene) and drives the PIR from their
labels; its `power_mode:` overrides the config's power.mode for the run.

With `handle_signals=True` (the `trapd sim` command) SIGINT and SIGTERM end
the run as they end the daemon: the event in flight is finished and the run
is scored up to there (`SimRun.stopped_by`); a second Ctrl-C aborts. SIGHUP
reloads the config file given as `config_path` (else it is logged and
ignored). With `setup.enabled` the run serves the setup link as the daemon does.
"""

from __future__ import annotations

import contextlib
from collections import Counter
import logging
import signal
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from gpiozero.pins.mock import MockFactory

from hw_sim.footage_scene import FootageScene
from hw_sim.lamp import attach_lamp
from hw_sim.picamera2 import CameraRig
from hw_sim.pir import PirModel, PirOutputPin
from hw_sim.scenario import ClockSpec, Scenario, SensorSpec
from hw_sim.scene import Scene
from trapd.clock import RealtimeClock, VirtualClock
from trapd.config import Config
from trapd.daemon import Daemon, Hardware, build_trap, close_trap
from trapd.sensors import Sensors
from trapd.event import EventReport

log = logging.getLogger(__name__)

NS = 1_000_000_000


@dataclass
class SimRun:
    scenario: Scenario
    scene: Scene
    storage_root: str
    power_mode: str = "streaming"
    events: list[EventReport] = field(default_factory=list)
    # The signal that ended the run early ("SIGINT", "SIGTERM"), and when the
    # run ended (seconds into the scenario, after the event in flight); None
    # for a run that went to its end. Animal passes are scored up to there.
    stopped_by: str | None = None
    stopped_at_s: float | None = None
    # With fleet.enabled: what the link had not delivered or synced when the run ended.
    fleet: dict | None = None

    def report(self) -> dict:
        """The run as JSON-ready data, every frame scored against ground truth."""
        events = [self._event_json(e) for e in self.events]
        return {"scenario": self.scenario.name, "storage_root": self.storage_root,
                "power_mode": self.power_mode, "footage": self._footage_json(),
                "stopped_by": self.stopped_by, "stopped_at_s": self.stopped_at_s,
                "fleet": self.fleet, "events": events, "summary": self._summary(events)}

    def _footage_json(self) -> dict | None:
        footage = self.scenario.footage
        if footage is None:
            return None
        return {"source": str(footage.source), "frame_rate": footage.frame_rate,
                "frames": len(footage.frames), "duration_s": footage.duration_s,
                "start_ns": self.scene.start_ns,
                "passes": [[p.first, p.last] for p in footage.passes]}

    def _event_json(self, event: EventReport) -> dict:
        return {
            "event_id": event.event_id, "trigger": event.trigger, "pir_edge_ns": event.trigger_ns,
            "note": event.note,
            "frames": [self._frame_json(f) for f in event.frames],
        }

    def _frame_json(self, f) -> dict:
        frame = {"sensor_timestamp_ns": f.sensor_timestamp_ns, "score": f.score,
                 "kept": f.kept, "pre_trigger": f.pre_trigger,
                 "truth": self.scene.truth(f.sensor_timestamp_ns), "file": f.file,
                 "arrived_ns": f.arrived_ns, "stored_ns": f.stored_ns,
                 "reference": f.reference}   # what the filter judged it by
        if isinstance(self.scene, FootageScene):
            index = self.scene.frame_index(f.sensor_timestamp_ns)
            frame["footage_frame"] = index
            frame["footage_file"] = (None if index is None
                                     else self.scene.footage.frames[index].file.name)
        return frame

    def _summary(self, events: list[dict]) -> dict:
        frames = [f for e in events for f in e["frames"]]
        animal = [f for f in frames if f["truth"] == "animal"]
        empty = [f for f in frames if f["truth"] == "empty"]
        animal_events = [e for e in events if any(f["truth"] == "animal" for f in e["frames"])]
        lost = [e for e in animal_events
                if not any(f["truth"] == "animal" and f["file"] for f in e["frames"])]
        passes_seen = self._passes_with_a_stored_frame(frames)
        passes = [a for a in self.scene.passes
                  if self.stopped_at_s is None or a.enter_s < self.stopped_at_s]
        return {
            "animal_frames": len(animal),
            "animal_frames_kept": sum(f["kept"] for f in animal),
            "empty_frames": len(empty),
            "empty_frames_dropped": sum(not f["kept"] for f in empty),
            "unlabelled_frames": sum(f["truth"] == "unlabelled" for f in frames),
            # how each frame was judged (trapd.motion.MotionResult.reference)
            "frames_by_reference": dict(Counter(f["reference"] for f in frames)),
            "animal_events": len(animal_events),
            "animal_events_lost": len(lost),
            "animal_passes": len(passes),
            "animal_passes_stored": passes_seen,
            "events": len(events),
            "images_stored": sum(f["file"] is not None for f in frames),
        }

    def _passes_with_a_stored_frame(self, frames: list[dict]) -> int:
        seen = set()
        for f in frames:
            if f["file"]:
                seen.update(id(a) for a in self.scene.animals_in_view(f["sensor_timestamp_ns"]))
        return len(seen)


# After the scenario, how long (real seconds) the fleet link may take to deliver what it queued.
FLEET_SETTLE_S = 30.0


def run_scenario(scenario: Scenario, config: Config, storage_root: str | None = None,
                 realtime: bool = False,
                 on_event: Callable[[EventReport], None] | None = None, debug=None,
                 handle_signals: bool = False, config_path: str | None = None) -> SimRun:
    config = with_power_mode(config, scenario.power_mode)
    clock = RealtimeClock() if realtime else VirtualClock(
        start_wall_ns=int(scenario.start_time.timestamp() * NS))
    start_ns = clock.monotonic_ns()
    scene = FootageScene(scenario, start_ns) if scenario.footage else Scene(scenario, start_ns)
    rig = CameraRig(scene, clock)
    pin_factory = MockFactory()
    pir_pin = pin_factory.pin(config.hardware.pir_pin, pin_class=PirOutputPin)
    if config.night.lamp != "off" and config.night.lamp_level is None:
        attach_lamp(scene, pin_factory, config.hardware.ir_lamp_pin, clock)
    run = SimRun(scenario, scene, str(storage_root or config.storage.root), config.power.mode)

    def record(event: EventReport) -> None:
        run.events.append(event)
        if on_event:
            on_event(event)

    schedule_clock(scenario.clock, clock, start_ns)
    with tempfile.TemporaryDirectory(prefix="trapd-sim-sensors-") as sysfs:
        sensors = sensor_files(scenario.sensors, Path(sysfs), pin_factory)
        trap = build_trap(config, Hardware(rig.picamera2_class, pin_factory, clock, sensors),
                          storage_root, record, debug)
        footage_passes = scenario.footage.passes if scenario.footage else None
        PirModel(scenario.pir, scenario.animals, pir_pin, clock, start_ns,
                 footage_passes).schedule()
        end_ns = start_ns + int(scenario.duration_s * NS)
        daemon = Daemon(config_path, config, trap)
        signals = _signals_end_the_run(daemon, run) if handle_signals else contextlib.nullcontext()
        fleet = _start_fleet(config, trap, clock)
        setup = _start_setup(config, daemon, pin_factory)
        try:
            with signals:
                daemon.run(until=lambda: clock.monotonic_ns() >= end_ns)
            if run.stopped_by:
                run.stopped_at_s = round((clock.monotonic_ns() - start_ns) / NS, 3)
        finally:
            if setup:
                setup.stop()
            if fleet:
                run.fleet = fleet.settle(FLEET_SETTLE_S)
            close_trap(trap)
            pin_factory.close()
    return run


def _start_fleet(config: Config, trap, clock):
    """fleet.enabled: the trap reports to the broker and store in its config, as
    `trapd run` does (in real time, beside the simulated one)."""
    if not config.fleet.enabled:
        return None
    from trapd.fleet.worker import start_fleet
    return start_fleet(config, trap, clock_synced=clock.is_synchronised)


def _start_setup(config: Config, daemon: Daemon, pin_factory):
    """setup.enabled: setup mode (its button on the mock pins) and the setup
    link on setup.link_socket, as `trapd run` serves them; with `config_path`
    given, the link's reload reads that file."""
    if not config.setup.enabled:
        return None
    from trapd.setup.service import start_setup_or_say_why
    return start_setup_or_say_why(daemon, pin_factory)


@contextlib.contextmanager
def _signals_end_the_run(daemon: Daemon, run: SimRun) -> Iterator[None]:
    """SIGINT/SIGTERM: stop after the event in flight (a second SIGINT aborts
    with KeyboardInterrupt); SIGHUP: ignored, said once. Handlers are put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield                  # only the main thread may set handlers
        return

    def stop(signum, _frame) -> None:
        name = signal.Signals(signum).name
        if run.stopped_by is None:
            run.stopped_by = name
            log.warning("%s: ending the run after the event in flight (Ctrl-C again to abort)",
                        name)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        daemon.request_stop()

    def hang_up(_signum, _frame) -> None:
        if daemon.config_path:
            daemon.request_reload()
        else:
            log.warning("SIGHUP ignored: the simulator has no config file to reload")

    wanted = {signal.SIGINT: stop, signal.SIGTERM: stop, signal.SIGHUP: hang_up}
    previous = {signum: signal.signal(signum, handler) for signum, handler in wanted.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def with_power_mode(config: Config, mode: str | None) -> Config:
    """`config` with power.mode set to the scenario's `power_mode` (None: unchanged)."""
    if mode is None or mode == config.power.mode:
        return config
    return replace(config, power=replace(config.power, mode=mode))


def schedule_clock(spec: ClockSpec, clock: VirtualClock, start_ns: int) -> None:
    """Set the clock's sync state and schedule its wall-clock steps."""
    clock.synchronised = spec.synchronised
    for jump in spec.jumps:
        clock.call_at(start_ns + int(jump.at_s * NS),
                      lambda jump=jump: clock.step_wall(int(jump.by_s * NS),
                                                        True if jump.synchronises else None))


def sensor_files(spec: SensorSpec, sysfs: Path, pin_factory) -> Sensors:
    """Sensors reading files in the sysfs format (millidegrees), as on a Pi."""
    cpu = sysfs / "thermal_zone0_temp"
    cpu.write_text(f"{round(spec.cpu_temperature_c * 1000)}\n")
    ambient = None
    if spec.ambient_temperature_c is not None:
        ambient = sysfs / "w1_28-sim_temperature"
        ambient.write_text(f"{round(spec.ambient_temperature_c * 1000)}\n")
    return Sensors(str(cpu), ambient and str(ambient), pin_factory)
