"""Camera faults injected through the simulator: hangs, timeouts, failed
opens, captures failing at once, a camera absent at boot or vanishing
mid-burst. The trap recovers in bounded (virtual) time, retries a failing
camera with back-off and a few log lines, records PIR events during the outage
without images, and stays up, degraded (`camera_unavailable`), when the camera
never comes back (systemd's frames-fed watchdog is what restarts it)."""

import logging
import re
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from camera_fakes import FailingWaits, failing_captures
from conftest import NS, REPO, make_config, write_config
from hw_sim.picamera2 import CameraRig
from hw_sim.pir import PirOutputPin
from hw_sim.scenario import Conditions, Scenario
from hw_sim.scene import Scene
from trapd import camera as trapd_camera
from trapd import cli, daemon
from trapd.clock import VirtualClock
from trapd.config import load_config
from trapd.health import CAMERA_UNAVAILABLE, read_health

OUTAGE_NOTE = "no images, camera unavailable"
BURST = {"filter": {"enabled": False}, "burst": {"frames": 8, "interval_s": 0.5}}


def outage_events(b):
    return [e for e in b.events if e.note and e.note.startswith(OUTAGE_NOTE)]


def test_pir_events_while_the_camera_is_unplugged_are_recorded_without_images(bench):
    b = bench(BURST)
    b.run_for(1)
    b.pir_pulse_at(0.1)
    b.run_for(1.0)                                  # mid-burst
    now = b.clock.monotonic_ns()
    b.rig.unplug()
    b.clock.call_at(now + 6 * NS, b.rig.plug_in)
    edge_ns = b.pir_pulse_at(1.0)                   # an animal passes during the outage
    b.run_for(15)
    assert "camera error" in b.events[0].note
    [missed] = outage_events(b)
    assert missed.trigger_ns == edge_ns and missed.frames == []
    rows = b.trap.store._db.execute("SELECT state, note FROM events").fetchall()
    assert ("closed", missed.note) in rows
    b.pir_pulse_at(0.5)                             # the reopened camera works
    b.run_for(6)
    assert sum(f.file is not None for f in b.events[-1].frames) >= 8
    assert b.trap.store.verify() == []


def test_a_hang_ends_the_event_and_the_trap_recovers_when_frames_return(bench):
    b = bench(BURST)
    b.run_for(1)
    b.pir_pulse_at(0.1)
    b.run_for(1.5)
    b.rig.hang()
    b.run_for(10)
    assert "camera error" in b.events[0].note and "timed out" in b.events[0].note
    b.rig.clear_faults()
    b.run_for(3)
    b.pir_pulse_at(0.2)
    b.run_for(6)
    assert b.events[-1].note is None
    assert sum(f.file is not None for f in b.events[-1].frames) >= 8


def test_a_reopened_camera_keeps_the_controls_set_before(bench):
    """The night exposure cap (set_controls) holds on the camera reopened after a timeout."""
    b = bench()
    b.trap.camera.set_controls({"ExposureTime": 4321})
    b.run_for(1)
    b.rig.timeout_next(1)
    b.run_for(5)
    cameras = len(b.rig.cameras)
    assert cameras >= 2
    frame = b.trap.camera.next_frame()
    assert frame.metadata["ExposureTime"] == 4321 and len(b.rig.cameras) == cameras
    frame.release()


