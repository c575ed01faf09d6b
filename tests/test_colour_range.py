"""Photos hold full-range BT.601 YCbCr, what a JPEG means: a black, grey and
white chart comes out black, grey and white, not as limited-range grey-black
and dull white (hw_sim renders the range and matrix of the colour space it
reports, as libcamera does)."""

from datetime import datetime, timezone

from gpiozero.pins.mock import MockFactory

from colour_chart import chart_levels, full_range_problems
from conftest import NS, make_config
from hw_sim.picamera2 import CameraRig
from hw_sim.pir import PirOutputPin
from hw_sim.scene import TestChart
from trapd.clock import VirtualClock
from trapd.daemon import Hardware, build_trap, close_trap
from trapd.technician import snapshot


def _chart_rig():
    noon = datetime(2026, 11, 26, 3, tzinfo=timezone.utc)
    clock = VirtualClock(start_wall_ns=int(noon.timestamp() * NS))
    return CameraRig(TestChart(), clock), clock


def test_a_stored_event_photo_of_the_chart_is_full_range(tmp_path):
    rig, clock = _chart_rig()
    config = make_config(tmp_path, {"filter": {"enabled": False},
                                    "burst": {"frames": 2, "pre_trigger_frames": 1}})
    factory = MockFactory()
    pin = factory.pin(config.hardware.pir_pin, pin_class=PirOutputPin)
    events = []
    trap = build_trap(config, Hardware(rig.picamera2_class, factory, clock),
                      on_event=events.append)
    try:
        start = clock.monotonic_ns()
        clock.call_at(start + NS, pin.drive_high)
        clock.call_at(start + NS + NS // 10, pin.drive_low)
        while clock.monotonic_ns() < start + 4 * NS:
            trap.step()
        trap.flush_written()
        [event] = events
        photos = [trap.store.root / f.file for f in event.frames if f.file]
        assert len(photos) == 3
        for photo in photos:
            assert full_range_problems(chart_levels(photo.read_bytes())) == [], photo.name
    finally:
        close_trap(trap)
        factory.close()


def test_a_snapshot_of_the_chart_is_full_range(tmp_path):
    rig, clock = _chart_rig()
    config = make_config(tmp_path)
    path = snapshot(config, rig.picamera2_class, clock, tmp_path / "chart.jpg")
    assert full_range_problems(chart_levels(path.read_bytes())) == []
