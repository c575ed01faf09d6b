"""trapd itself on the real picamera2 0.3.38 and libcamera (the lane's virtual cameras):
its Camera, `trapd snapshot`, and the daemon's PIR events, with real pixels going through
the real request and buffer machinery into stored, tagged JPEGs."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory
from PIL import Image

from colour_chart import chart_levels, full_range_problems
from conftest import make_config, require_tool, write_config
from hw_sim.pir import PirOutputPin
from trapd.camera import Camera
from trapd.clock import SystemClock
from trapd.daemon import Hardware, build_trap, close_trap
from trapd.technician import snapshot

NS = 1_000_000_000
FRAME_NS = NS // 10     # the shipped 10 fps


@pytest.fixture
def camera_class(picamera2_class, camera_num):
    """`camera_class(name)`: the real Picamera2, opening the lane camera `name` for trapd's
    camera 0 (as a Pi with one camera module would)."""
    def named(name: str) -> type:
        num = camera_num(name)

        class Named(picamera2_class):
            def __init__(self, camera_num=0, **kwargs):
                super().__init__(num, **kwargs)

        Named.__module__ = picamera2_class.__module__   # picamera2's MappedArray beside it
        return Named
    return named


def test_trapds_camera_pulls_50_frames_100_ms_apart(tmp_path, camera_class):
    config = make_config(tmp_path)
    camera = Camera(camera_class("pattern"), config.hardware.camera, SystemClock())
    camera.open()
    try:
        stamps = []
        for _ in range(50):
            frame = camera.next_frame()
            assert frame.lores_y.shape == (240, 320)
            stamps.append(frame.sensor_timestamp_ns)
            frame.release()
        assert camera.buffers == config.hardware.camera.buffer_count
    finally:
        camera.close()
    gaps_ms = np.diff(stamps) / 1e6
    assert np.all(np.abs(gaps_ms - 100) <= 2), gaps_ms
    assert abs(stamps[-1] - time.monotonic_ns()) < NS    # SensorTimestamp is on CLOCK_MONOTONIC


def _snapshot_cli(tmp_path, *extra):
    config = write_config(tmp_path / "config.yaml", tmp_path)
    out = tmp_path / ("night.jpg" if "--night" in extra else "day.jpg")
    result = subprocess.run(
        [sys.executable, "-m", "trapd.cli", "snapshot", "--config", str(config), *extra, str(out)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"})
    assert result.returncode == 0, result.stderr
    return out, result


def test_trapd_snapshot_on_the_real_camera_is_a_full_range_photo_of_the_chart(tmp_path):
    # camera 0 of the lane is the chart (picamera2 numbers cameras by Id, reversed)
    out, result = _snapshot_cli(tmp_path)
    assert f"snapshot written to {out}" in result.stdout
    assert full_range_problems(chart_levels(out.read_bytes())) == []


def test_trapd_snapshot_night_on_the_real_camera(tmp_path):
    out, result = _snapshot_cli(tmp_path, "--night")
    assert out.read_bytes()[:2] == b"\xff\xd8" and "Traceback" not in result.stderr


def test_snapshot_night_on_a_camera_without_exposure_control_skips_the_cap_with_one_line(
        tmp_path, camera_class, caplog):
    caplog.set_level(logging.WARNING)
    config = make_config(tmp_path)
    path = snapshot(config, camera_class("noexposure"), SystemClock(), tmp_path / "n.jpg",
                    night=True)
    assert path.read_bytes()[:2] == b"\xff\xd8"
    skipped = [r.getMessage() for r in caplog.records if "no ExposureTime control" in r.getMessage()]
    assert len(skipped) == 1 and "night exposure cap is skipped" in skipped[0]


class RealTrap:
    """The daemon's trap on a lane camera, a MockFactory PIR, the system clock."""

    def __init__(self, tmp_path, picamera2_class, overrides):
        self.config = make_config(tmp_path, overrides)
        self.factory = MockFactory()
        self.pin = self.factory.pin(self.config.hardware.pir_pin, pin_class=PirOutputPin)
        self.events = []
        self.frames = []        # (SensorTimestamp, lores Y) of every frame the trap took
        self.trap = build_trap(self.config, Hardware(picamera2_class, self.factory, SystemClock()),
                               on_event=self.events.append)
        next_frame = self.trap.camera.next_frame

        def seen_next_frame():
            frame = next_frame()
            self.frames.append((frame.sensor_timestamp_ns, frame.lores_y.copy()))
            return frame

        self.trap.camera.next_frame = seen_next_frame

    def run_until(self, done, timeout_s=20.0):
        end = time.monotonic() + timeout_s
        while not done() and time.monotonic() < end:
            self.trap.step()

    def pulse(self, length_s=0.1):
        self.pin.drive_high()
        threading.Timer(length_s, self.pin.drive_low).start()
        return self.trap.pir

    def close(self):
        close_trap(self.trap)
        self.factory.close()


@pytest.fixture
def real_trap(tmp_path, camera_class):
    made = []

    def make(name, overrides=None):
        made.append(RealTrap(tmp_path, camera_class(name), overrides or {}))
        return made[-1]

    yield make
    for trap in made:
        trap.close()