class SimHardware:
    """Sim hardware handed to `trapd run` in place of the real camera and pins."""

    def __init__(self, present=True, clock_class=VirtualClock):
        morning = datetime(2026, 11, 26, 6, tzinfo=timezone.utc)
        self.clock = clock_class(start_wall_ns=int(morning.timestamp() * NS))
        scenario = Scenario(name="faults", duration_s=600, seed=3, start_time=morning,
                            conditions=(Conditions(0, "day", 0.0),))
        self.rig = CameraRig(Scene(scenario, self.clock.monotonic_ns()), self.clock,
                             present=present)
        self.picamera2_class = self.rig.picamera2_class
        self.factory = MockFactory()
        self.pin = self.factory.pin(17, pin_class=PirOutputPin)

    def at(self, seconds, action):
        self.clock.call_at(self.clock.monotonic_ns() + int(seconds * NS), action)

    def pir_pulse(self, at_s, length_s=0.5):
        self.at(at_s, self.pin.drive_high)
        self.at(at_s + length_s, self.pin.drive_low)

    def stop_at(self, seconds):
        """SIGTERM, as systemd sends it, at `seconds` of virtual time from now."""
        self.at(seconds, lambda: signal.raise_signal(signal.SIGTERM))

    def hardware(self):
        return daemon.Hardware(self.picamera2_class, self.factory, self.clock)


@pytest.fixture
def sim_hardware(monkeypatch):
    made = []

    def make(present=True, clock_class=VirtualClock):
        made.append(SimHardware(present, clock_class))
        monkeypatch.setattr(daemon, "real_hardware", made[-1].hardware)
        return made[-1]

    yield make
    for sim in made:
        sim.factory.close()


def expected_delays(count, ceiling_s):
    """The back-off between attempts: at once, then 1, 2, 4 ... s up to the ceiling."""
    delays, delay = [], 0.0
    for _ in range(count):
        delays.append(delay)
        delay = trapd_camera.RETRY_FIRST_DELAY_S if delay == 0 else min(delay * 2, ceiling_s)
    return delays


