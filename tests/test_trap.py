"""The pipeline on simulated hardware: PIR edges make events, re-triggers
extend them, camera faults are survived and logged."""

import logging
import threading

from conftest import NS
from hw_sim.scenario import AnimalPass


def test_a_pir_edge_makes_one_event_with_pre_trigger_and_burst_frames(bench):
    b = bench({"burst": {"frames": 4, "interval_s": 0.5, "pre_trigger_frames": 2},
               "filter": {"enabled": False}})
    b.run_for(2)
    edge_ns = b.pir_pulse_at(0.33)
    b.run_for(5)
    assert len(b.events) == 1
    event = b.events[0]
    assert event.trigger == "pir" and event.trigger_ns == edge_ns
    before = [f for f in event.frames if f.pre_trigger]
    after = [f for f in event.frames if not f.pre_trigger]
    assert len(before) == 2 and all(f.sensor_timestamp_ns < edge_ns for f in before)
    assert len(after) == 4 and all(f.sensor_timestamp_ns >= edge_ns for f in after)
    assert after[0].sensor_timestamp_ns - edge_ns < NS / b.config.hardware.camera.frame_rate
    gaps = [b2.sensor_timestamp_ns - a.sensor_timestamp_ns for a, b2 in zip(after, after[1:])]
    assert all(abs(g - 0.5 * NS) <= 0.06 * NS for g in gaps)
    assert all((b.trap.store.root / f.file).exists() for f in event.frames)


def test_an_edge_from_another_thread_makes_an_event(bench):
    b = bench({"filter": {"enabled": False}})
    b.run_for(1)
    fired = threading.Event()

    def animal_passes():
        b.pin.drive_high()
        b.pin.drive_low()
        fired.set()

    threading.Thread(target=animal_passes).start()
    assert fired.wait(5)
    b.run_for(4)
    assert len(b.events) == 1 and len(b.events[0].frames) > 0


def test_a_re_trigger_during_the_burst_extends_the_event(bench):
    b = bench({"burst": {"frames": 4, "interval_s": 0.5, "pre_trigger_frames": 1},
               "filter": {"enabled": False}})
    b.run_for(1)
    b.pir_pulse_at(0.2, 0.3)
    b.pir_pulse_at(1.4, 0.3)            # the animal moves again mid-burst
    b.run_for(6)
    assert len(b.events) == 1
    post = [f for f in b.events[0].frames if not f.pre_trigger]
    assert len(post) > 4                # 4 planned, more after the re-trigger


def test_a_pir_held_high_extends_the_event_up_to_the_maximum(bench):
    b = bench({"trigger": {"max_event_s": 4}, "burst": {"frames": 2, "interval_s": 0.5},
               "filter": {"enabled": False}})
    b.run_for(1)
    edge_ns = b.pir_pulse_at(0.1, 60)
    b.run_for(8)
    assert len(b.events) == 1
    last_ns = b.events[0].frames[-1].sensor_timestamp_ns
    assert 3 * NS <= last_ns - edge_ns <= 4 * NS


def test_edges_in_the_quiet_period_are_ignored(bench):
    b = bench({"trigger": {"quiet_period_s": 10}, "burst": {"frames": 2, "interval_s": 0.2},
               "filter": {"enabled": False}})
    b.run_for(1)
    b.pir_pulse_at(0.1, 0.2)
    b.pir_pulse_at(3.0, 0.2)            # within 10 s of the first event's end
    b.pir_pulse_at(15.0, 0.2)
    b.run_for(20)
    assert len(b.events) == 2


def test_a_camera_timeout_is_recovered_and_logged(bench, caplog):
    b = bench({"burst": {"frames": 6, "interval_s": 0.5}, "filter": {"enabled": False}})
    b.run_for(1)
    b.pir_pulse_at(0.1)
    b.run_for(1.2)
    caplog.set_level(logging.WARNING)
    b.rig.timeout_next(1)
    b.run_for(6)
    assert "timed out" in caplog.text and "reopening" in caplog.text
    assert "camera error" in (b.events[0].note or "")
    b.pir_pulse_at(0.5)                 # the camera works again afterwards
    b.run_for(5)
    assert len(b.events) == 2 and b.events[1].note is None
    assert sum(f.file is not None for f in b.events[1].frames) >= 5


def test_an_animal_in_view_is_kept_and_empty_burst_frames_are_dropped(bench):
    leopard = AnimalPass("leopard", enter_s=5.5, cross_s=1.2, height=0.3, y=0.8)
    b = bench({"burst": {"frames": 8, "interval_s": 0.5}}, animals=[leopard])
    b.run_for(5)
    b.pir_pulse_at(0.5, 0.5)
    b.run_for(6)
    frames = b.events[0].frames
    truth = [b.scene.truth(f.sensor_timestamp_ns) for f in frames]
    assert "animal" in truth and "empty" in truth
    for f, t in zip(frames, truth):
        if t == "animal":
            assert f.kept
    empty_post = [f for f, t in zip(frames, truth) if t == "empty" and not f.pre_trigger][1:]
    assert empty_post and not any(f.kept for f in empty_post)
