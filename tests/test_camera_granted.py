"""trapd trusts what the camera granted, not what it asked: fewer buffers are
adapted to, a missing control is skipped with one line, and a format or size it
cannot use stops the open with one line naming what was asked and what came."""

import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hw_sim.picamera2 import CameraRig
from hw_sim.scenario import Conditions, Scenario
from hw_sim.scene import Scene
from trapd.camera import Camera
from trapd.camera_config import CameraMismatch
from trapd.clock import VirtualClock
from trapd.errors import CameraUnavailable
from trapd.health import CAMERA_UNAVAILABLE
from trapd.technician import snapshot
from conftest import NS, make_config


def test_a_camera_granting_4_of_6_buffers_still_captures_events_with_pre_trigger_frames(
        bench, caplog):
    b = bench({"hardware": {"camera": {"buffer_count": 6}},
               "burst": {"frames": 6, "interval_s": 0.1, "pre_trigger_frames": 2},
               "filter": {"enabled": False}}, max_buffer_count=4)
    caplog.set_level(logging.WARNING)
    b.run_for(2)
    edge_ns = b.pir_pulse_at(0.25)
    b.run_for(6)
    assert b.trap.camera.buffers == 4
    assert "granted 4 buffers of the 6 asked" in caplog.text
    assert not b.trap.store.health.is_set(CAMERA_UNAVAILABLE), "capture stalled"
    assert "capture timed out" not in caplog.text
    [event] = b.events
    before = [f for f in event.frames if f.pre_trigger]
    after = [f for f in event.frames if not f.pre_trigger]
    assert len(before) == 2 and all(f.sensor_timestamp_ns < edge_ns for f in before)
    assert len(after) == 6
    assert all((b.trap.store.root / f.file).exists() for f in event.frames)


def test_a_camera_granting_3_buffers_holds_only_what_it_can_spare(bench, caplog):
    b = bench({"hardware": {"camera": {"buffer_count": 6}},
               "burst": {"frames": 4, "interval_s": 0.1, "pre_trigger_frames": 3},
               "filter": {"enabled": False}}, max_buffer_count=3)
    b.run_for(2)
    b.pir_pulse_at(0.25, length_s=0.1)
    b.run_for(5)
    assert not b.trap.store.health.is_set(CAMERA_UNAVAILABLE), "capture stalled"
    [event] = b.events
    assert sum(f.pre_trigger for f in event.frames) == 1     # 3 granted - 2 the camera needs
    assert sum(not f.pre_trigger for f in event.frames) == 4


def _rig(**options):
    night = datetime(2026, 11, 26, 20, tzinfo=timezone.utc)
    clock = VirtualClock(start_wall_ns=int(night.timestamp() * NS))
    scenario = Scenario(name="granted", duration_s=60, seed=1, start_time=night,
                        conditions=(Conditions(0, "night", 0.0),))
    return CameraRig(Scene(scenario, clock.monotonic_ns()), clock, **options), clock


def test_no_exposure_control_skips_the_night_cap_with_one_log_line(tmp_path, caplog):
    rig, clock = _rig(without_controls=("ExposureTime", "AnalogueGain"))
    config = make_config(tmp_path)
    camera = Camera(rig.picamera2_class, config.hardware.camera, clock)
    caplog.set_level(logging.WARNING)
    camera.open()
    try:
        camera.set_controls({"ExposureTime": config.night.max_exposure_us})
        camera.next_frame().release()
        camera.set_controls({"ExposureTime": 0})
        camera.close()
        camera.open()                   # the cap is applied again on a reopen: skipped again
        camera.next_frame().release()
    finally:
        camera.close()
    skipped = [r.getMessage() for r in caplog.records if "no ExposureTime control" in r.getMessage()]
    assert len(skipped) == 1 and "night exposure cap is skipped" in skipped[0]


def test_snapshot_night_works_on_a_camera_without_exposure_control(tmp_path):
    rig, clock = _rig(without_controls=("ExposureTime",))
    config = make_config(tmp_path)
    path = snapshot(config, rig.picamera2_class, clock, tmp_path / "night.jpg", night=True)
    assert Path(path).read_bytes()[:2] == b"\xff\xd8"


def _granting(picamera2_class: type, **granted) -> type:
    """The rig's Picamera2, reporting another main stream than was asked."""

    class Granting(picamera2_class):
        def camera_configuration(self):
            config = super().camera_configuration()
            return {**config, "main": {**config["main"], **granted}}

    Granting.__module__ = picamera2_class.__module__
    return Granting


@pytest.mark.parametrize("granted, said", [
    ({"format": "NV12"}, "camera granted NV12 640x480 for the main stream, not the YUV420 640x480"),
    ({"size": (1920, 1080)}, "camera granted YUV420 1920x1080 for the main stream"),
])
def test_a_format_or_size_trapd_cannot_use_stops_the_open_with_one_line(tmp_path, granted, said):
    rig, clock = _rig()
    config = make_config(tmp_path)
    camera = Camera(_granting(rig.picamera2_class, **granted), config.hardware.camera, clock)
    with pytest.raises(CameraUnavailable) as raised:
        camera.open()
    assert said in str(raised.value) and "\n" not in str(raised.value)
    assert isinstance(raised.value.__cause__, CameraMismatch)
