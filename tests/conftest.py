"""Shared fixtures: configs built from the shipped config.yaml, a fresh gpiozero
MockFactory per test, and the sim hardware (virtual clock, camera rig, PIR pin)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from requirements import missing
import yaml
from gpiozero.pins.mock import MockFactory

from hw_sim.picamera2 import CameraRig
from hw_sim.pir import PirOutputPin
from hw_sim.scenario import Conditions, Scenario
from hw_sim.scene import Scene
from trapd.clock import VirtualClock
from trapd.config import DEFAULT_CONFIG_PATH, Config, merge_settings, parse_config
from trapd.daemon import Hardware, build_trap, close_trap

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def require_shared(relative: str) -> Path:
    """A path under ../shared, or skip (fail in CI, where TRAPD_REQUIRE_SHARED=1)."""
    path = SHARED / relative
    if not path.exists():
        missing(f"../shared/{relative} not present (a clone without the team's shared folder)",
                "TRAPD_REQUIRE_SHARED")
    return path


def require_tool(name: str) -> str:
    """A system tool's path, or skip (fail in CI, where TRAPD_REQUIRE_TOOLS=1)."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} not installed (.ci/run installs it with apt-get)", "TRAPD_REQUIRE_TOOLS")
    return path


def exiftool_tags(path) -> dict:
    """Every tag exiftool reads in one file, numeric, by family-1 group ("GPS:GPSLatitude")."""
    exiftool = require_tool("exiftool")
    out = subprocess.run([exiftool, "-j", "-n", "-G1", "-a", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def shipped_config_dict() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def config_dict(tmp_path: Path, overrides: dict | None = None) -> dict:
    """The shipped config with a small main stream (fast tests) and storage in tmp_path."""
    test_defaults = {"hardware": {"camera": {"main_size": [640, 480]}},
                     "storage": {"root": str(tmp_path / "storage"), "min_free_mb": 0}}
    return merge_settings(merge_settings(shipped_config_dict(), test_defaults), overrides or {})


def make_config(tmp_path: Path, overrides: dict | None = None) -> Config:
    return parse_config(yaml.safe_dump(config_dict(tmp_path, overrides)), source="test-config.yaml")


def write_config(path: Path, tmp_path: Path, overrides: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump(config_dict(tmp_path, overrides)))
    return path


@pytest.fixture
def mock_factory():
    factory = MockFactory()
    try:
        yield factory
    finally:
        factory.reset()
        factory.close()


NS = 1_000_000_000


class Bench:
    """A trap on simulated hardware, driven step by step in virtual time."""

    def __init__(self, tmp_path, overrides=None, animals=(), rig_options=None):
        self.config = make_config(tmp_path, overrides)
        morning = datetime(2026, 11, 26, 6, tzinfo=timezone.utc)
        self.clock = VirtualClock(start_wall_ns=int(morning.timestamp() * NS))
        scenario = Scenario(name="bench", duration_s=600, seed=3, start_time=morning,
                            conditions=(Conditions(0, "day", 0.0),), animals=tuple(animals))
        self.scene = Scene(scenario, self.clock.monotonic_ns())
        self.rig = CameraRig(self.scene, self.clock, **(rig_options or {}))
        self.factory = MockFactory()
        self.pin = self.factory.pin(self.config.hardware.pir_pin, pin_class=PirOutputPin)
        self.events = []
        self.hardware = Hardware(self.rig.picamera2_class, self.factory, self.clock)
        self.trap = build_trap(self.config, self.hardware, on_event=self.events.append)

    def run_for(self, seconds):
        """Step the trap for `seconds` of virtual time, then wait for its writer
        threads, which run in real time: virtual time can outrun a real fsync."""
        end = self.clock.monotonic_ns() + int(seconds * NS)
        while self.clock.monotonic_ns() < end:
            self.trap.step()
        self.trap.flush_written()

    def pir_pulse_at(self, delay_s, length_s=0.5):
        now = self.clock.monotonic_ns()
        self.clock.call_at(now + int(delay_s * NS), self.pin.drive_high)
        self.clock.call_at(now + int((delay_s + length_s) * NS), self.pin.drive_low)
        return now + int(delay_s * NS)

    def close(self):
        if self.factory is None:
            return
        close_trap(self.trap)
        self.factory.close()
        self.factory = None


@pytest.fixture
def bench(tmp_path):
    benches = []

    def make(overrides=None, animals=(), **rig_options):
        benches.append(Bench(tmp_path, overrides, animals, rig_options))
        return benches[-1]

    yield make
    for b in benches:
        b.close()


# --- sim runs shared by the data-out tests (each takes seconds; run once) ---
TRAPD_CLI = [sys.executable, "-m", "trapd.cli"]


def trapd(*args, check=True, timeout=600):
    """Run the `trapd` command; with check, fail showing its output unless it exits 0."""
    result = subprocess.run(TRAPD_CLI + [str(a) for a in args], capture_output=True, text=True,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="session")
def sim_queue(tmp_path_factory):
    """`sim_queue(scenario, overrides)`: a finished sim run (storage root, report,
    stdout, config path), made once per session for each distinct request."""
    runs = {}

    def run(scenario="default", overrides=None):
        key = (scenario, repr(overrides))
        if key not in runs:
            out = tmp_path_factory.mktemp(f"sim-{scenario}")
            config = DEFAULT_CONFIG_PATH
            if overrides:
                config = out / "config.yaml"
                config.write_text(yaml.safe_dump(merge_settings(shipped_config_dict(), overrides)))
            storage, report = out / "storage", out / "report.json"
            result = trapd("sim", scenario, "--config", config, "--storage", storage,
                           "--report", report)
            runs[key] = {"storage": storage, "config": config, "stdout": result.stdout,
                         "report": json.loads(report.read_text())}
        return runs[key]

    return run


def copy_queue(storage: Path, to: Path) -> Path:
    """A private copy of a sim's queue, for tests that change it."""
    shutil.copytree(storage, to)
    return to


def camtrap_validator() -> Path:
    return require_shared("camtrap-dp/validate.py")


# --- fleet: real Mosquitto and SeaweedFS on loopback (tests/fleet_servers.py) ---
from fleet_servers import broker, fleet_ca, s3_cluster, s3_store  # noqa: E402,F401


# --- the real-camera lane (tests/realcam): collected only inside it (`make realcam`) ---
import os  # noqa: E402

REALCAM_LANE = bool(os.environ.get("TRAPD_REALCAM"))


def pytest_ignore_collect(collection_path):
    if not REALCAM_LANE and collection_path.is_relative_to(REPO / "tests" / "realcam"):
        return True
    return None


def pytest_terminal_summary(terminalreporter):
    if not REALCAM_LANE:
        terminalreporter.write_line("real-camera lane not run: `make realcam` runs it "
                                    "(real picamera2 + libcamera; needs ../shared beside the repo)")
