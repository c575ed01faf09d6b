"""`trapd eval-filter` and the filter's measured quality: on the team's real
camera-trap set and on simulated scenarios with ground truth."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO, make_config, require_shared
from hw_sim.scenario import load_scenario
from hw_sim.run import run_scenario
from trapd.evaluate import ManifestError, evaluate, read_manifest

TRAPD = [sys.executable, "-m", "trapd.cli"]


def write_sequence(folder, name, frames):
    paths = []
    for i, frame in enumerate(frames):
        path = folder / f"{name}_{i}.png"
        cv2.imwrite(str(path), frame)
        paths.append(path.name)
    return paths


def scene(seed=1):
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(40, 200, (24, 32)).astype(np.uint8), (640, 480),
                      interpolation=cv2.INTER_CUBIC)


@pytest.fixture
def small_manifest(tmp_path):
    """One sequence: 3 empty background frames, then an empty and an animal test frame."""
    background = scene()
    animal = background.copy()
    cv2.ellipse(animal, (320, 300), (80, 45), 0, 0, 360, 230, -1)
    names = write_sequence(tmp_path, "s", [background] * 4 + [animal])
    rows = ["file,sequence_id,frame_index,label,role"]
    rows += [f"{n},s1,{i},empty,background" for i, n in enumerate(names[:3])]
    rows += [f"{names[3]},s1,3,empty,test", f"{names[4]},s1,4,animal,test"]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_eval_filter_json_has_the_documented_fields(small_manifest):
    result = subprocess.run(TRAPD + ["eval-filter", str(small_manifest), "--json"],
                            capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert report["animal_frames"] == 1 and report["empty_frames"] == 1
    assert report["animal_frames_kept"] == 1 and report["empty_frames_dropped"] == 1
    assert report["animal_frame_recall"] == 1.0 and report["empty_frame_rejection"] == 1.0
    assert report["precision"] == 1.0 and report["animal_sequences_kept"] == 1
    assert report["ms_per_frame"] > 0
    assert [(f["label"], f["kept"]) for f in report["frames"]] == [("empty", False), ("animal", True)]
    assert report["by_condition"]


def test_eval_filter_debug_dir_has_a_picture_per_frame_and_a_sheet(small_manifest, tmp_path):
    out = tmp_path / "debug"
    subprocess.run(TRAPD + ["eval-filter", str(small_manifest), "--debug-dir", str(out)], check=True,
                   capture_output=True)
    assert len(list((out / "s1").glob("*.png"))) == 2
    sheet = cv2.imread(str(out / "s1_sheet.png"))
    assert sheet is not None and sheet.shape[1] >= 2 * 320


def test_a_manifest_with_mistakes_names_each(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,sequence_id,frame_index,label\n"
                        "a.png,s,0,cat\nmissing.png,s,1,empty\na.png,s,x,empty\n")
    with pytest.raises(ManifestError) as error:
        read_manifest(manifest)
    text = str(error.value)
    assert "m.csv:2" in text and "'cat'" in text
    assert "m.csv:3" in text and "missing.png" in text
    assert "m.csv:4" in text and "frame_index" in text


def test_a_manifest_without_the_required_columns_is_refused(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n")
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(manifest)


def test_on_the_real_camera_trap_set_every_animal_is_kept_and_most_empties_dropped(tmp_path):
    manifest = require_shared("data/camtrap/eval-manifest.csv")
    report = evaluate(manifest, make_config(tmp_path))
    assert report["animal_sequences_kept"] == report["animal_sequences"]
    assert report["animal_frame_recall"] >= 0.95
    assert report["empty_frame_rejection"] >= 0.80


@pytest.mark.parametrize("name", ["wind", "clouds", "ir-switching", "rain"])
def test_scenarios_without_animals_drop_nearly_every_frame(name, tmp_path):
    summary = run_scenario(load_scenario(name), make_config(tmp_path)).report()["summary"]
    assert summary["empty_frames"] > 20, "the scenario's false triggers should make events"
    assert summary["empty_frames_dropped"] >= 0.95 * summary["empty_frames"]


ANIMAL_SCENARIOS = ["animals", "default", "sunset-window", "unsynced-clock"]


def test_in_the_animal_scenarios_no_animal_is_lost(tmp_path):
    summaries = [run_scenario(load_scenario(name), make_config(tmp_path / name)).report()["summary"]
                 for name in ANIMAL_SCENARIOS]
    for name, summary in zip(ANIMAL_SCENARIOS, summaries):
        assert summary["animal_frames"] > 10, name
        assert summary["animal_events_lost"] == 0, name
        assert summary["animal_passes_stored"] == summary["animal_passes"], name
    kept = sum(s["animal_frames_kept"] for s in summaries)
    assert kept >= 0.98 * sum(s["animal_frames"] for s in summaries)


def test_camera_shake_of_real_photos_leaves_fewer_than_half_the_false_triggers():
    require_shared("data/camtrap/manifest.csv")
    result = subprocess.run([sys.executable, str(REPO / "bench" / "filter_shake.py")],
                            capture_output=True, text=True, timeout=300, check=True)
    kept = {line.split("|")[1].strip(): int(line.split("|")[2].split("/")[0])
            for line in result.stdout.splitlines() if "/" in line and line.startswith("|")}
    assert kept["trapd MotionFilter"] < 0.5 * kept["baseline: without the shift test"]
