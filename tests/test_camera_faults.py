"""Camera faults injected through the simulator: hangs, timeouts, failed
opens, a camera absent at boot or vanishing mid-burst. The trap recovers in
bounded (virtual) time, records PIR events during the outage without images,
and exits non-zero when the camera never comes back (systemd restarts it)."""

import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from conftest import NS, REPO, write_config
from hw_sim.picamera2 import CameraRig
from hw_sim.pir import PirOutputPin
from hw_sim.scenario import Conditions, Scenario
from hw_sim.scene import Scene
from trapd import cli, daemon
from trapd.camera import REOPEN_ATTEMPTS
from trapd.clock import VirtualClock
from trapd.config import load_config

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


class SimHardware:
    """Sim hardware handed to `trapd run` in place of the real camera and pins."""

    def __init__(self, present=True):
        morning = datetime(2026, 11, 26, 6, tzinfo=timezone.utc)
        self.clock = VirtualClock(start_wall_ns=int(morning.timestamp() * NS))
        scenario = Scenario(name="faults", duration_s=600, seed=3, start_time=morning,
                            conditions=(Conditions(0, "day", 0.0),))
        self.rig = CameraRig(Scene(scenario, self.clock.monotonic_ns()), self.clock,
                             present=present)
        self.factory = MockFactory()
        self.pin = self.factory.pin(17, pin_class=PirOutputPin)

    def at(self, seconds, action):
        self.clock.call_at(self.clock.monotonic_ns() + int(seconds * NS), action)

    def hardware(self):
        return daemon.Hardware(self.rig.picamera2_class, self.factory, self.clock)


@pytest.fixture
def sim_hardware(monkeypatch):
    made = []

    def make(present=True):
        made.append(SimHardware(present))
        monkeypatch.setattr(daemon, "real_hardware", made[-1].hardware)
        return made[-1]

    yield make
    for sim in made:
        sim.factory.close()


def test_a_camera_that_vanishes_for_good_makes_trapd_run_exit_3(sim_hardware, tmp_path, caplog):
    sim = sim_hardware()
    config = write_config(tmp_path / "config.yaml", tmp_path, BURST)
    sim.at(2.0, sim.pin.drive_high)                 # a burst starts
    sim.at(2.5, sim.pin.drive_low)
    sim.at(3.0, sim.rig.unplug)                     # ... and the camera goes mid-burst
    sim.at(6.0, sim.pin.drive_high)                 # an animal passes during the outage
    sim.at(6.5, sim.pin.drive_low)
    assert cli.main(["run", "--config", str(config)]) == cli.EXIT_HARDWARE
    assert caplog.text.count("camera open attempt") == REOPEN_ATTEMPTS
    db = sqlite3.connect(load_config(config).storage.root + "/queue.db")
    notes = [n for (n,) in db.execute("SELECT note FROM events ORDER BY number")]
    assert len(notes) == 2 and "camera error" in notes[0] and notes[1].startswith(OUTAGE_NOTE)
    assert db.execute("SELECT COUNT(*) FROM frames WHERE file IS NOT NULL").fetchone()[0] >= 3


def test_a_camera_absent_at_boot_exits_3_after_every_attempt(sim_hardware, tmp_path, capsys,
                                                             caplog):
    sim_hardware(present=False)
    config = write_config(tmp_path / "config.yaml", tmp_path)
    assert cli.main(["run", "--config", str(config)]) == cli.EXIT_HARDWARE
    assert caplog.text.count("camera open attempt") == REOPEN_ATTEMPTS
    assert "did not open after 5 attempts" in capsys.readouterr().err


def test_failed_opens_at_boot_are_retried_and_the_trap_runs(sim_hardware, tmp_path, caplog):
    sim = sim_hardware()
    sim.rig.fail_next_opens(REOPEN_ATTEMPTS - 1)    # busy at start, then it opens
    config = write_config(tmp_path / "config.yaml", tmp_path, BURST)
    sim.at(20.0, sim.pin.drive_high)
    sim.at(20.5, sim.pin.drive_low)
    sim.at(30.0, lambda: daemon.signal.raise_signal(daemon.signal.SIGTERM))
    assert cli.main(["run", "--config", str(config)]) == cli.EXIT_OK
    assert caplog.text.count("camera open attempt") == REOPEN_ATTEMPTS - 1
    db = sqlite3.connect(load_config(config).storage.root + "/queue.db")
    assert db.execute("SELECT COUNT(*) FROM frames WHERE file IS NOT NULL").fetchone()[0] >= 8


def test_recovery_times_are_bounded_by_the_timeout_and_back_off():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "camera_faults.py"),
                             "--reps", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\| (.+?) \| 2 \| [\d.]+ / ([\d.]+) \| [\d.]+ / ([\d.]+) \|$",
                      result.stdout, re.M)
    assert len(rows) == 4, result.stdout
    bound_s = 2.0 + 1 + 2 + 4 + 8 + 0.2   # capture timeout + back-off + two frames
    assert all(float(after_end) <= bound_s for _, _, after_end in rows), result.stdout
