"""The filter for events with no background from before the trigger (standby):
judged by the burst itself and an older view of the empty scene, on the team's
real footage and in a standby simulator scenario."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import exiftool_tags, make_config, require_shared
from hw_sim.run import run_scenario
from hw_sim.scenario import load_scenario
from trapd.burst_filter import BURST, BurstFilter, data_bar
from trapd.evaluate import evaluate


def ground(seed=3, size=(240, 320)):
    rng = np.random.default_rng(seed)
    small = rng.integers(30, 220, (size[0] // 8, size[1] // 8)).astype(np.uint8)
    return cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC)


def test_a_body_moving_through_the_burst_is_kept_and_a_relit_empty_view_dropped(tmp_path):
    config = make_config(tmp_path)
    view = ground()
    frames = []
    for i, gain in enumerate((1.0, 0.7, 1.3, 0.9)):   # the sun comes and goes
        frame = cv2.convertScaleAbs(view, alpha=gain)
        if i >= 2:                                      # an animal walks in
            cv2.ellipse(frame, (60 + 50 * i, 150), (30, 16), 0, 0, 360, 90, -1)
        frames.append(frame)
    judge = BurstFilter(config.filter, config.hardware.camera)
    results = [r for f in frames for r in judge.add(f)] + judge.finish()
    assert [r.keep for r in results] == [False, False, True, True]
    assert {r.reference for r in results} == {BURST}


def test_with_the_filter_off_every_standby_frame_is_kept(tmp_path):
    config = make_config(tmp_path, {"filter": {"enabled": False}})
    judge = BurstFilter(config.filter, config.hardware.camera)
    assert all(r.keep for f in [ground()] * 3 for r in judge.add(f))


def test_a_camera_data_bar_is_found_and_a_dark_sky_is_not():
    frame = ground()
    frame[-18:] = 235                                  # a white bar with text
    cv2.putText(frame, "07-05-2014 10:45:13", (120, 234), cv2.FONT_HERSHEY_PLAIN, 0.8, 0, 1)
    bar = data_bar(frame)
    assert bar is not None and bar[-18:].all() and not bar[:-18].any()
    night = ground()
    night[:80] = 3                                     # a black sky over a third of the view
    assert data_bar(night) is None


def test_standby_stills_against_an_older_view_keep_every_animal_and_drop_half_the_empties(tmp_path):
    report = evaluate(require_shared("data/footage/camtrap-stills.csv"), make_config(tmp_path))
    assert report["animal_sequences_kept"] == report["animal_sequences"]
    assert report["animal_frame_recall"] >= 0.95
    assert report["empty_frame_rejection"] >= 0.50
    assert {f["reference"] for f in report["frames"]} <= {"burst", "older view"}


def test_thermal_windows_and_clips_keep_every_animal_sequence(tmp_path):
    config = make_config(tmp_path)
    windows = evaluate(require_shared("data/footage/thermal.csv"), config)
    assert windows["animal_sequences_kept"] == windows["animal_sequences"]
    assert windows["empty_frame_rejection"] >= 0.95
    assert set(windows["by_condition"]) == {"thermal"}     # the manifest's own condition column
    clips = evaluate(require_shared("data/footage/thermal-animal-clips.csv"), config)
    assert clips["animal_sequences_kept"] == clips["animal_sequences"]


@pytest.fixture(scope="module")
def standby_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("standby")
    return run_scenario(load_scenario("standby"), make_config(path)).report()


def test_standby_scenario_runs_with_the_camera_off_and_drops_most_empty_frames(standby_run):
    summary = standby_run["summary"]
    frames = [f for e in standby_run["events"] for f in e["frames"]]
    assert not any(f["pre_trigger"] for f in frames)
    assert summary["frames_by_reference"].get("burst", 0) > len(frames) / 2   # the burst judged itself
    assert summary["empty_frames"] > 40
    assert summary["empty_frames_dropped"] >= 0.80 * summary["empty_frames"]


def test_each_stored_standby_image_says_what_judged_it(standby_run):
    stored = [f for e in standby_run["events"] for f in e["frames"] if f["file"]]
    tags = exiftool_tags(Path(standby_run["storage_root"]) / stored[0]["file"])
    assert tags["XMP-trap:FilterReference"] == stored[0]["reference"] == "burst"


def test_standby_scenario_loses_no_animal_pass(standby_run):
    summary = standby_run["summary"]
    assert summary["animal_passes"] == 4
    assert summary["animal_events_lost"] == 0
    assert summary["animal_passes_stored"] == summary["animal_passes"]


def test_standby_reference_wakeups_give_the_first_frame_an_older_view(bench):
    b = bench({"power": {"mode": "standby"}, "filter": {"reference_every_s": 60}})
    camera = b.rig.cameras[-1]
    b.run_for(130.0)
    assert b.trap.references_taken == 2 and not camera.started
    b.pir_pulse_at(0.5, 0.2)
    b.run_for(5.0)
    b.trap.finish()
    event, = b.events
    first = event.frames[0]
    assert first.reference == "older view" and not first.kept   # the view is empty: dropped at once
    assert not camera.started


def test_without_reference_wakeups_standby_never_starts_the_camera_while_quiet(bench):
    b = bench({"power": {"mode": "standby"}})
    b.run_for(130.0)
    assert b.trap.references_taken == 0 and not b.rig.cameras[-1].started
