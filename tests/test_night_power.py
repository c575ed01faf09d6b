"""Night, schedules and power: what a user of the trap would notice."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime

import trapd.writer
from hw_sim.run import run_scenario
from hw_sim.scenario import load_scenario
from conftest import NS, make_config
from trapd.config import load_config


def test_pir_edge_during_encoding_of_previous_burst_is_recorded(bench, monkeypatch):
    gate = threading.Event()
    real_encode = trapd.writer.encode_yuv

    def slow_encode(*args):
        gate.wait(timeout=30)   # held until the second PIR edge has come and gone
        return real_encode(*args)

    monkeypatch.setattr(trapd.writer, "encode_yuv", slow_encode)
    b = bench({"burst": {"frames": 2, "interval_s": 0.1, "pre_trigger_frames": 0},
               "filter": {"enabled": False}})
    b.run_for(1.0)
    first_edge = b.pir_pulse_at(0.1, 0.2)
    second_edge = b.pir_pulse_at(1.0, 0.2)       # first burst is over, still encoding
    b.clock.call_at(second_edge + int(1.0 * NS), gate.set)
    b.run_for(3.0)
    b.trap.finish()

    assert [e.trigger_ns for e in b.events] == [first_edge, second_edge]
    first, second = b.events
    assert all(f.file for f in first.frames + second.frames)
    assert len(first.frames) == len(second.frames) == 2
    # The first burst's files became durable only after the second edge was taken.
    assert min(f.stored_ns for f in first.frames) > second_edge
    assert first.event_id != second.event_id


def test_stop_drains_the_writers_and_loses_no_frame(bench, monkeypatch):
    b = bench({"burst": {"frames": 3, "interval_s": 0.1}, "filter": {"enabled": False}})
    b.run_for(1.0)
    b.pir_pulse_at(0.05, 0.1)
    b.run_for(0.3)                 # mid-burst: SIGTERM arrives here
    b.trap.finish()
    event, = b.events
    assert len(event.frames) == 2 + 3 and all(f.file for f in event.frames)
    db = sqlite3.connect(b.trap.store.root / "queue.db")
    assert db.execute("SELECT count(*) FROM frames WHERE file IS NOT NULL").fetchone()[0] == 5


def _sim(tmp_path, scenario, overrides):
    config = make_config(tmp_path, overrides)
    return config, run_scenario(load_scenario(scenario), config, str(tmp_path / "storage"))


def test_ir_lamp_switching_for_events_is_never_motion(tmp_path):
    config, run = _sim(tmp_path, "ir-switching", {"night": {"lamp": "events"}})
    summary = run.report()["summary"]
    assert summary["events"] >= 4
    # Frames of the first lit frame after each switch are kept (they cannot be judged);
    # the lamp switching itself never makes a frame "motion".
    night_events = [e for e in run.events if run.scene.light(e.trigger_ns).night]
    assert night_events
    for event in night_events:
        assert sum(f.kept for f in event.frames) <= 1
    # The scene saw the lamp: on during night events, off between them.
    lamp_levels = [run.scene.lamp_level(e.trigger_ns + int(0.5 * NS)) for e in night_events]
    assert all(level == 1.0 for level in lamp_levels)
    last = night_events[-1].frames[-1].sensor_timestamp_ns
    assert run.scene.lamp_level(last + 5 * NS) == 0.0


def test_continuous_lamp_night_caps_exposure_and_keeps_no_empty_frame(tmp_path):
    config, run = _sim(tmp_path, "ir-switching", {"night": {"lamp": "continuous",
                                                            "max_exposure_us": 15000}})
    assert run.report()["summary"]["images_stored"] == 0
    db = sqlite3.connect(tmp_path / "storage" / "queue.db")
    import json
    exposures = [json.loads(m)["ExposureTime"] for (m,) in
                 db.execute("SELECT metadata FROM frames WHERE sensor_timestamp_ns > ?",
                            (run.scene.start_ns + 30 * NS,))]
    assert exposures and max(exposures) <= 15000


def test_sun_relative_window_records_only_after_sunset(tmp_path):
    config, run = _sim(tmp_path, "sunset-window",
                       {"schedule": {"windows": [{"start": "sunset", "end": "sunrise"}]}})
    sunset_ns = run.scene.start_ns + int(81.35 * NS)   # 17:42:21 local, from astral
    assert run.events, "the leopard after sunset was not recorded"
    assert all(e.trigger_ns >= sunset_ns for e in run.events)
    assert run.report()["summary"]["animal_passes_stored"] == 1


def test_timelapse_inside_a_window_is_tagged_timer(bench):
    b = bench({"schedule": {"windows": [{"start": "00:00", "end": "23:59", "timelapse_s": 5}]}})
    b.run_for(12.0)
    b.trap.finish()
    assert [e.trigger for e in b.events] == ["timer"] * 3
    assert all(len(e.frames) == 1 and e.frames[0].file for e in b.events)
    db = sqlite3.connect(b.trap.store.root / "queue.db")
    assert {t for (t,) in db.execute("SELECT trigger FROM events")} == {"timer"}


def test_standby_stops_the_camera_and_starts_it_on_the_pir_edge(bench):
    b = bench({"power": {"mode": "standby"}, "filter": {"enabled": False}})
    b.run_for(1.0)
    camera = b.rig.cameras[-1]
    assert not camera.started
    edge = b.pir_pulse_at(0.5, 0.2)
    b.run_for(5.0)
    b.trap.finish()
    event, = b.events
    assert event.trigger_ns == edge
    assert not any(f.pre_trigger for f in event.frames)
    assert len(event.frames) == b.config.burst.frames and all(f.file for f in event.frames)
    assert not camera.started


def test_outside_every_window_pir_edges_are_ignored(bench):
    b = bench({"schedule": {"windows": [{"start": "20:00", "end": "21:00"}]}})
    b.pir_pulse_at(0.5, 0.2)
    b.run_for(3.0)
    assert b.events == []
    assert not b.rig.cameras[-1].started


def test_walktest_prints_each_pir_edge_and_blinks_the_led(tmp_path, mock_factory):
    from hw_sim.pir import PirOutputPin
    from trapd.clock import VirtualClock
    from trapd.technician import walktest

    config = make_config(tmp_path, {"hardware": {"status_led_pin": 22}})
    clock = VirtualClock()
    pir = mock_factory.pin(config.hardware.pir_pin, pin_class=PirOutputPin)
    for at in (1.0, 2.5):
        clock.call_at(clock.monotonic_ns() + int(at * NS), pir.drive_high)
        clock.call_at(clock.monotonic_ns() + int((at + 0.3) * NS), pir.drive_low)
    lines = []
    assert walktest(config, clock, mock_factory, duration_s=4, out=lines.append) == 2
    assert [line.split(" at ")[0] for line in lines[1:]] == ["PIR edge 1", "PIR edge 2"]
    led = mock_factory.pin(22)
    assert [s.state for s in led.states].count(True) == 2 and not led.state


def test_low_battery_switches_to_standby_and_critical_stops_cleanly(bench, monkeypatch):
    from gpiozero import Device

    from hw_sim.adc import MockMCP3008

    b = bench({"sensors": {"battery_adc_channel": 0, "battery_divider": 4.0},
               "power": {"battery_low_v": 11.5, "battery_critical_v": 10.5},
               # every frame stored: its tags are read below (the view is empty)
               "filter": {"enabled": False}})
    monkeypatch.setattr(Device, "pin_factory", b.factory)
    adc = MockMCP3008(b.factory)
    adc.set_battery(0, 12.4, 4.0)
    b.run_for(1.0)
    camera = b.rig.cameras[-1]
    assert camera.started and not b.trap.stop_requested

    adc.set_battery(0, 11.2, 4.0)
    b.run_for(61.0)
    assert not camera.started            # standby: camera off until a PIR edge
    b.pir_pulse_at(0.5, 0.2)
    b.run_for(3.0)
    b.trap.finish()                      # writes are on worker threads: wait for them
    assert b.events and b.events[-1].frames[0].file

    adc.set_battery(0, 10.2, 4.0)
    b.run_for(61.0)
    assert b.trap.stop_requested
    image = b.trap.store.root / b.events[-1].frames[0].file
    assert b"BatteryVoltage" in image.read_bytes() and b"11.2" in image.read_bytes()


def test_config_reports_bad_windows_and_thresholds_with_their_lines(tmp_path):
    import pytest
    import yaml

    from conftest import config_dict
    from trapd.config import parse_config
    from trapd.errors import ConfigError

    raw = config_dict(tmp_path, {"schedule": {"windows": [{"start": "sunset-0:30", "end": "06:00"}]},
                                 "night": {"night_below_lux": 50, "day_above_lux": 40},
                                 "power": {"battery_low_v": 11.0, "battery_critical_v": 11.5}})
    with pytest.raises(ConfigError) as error:
        parse_config(yaml.safe_dump(raw), source="c.yaml")
    text = str(error.value)
    assert "schedule.windows" in text and "'sunset-00:30'" in text
    assert "night.day_above_lux" in text and "power.battery_critical_v" in text
    assert all(p.line for p in error.value.problems)


def test_pir_edge_during_a_timelapse_shot_opens_a_pir_event(bench):
    b = bench({"schedule": {"windows": [{"start": "00:00", "end": "23:59", "timelapse_s": 60}]}})
    edge = b.pir_pulse_at(0.05, 0.2)     # the first timelapse shot is due at once
    b.run_for(3.0)
    b.trap.finish()
    assert [e.trigger for e in b.events] == ["timer", "pir"]
    assert b.events[1].trigger_ns == edge and len([f for f in b.events[1].frames if not f.pre_trigger]) == 5