def _finish(rt: RealTrap, events: int = 1):
    rt.run_until(lambda: len(rt.events) >= events)
    rt.trap.flush_written()
    assert len(rt.events) == events, "no event closed"


def test_a_pir_event_through_the_daemon_stores_pre_trigger_frames_tagged_and_full_range(
        real_trap, tmp_path):
    exiftool = require_tool("exiftool")
    rt = real_trap("target", {"filter": {"enabled": False},
                              "burst": {"frames": 3, "interval_s": 0.2, "pre_trigger_frames": 2}})
    rt.run_until(lambda: len(rt.frames) >= 10)
    rt.pulse()
    _finish(rt)
    [event] = rt.events
    edge_ns = event.trigger_ns
    before = [f for f in event.frames if f.pre_trigger]
    after = [f for f in event.frames if not f.pre_trigger]
    assert len(before) == 2 and all(f.sensor_timestamp_ns < edge_ns for f in before)
    assert len(after) == 3 and all(f.sensor_timestamp_ns >= edge_ns for f in after)
    assert after[0].sensor_timestamp_ns - edge_ns <= 2 * FRAME_NS
    photos = [rt.trap.store.root / f.file for f in event.frames]
    assert all(p.exists() for p in photos)
    for photo in photos:
        assert full_range_problems(chart_levels(photo.read_bytes())) == [], photo.name
    tags = json.loads(subprocess.run([exiftool, "-j", "-n", "-G1", "-a", *map(str, photos)],
                                     capture_output=True, text=True, check=True).stdout)
    station = rt.config.station
    for photo, tag in zip(photos, tags):
        assert tag["IFD0:Model"].endswith("trapd-realcam-target"), photo.name
        assert tag["ExifIFD:ExposureTime"] > 0 and "ExifIFD:DateTimeOriginal" in tag
        assert tag["Composite:GPSLatitude"] == pytest.approx(station.location.latitude, abs=1e-5)
        assert tag["XMP-trap:StationID"] == station.station_id
        assert tag["XMP-trap:EventID"] == event.event_id
    assert [str(t["XMP-trap:PreTrigger"]).lower() for t in tags] == ["true"] * 2 + ["false"] * 3


def test_a_camera_granting_4_of_6_buffers_records_an_event_with_pre_trigger_frames(
        real_trap, caplog):
    caplog.set_level(logging.WARNING)
    rt = real_trap("fewbuffers", {"filter": {"enabled": False},
                                  "hardware": {"camera": {"buffer_count": 6}},
                                  "burst": {"frames": 5, "interval_s": 0.1,
                                            "pre_trigger_frames": 2}})
    assert rt.trap.camera.buffers == 4
    assert "granted 4 buffers of the 6 asked" in caplog.text
    rt.run_until(lambda: len(rt.frames) >= 10)
    rt.pulse()
    _finish(rt)
    [event] = rt.events
    assert sum(f.pre_trigger for f in event.frames) == 2
    assert sum(not f.pre_trigger for f in event.frames) == 5
    assert all((rt.trap.store.root / f.file).exists() for f in event.frames)
    assert "timed out" not in caplog.text


def _footage(realcam_frames):
    """The replayed images (lores-sized grey) and whether each shows the animal."""
    with (realcam_frames / "footage.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    images = [np.asarray(Image.open(realcam_frames / "footage" / r["image"]).convert("L")
                         .resize((320, 240)), np.float32) for r in rows]
    return images, [r["label"] == "animal" for r in rows]


def _shown(lores, images) -> int:
    """Which replayed image a lores frame shows: the nearest one."""
    return int(np.argmin([np.abs(lores.astype(np.float32) - im).mean() for im in images]))


def test_a_replayed_real_camera_trap_burst_is_scored_by_the_filter(real_trap, realcam_frames):
    images, animal = _footage(realcam_frames)
    rt = real_trap("footage", {"burst": {"frames": 8, "interval_s": 0.1, "pre_trigger_frames": 2},
                               "filter": {"background_window_s": 1.0}})
    first_animal = animal.index(True)
    # The edge two frames before the animal walks in: background and pre-trigger frames
    # show the empty scene, the burst the animal (the camera shows each image for 4 frames).
    rt.run_until(lambda: len(rt.frames) >= 4 * len(images)
                 and _shown(rt.frames[-1][1], images) == first_animal - 1
                 and _shown(rt.frames[-3][1], images) == first_animal - 1)
    rt.pulse()
    _finish(rt)
    [event] = rt.events
    by_ts = {ts: lores for ts, lores in rt.frames}
    shows_animal = [animal[_shown(by_ts[f.sensor_timestamp_ns], images)] for f in event.frames]
    with_animal = [f for f, a in zip(event.frames, shows_animal) if a]
    empty = [f for f, a in zip(event.frames, shows_animal) if not a]
    assert with_animal and empty, shows_animal
    assert all(f.score is not None for f in event.frames)
    assert all(f.kept for f in with_animal), [(f.score, f.kept) for f in event.frames]
    assert min(f.score for f in with_animal) > max(f.score for f in empty)
    saved = [rt.trap.store.root / f.file for f in with_animal]
    assert all(p.exists() and p.read_bytes()[:2] == b"\xff\xd8" for p in saved)