def warnings_and_errors(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


FLOOD = 200     # more log lines than this in one run: stop it (the code before the back-off
                # wrote ~1,600 a second of real time, with the virtual clock standing still)


@pytest.mark.parametrize("clock_class, ceiling_s, fault_s", [
    (VirtualClock, trapd_camera.RETRY_MAX_DELAY_S, 20 * 60),
    (FailingWaits, 8.0, 60),
], ids=["clock-waits", "every-wait-fails"])
def test_captures_failing_at_once_back_off_to_the_ceiling_and_log_a_few_lines(
        sim_hardware, tmp_path, caplog, monkeypatch, clock_class, ceiling_s, fault_s):
    """A camera that opens but whose every capture fails at once: attempts back
    off to the ceiling (in clock time, whether or not the clock's waits wait),
    the log gets a few lines instead of a flood, `camera_unavailable` says why,
    and frames are back within one ceiling once the fault clears."""
    monkeypatch.setattr(trapd_camera, "RETRY_MAX_DELAY_S", ceiling_s)
    sim = sim_hardware(clock_class=clock_class)
    camera_class = sim.picamera2_class = failing_captures(sim.rig.picamera2_class)
    config = make_config(tmp_path, BURST)
    caplog.set_level(logging.INFO)
    trap = daemon.build_trap(config, sim.hardware())
    try:
        d = daemon.Daemon(None, config, trap)
        clock = sim.clock
        start_ns = clock.monotonic_ns()
        d.run(until=lambda: clock.monotonic_ns() - start_ns >= fault_s * NS
              or len(caplog.records) > FLOOD)
        lines = warnings_and_errors(caplog)
        assert len(lines) <= 3 + fault_s / ceiling_s, [r.getMessage() for r in lines]
        assert trap.store.health.is_set(CAMERA_UNAVAILABLE)
        why = read_health(trap.store.root)["degraded"][CAMERA_UNAVAILABLE]["why"]
        assert "capture failed" in why and "Invalid argument" in why
        delays = [(b - a) / NS for a, b in zip(camera_class.attempts, camera_class.attempts[1:])]
        assert delays == pytest.approx(expected_delays(len(delays), ceiling_s), abs=1e-3)
        assert max(delays) == pytest.approx(ceiling_s, abs=1e-3)    # the ceiling was reached
        assert "more failures in the last" in caplog.text           # the rest counted

        camera_class.failing = False                                # the fault clears
        cleared_ns = clock.monotonic_ns()
        d.run(until=lambda: (trap.last_frame_ns or 0) > cleared_ns
              or clock.monotonic_ns() - cleared_ns > 2 * ceiling_s * NS)
        assert (trap.last_frame_ns or 0) > cleared_ns
        assert (trap.last_frame_ns - cleared_ns) / NS <= ceiling_s + 0.5
        assert not trap.store.health.is_set(CAMERA_UNAVAILABLE)
        assert read_health(trap.store.root)["degraded"] == {}
        assert "camera back: frames again after" in caplog.text
    finally:
        daemon.close_trap(trap)


def run_until_stopped(config, caplog):
    """`trapd run` until its SIGTERM; more log lines than FLOOD fail the test."""
    caplog.set_level(logging.INFO)
    code = cli.main(["run", "--config", str(config)])
    assert len(caplog.records) <= FLOOD
    return code


def test_a_camera_that_vanishes_for_good_leaves_trapd_running_degraded(sim_hardware, tmp_path,
                                                                     caplog):
    """The camera goes mid-burst and never comes back: `trapd run` stays up for
    the 10 minutes, records every PIR edge as an event without images, says
    `camera_unavailable` and why, and exits 0 on SIGTERM."""
    sim = sim_hardware()
    config = write_config(tmp_path / "config.yaml", tmp_path, BURST)
    sim.pir_pulse(2.0)                              # a burst starts
    sim.at(3.0, sim.rig.unplug)                     # ... and the camera goes mid-burst
    sim.pir_pulse(6.0)                              # animals pass during the outage
    sim.pir_pulse(300.0)
    start_ns = sim.clock.monotonic_ns()
    sim.stop_at(600.3)                              # in a back-off wait (next attempt ~816 s)
    assert run_until_stopped(config, caplog) == cli.EXIT_OK
    assert (sim.clock.monotonic_ns() - start_ns) / NS == pytest.approx(600.3, abs=0.01)
    root = load_config(config).storage.root
    db = sqlite3.connect(root + "/queue.db")
    notes = [n for (n,) in db.execute("SELECT note FROM events ORDER BY number")]
    assert len(notes) == 3 and "camera error" in notes[0]
    assert all(n.startswith(OUTAGE_NOTE) for n in notes[1:])
    assert db.execute("SELECT COUNT(*) FROM frames WHERE file IS NOT NULL").fetchone()[0] >= 3
    assert db.execute("SELECT COUNT(*) FROM events WHERE state != 'closed'").fetchone()[0] == 0
    why = read_health(root)["degraded"][CAMERA_UNAVAILABLE]["why"]
    assert "no camera found" in why
    assert "trapd stopped" in caplog.text
    assert len(warnings_and_errors(caplog)) <= 8


def test_a_camera_absent_at_boot_leaves_trapd_running_degraded(sim_hardware, tmp_path, caplog):
    sim = sim_hardware(present=False)
    config = write_config(tmp_path / "config.yaml", tmp_path)
    edges = (10.0, 400.0)
    for at_s in edges:
        sim.pir_pulse(at_s)
    sim.stop_at(900.0)
    assert run_until_stopped(config, caplog) == cli.EXIT_OK
    root = load_config(config).storage.root
    db = sqlite3.connect(root + "/queue.db")
    events = db.execute("SELECT note FROM events ORDER BY number").fetchall()
    assert len(events) == len(edges) and all(n.startswith(OUTAGE_NOTE) for (n,) in events)
    assert db.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == 0
    why = read_health(root)["degraded"][CAMERA_UNAVAILABLE]["why"]
    assert why.startswith("open failed: no camera found")
    assert "did not open" not in caplog.text and len(warnings_and_errors(caplog)) <= 8


def test_a_camera_absent_at_boot_is_used_once_it_opens(sim_hardware, tmp_path, caplog):
    sim = sim_hardware(present=False)
    config = write_config(tmp_path / "config.yaml", tmp_path, BURST)
    sim.at(20.0, sim.rig.plug_in)       # (on a Pi: a slow camera; the sim's plug-in stands in)
    sim.pir_pulse(60.0)
    sim.stop_at(70.0)
    assert run_until_stopped(config, caplog) == cli.EXIT_OK
    root = load_config(config).storage.root
    db = sqlite3.connect(root + "/queue.db")
    assert db.execute("SELECT COUNT(*) FROM frames WHERE file IS NOT NULL").fetchone()[0] >= 8
    assert read_health(root)["degraded"] == {}
    assert "recovered: camera_unavailable" in caplog.text


def test_in_standby_a_failing_camera_is_tried_at_pir_edges_and_their_events_kept(
        sim_hardware, tmp_path, caplog):
    """Standby stops the camera while nothing happens: a camera gone at boot is
    tried again when the PIR fires (no stop or start of a closed camera), the
    edges make events without images, and the camera is used once it opens."""
    sim = sim_hardware(present=False)
    config = write_config(tmp_path / "config.yaml", tmp_path,
                          {**BURST, "power": {"mode": "standby"},
                           "filter": {"enabled": False}})   # the view is empty: keep its frames to count them
    sim.pir_pulse(10.0)
    sim.pir_pulse(100.0)
    sim.at(150.0, sim.rig.plug_in)
    sim.pir_pulse(200.0)
    sim.stop_at(300.0)
    assert run_until_stopped(config, caplog) == cli.EXIT_OK
    root = load_config(config).storage.root
    db = sqlite3.connect(root + "/queue.db")
    notes = [n for (n,) in db.execute("SELECT note FROM events ORDER BY number")]
    assert len(notes) == 3 and all(n.startswith(OUTAGE_NOTE) for n in notes[:2])
    assert notes[2] is None
    assert db.execute("SELECT COUNT(*) FROM frames WHERE file IS NOT NULL").fetchone()[0] >= 8
    assert read_health(root)["degraded"] == {}


def test_failed_opens_at_boot_are_retried_and_the_trap_runs(sim_hardware, tmp_path, caplog):
    sim = sim_hardware()
    sim.rig.fail_next_opens(4)                      # busy at start, then it opens (at 7 s)
    config = write_config(tmp_path / "config.yaml", tmp_path, BURST)
    sim.pir_pulse(20.0)
    sim.stop_at(30.0)
    assert run_until_stopped(config, caplog) == cli.EXIT_OK
    assert "camera open failed" in caplog.text and "camera back" in caplog.text
    root = load_config(config).storage.root
    db = sqlite3.connect(root + "/queue.db")
    assert db.execute("SELECT COUNT(*) FROM frames WHERE file IS NOT NULL").fetchone()[0] >= 8
    assert read_health(root)["degraded"] == {}


def test_recovery_times_are_bounded_by_the_timeout_and_back_off():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "camera_faults.py"),
                             "--reps", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\| (.+?) \| 2 \| [\d.]+ / ([\d.]+) \| [\d.]+ / ([\d.]+) \|$",
                      result.stdout, re.M)
    assert len(rows) == 4, result.stdout
    bound_s = 2.0 + 1 + 2 + 4 + 8 + 0.2   # capture timeout + back-off + two frames
    assert all(float(after_end) <= bound_s for _, _, after_end in rows), result.stdout
    # Long outages: a few log lines whatever their length, frames back within one
    # back-off ceiling (plus a capture timeout) after the fault ends.
    long_rows = re.findall(r"^\| (.+?) \| \d+-(\d+) \| 2 \| [\d.]+ / (\d+) \| [\d.]+ / \d+ "
                           r"\| [\d.]+ / ([\d.]+) \|$", result.stdout, re.M)
    assert len(long_rows) == 9, result.stdout
    ceiling_s = trapd_camera.RETRY_MAX_DELAY_S
    for _, length_s, most_lines, most_back_s in long_rows:
        assert int(most_lines) <= 4 + int(length_s) / ceiling_s, result.stdout
        assert float(most_back_s) <= ceiling_s + 2.0 + 0.2, result.stdout
