"""Real clips as simulator scenarios: `footage:` plays a folder of frames or an
evaluation manifest to the simulated camera, the PIR fires on the frames
labelled animal, and `trapd sim` scores every frame the trap judged against
the label of the footage frame shown at its SensorTimestamp.

The counts asserted come from the labels (read here with the csv module), never
from what the filter happened to keep."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import NS, require_shared, write_config
from hw_sim.footage_scene import FootageScene
from hw_sim.picamera2 import CameraRig
from hw_sim.scenario import ScenarioError, load_scenario, parse_scenario
from trapd.clock import VirtualClock
from trapd.cli import main

REPO = Path(__file__).resolve().parents[1]
POSSUM = REPO / "hw_sim" / "scenarios" / "footage" / "possum.yaml"


# --- helpers -------------------------------------------------------------------------------

def write_frames(folder: Path, count: int, animal: range, size=(160, 120)) -> Path:
    """PNG frames of a textured ground; a warm blob crosses in the `animal` frames."""
    folder.mkdir(parents=True)
    w, h = size
    ground = cv2.GaussianBlur(np.random.default_rng(5).integers(40, 120, (h, w), np.uint8), (9, 9), 0)
    for i in range(count):
        frame = ground.copy()
        if i in animal:
            x = int(w * (i - animal.start + 1) / (len(animal) + 1))
            cv2.ellipse(frame, (x, h * 2 // 3), (w // 8, h // 10), 0, 0, 360, 230, -1)
        cv2.imwrite(str(folder / f"f{i:03d}.png"), frame)
    return folder


def write_labels(path: Path, folder: Path, labels: dict[int, str]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "sequence_id", "frame_index", "label"])
        for i, label in labels.items():
            writer.writerow([f"{folder.name}/f{i:03d}.png", "clip", i, label])
    return path


def labels_by_name(manifest: Path, folder: Path | None = None) -> dict[str, str]:
    """File name -> label, as the CSV says (only files in `folder` when given)."""
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {Path(r["file"]).name: r["label"] for r in rows
            if folder is None or (manifest.parent / r["file"]).parent.resolve() == folder.resolve()}


def runs_of_animal(labels_in_order: list[str | None]) -> list[tuple[int, int]]:
    runs, first = [], None
    for i, label in enumerate(labels_in_order + [None]):
        if label == "animal" and first is None:
            first = i
        elif label != "animal" and first is not None:
            runs.append((first, i - 1))
            first = None
    return runs


def sim(tmp_path: Path, scenario: Path, capsys) -> dict:
    config = write_config(tmp_path / "config.yaml", tmp_path)
    report = tmp_path / "report.json"
    code = main(["sim", str(scenario), "--config", str(config),
                 "--storage", str(tmp_path / "storage"), "--report", str(report)])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    return json.loads(report.read_text())


def scored_frames(report: dict) -> list[dict]:
    return [f for e in report["events"] for f in e["frames"]]


def assert_scored_against_labels(report: dict, names_in_order: list[str], label_of: dict[str, str]):
    """Every scored frame is the footage frame shown at its SensorTimestamp, judged by its label,
    and the summary's counts are the labels' counts."""
    footage = report["footage"]
    frames = scored_frames(report)
    assert frames, "the trap scored no frame"
    for f in frames:
        index = math.floor((f["sensor_timestamp_ns"] - footage["start_ns"]) * footage["frame_rate"] / NS + 1e-9)
        shown = names_in_order[index] if 0 <= index < len(names_in_order) else None
        assert f["footage_frame"] == (index if shown else None)
        assert f["footage_file"] == shown
        assert f["truth"] == (label_of.get(shown) or "unlabelled")
    truths = [label_of.get(f["footage_file"]) for f in frames]
    summary = report["summary"]
    animal = [f for f, t in zip(frames, truths) if t == "animal"]
    empty = [f for f, t in zip(frames, truths) if t == "empty"]
    assert summary["animal_frames"] == len(animal)
    assert summary["animal_frames_kept"] == sum(f["kept"] for f in animal)
    assert summary["empty_frames"] == len(empty)
    assert summary["empty_frames_dropped"] == sum(not f["kept"] for f in empty)
    assert summary["unlabelled_frames"] == len(frames) - len(animal) - len(empty)
    runs = runs_of_animal([label_of.get(name) for name in names_in_order])
    assert footage["passes"] == [list(r) for r in runs]
    assert summary["animal_passes"] == len(runs)
    return runs


def pir_edges_s(report: dict) -> list[float]:
    start = report["footage"]["start_ns"]
    return [(e["pir_edge_ns"] - start) / NS for e in report["events"] if e["trigger"] == "pir"]


# --- generated frames (no ../shared needed) -----------------------------------------------

GENERATED = """\
name: generated-clip
footage: {path: frames, labels: labels.csv, frame_rate: 5}
pir:
  delay_s: 0.2
  false_triggers:
    - {at_s: 10.0, duration_s: 0.5}
"""


@pytest.fixture
def generated_clip(tmp_path):
    """60 frames at 5 frames/s: empty 0-9, animal 10-19, unlabelled 20-21, empty 22-59."""
    folder = write_frames(tmp_path / "frames", 60, range(10, 20))
    labels = {i: "animal" if 10 <= i < 20 else "empty" for i in range(60) if i not in (20, 21)}
    write_labels(tmp_path / "labels.csv", folder, labels)
    scenario = tmp_path / "clip.yaml"
    scenario.write_text(GENERATED)
    return scenario, folder


def test_a_folder_of_frames_is_played_and_scored_against_its_labels(generated_clip, tmp_path, capsys):
    scenario, folder = generated_clip
    report = sim(tmp_path, scenario, capsys)

    names = sorted(p.name for p in folder.glob("*.png"))
    runs = assert_scored_against_labels(report, names, labels_by_name(tmp_path / "labels.csv"))
    assert runs == [(10, 19)]
    assert report["footage"]["frames"] == 60 and report["footage"]["duration_s"] == 12.0
    # The PIR: one edge delay_s after the pass's first frame shows, one for the false trigger.
    assert pir_edges_s(report) == pytest.approx([10 / 5 + 0.2, 10.0], abs=0.01)
    assert report["summary"]["animal_frames"] > 0 and report["summary"]["empty_frames"] > 0
    assert report["power_mode"] == "streaming"
    assert all("reference" in f for f in scored_frames(report))


def test_the_camera_shows_the_footage_frame_of_each_sensor_timestamp_scaled(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):           # frame i is flat grey 20 + 15 i, with a white corner
        frame = np.full((60, 80), 20 + 15 * i, np.uint8)
        frame[:30, :40] = 255
        cv2.imwrite(str(folder / f"{i:02d}.png"), frame)
    scenario = parse_scenario("footage: {path: frames, frame_rate: 7}\n", base_dir=tmp_path)
    clock = VirtualClock()
    scene = FootageScene(scenario, clock.monotonic_ns())
    camera = CameraRig(scene, clock).picamera2_class()
    try:
        camera.configure(camera.create_video_configuration(
            main={"size": (320, 240), "format": "RGB888"}, lores={"size": (160, 120)}))
        camera.start()
        shown = []
        for _ in range(45):
            request = camera.capture_request(wait=1)
            image, ts = request.make_array("main"), request.get_metadata()["SensorTimestamp"]
            lores_y = request.make_array("lores")[:120, :160]
            request.release()
            index = scene.frame_index(ts)
            if index is None:
                continue
            shown.append(index)
            assert image.shape == (240, 320, 3)
            assert image[200, 300].tolist() == [20 + 15 * index] * 3       # the grey half
            assert image[50, 60].tolist() == [255] * 3                      # the white corner, scaled
            # the same frame in the lores Y plane (limited-range BT.601 at this size: 16..235)
            assert abs(int(lores_y[100, 150]) - (16 + (20 + 15 * index) * 219 / 255)) <= 1
    finally:
        camera.close()
    assert len(set(shown)) >= 5


def test_power_mode_standby_overrides_the_config(generated_clip, tmp_path, capsys):
    scenario, _ = generated_clip
    scenario.write_text(GENERATED + "power_mode: standby\n")
    report = sim(tmp_path, scenario, capsys)

    assert report["power_mode"] == "standby"
    # Camera off while idle: started on the PIR edge, so no frame from before it.
    assert report["events"] and not any(f["pre_trigger"] for f in scored_frames(report))


# --- mistakes are ScenarioErrors with line, key path and what is valid ------------------------

@pytest.mark.parametrize("text, path, line, words", [
    ("footage: {path: nowhere, frame_rate: 9}\n", "footage.path", 1, "no such folder or manifest"),
    ("footage:\n  path: frames\n", "footage.frame_rate", None, "0.01 to 1000"),
    ("footage:\n  path: frames\n  frame_rate: 0\n", "footage.frame_rate", 3, "0.01 to 1000"),
    ("footage:\n  path: frames\n  frame_rate: 9\n  labels: none.csv\n", "footage.labels", 4,
     "no such labels file"),
    ("footage:\n  path: frames\n  frame_rate: 9\n  sequence: a\n", "footage.sequence", 4,
     "only for a manifest"),
    ("duration_s: 5\nfootage: {frame_rate: 9}\n", "footage.frame_rate", 2, "needs footage.path"),
    ("duration_s: 5\npower_mode: sleepy\n", "power_mode", 2, "one of streaming, standby"),
    ("footage: {path: frames, frame_rate: 9}\nanimals:\n  - {species: hare, enter_s: 1, "
     "cross_s: 2, height: 0.1}\n", "animals", 2, "cannot be used with footage"),
    ("seed: 3\n", "duration_s", None, "may be left out with footage"),
])
def test_footage_and_power_mode_mistakes_name_line_key_and_what_is_valid(tmp_path, text, path, line,
                                                                         words):
    write_frames(tmp_path / "frames", 3, range(0))
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(text, str(tmp_path / "s.yaml"))
    [problem] = raised.value.problems
    assert (problem.path, problem.line) == (path, line) and words in str(problem)


def test_trapd_sim_names_a_missing_footage_folder_in_one_line(tmp_path, capsys):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("footage:\n  path: ../gone/frames\n  frame_rate: 9\n")

    assert main(["sim", str(scenario)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"s.yaml:2: footage.path: no such folder or manifest: {tmp_path}/../gone/frames" in err


def test_a_folder_labelled_by_a_csv_naming_none_of_its_frames_is_refused(tmp_path):
    write_frames(tmp_path / "frames", 3, range(0))
    write_labels(tmp_path / "labels.csv", write_frames(tmp_path / "other", 3, range(0)), {0: "empty"})
    with pytest.raises(ScenarioError, match="labels none of the frames"):
        parse_scenario("footage: {path: frames, labels: labels.csv, frame_rate: 9}\n",
                       str(tmp_path / "s.yaml"))


# --- real footage from ../shared ------------------------------------------------------------

def test_the_possum_clip_scenario_is_scored_against_its_labels(tmp_path, capsys):
    folder = require_shared("data/footage/frames8/cp_possum_ospri13")
    labels = require_shared("data/footage/thermal.csv")
    report = sim(tmp_path, POSSUM, capsys)

    names = sorted(p.name for p in folder.glob("*.png"))
    runs = assert_scored_against_labels(report, names, labels_by_name(labels, folder))
    assert report["footage"]["frames"] == len(names) == 160
    assert report["summary"]["animal_frames"] > 0 and report["summary"]["empty_frames"] > 0
    pass_start_s = runs[0][0] / 9 + load_scenario(POSSUM).pir.delay_s
    assert pir_edges_s(report)[0] == pytest.approx(pass_start_s, abs=0.01)


CAMTRAP_BURST = "mica_62c200a9_ev7245a2aa"


def test_a_camtrap_manifest_sequence_is_played_in_standby_and_scored(tmp_path, capsys):
    manifest = require_shared("data/camtrap/manifest.csv")
    scenario = tmp_path / "burst.yaml"
    scenario.write_text(f"footage: {{path: {manifest}, sequence: {CAMTRAP_BURST}, frame_rate: 1}}\n"
                        "power_mode: standby\nconditions:\n  - {from_s: 0, light: night}\n")
    report = sim(tmp_path, scenario, capsys)

    with manifest.open(newline="") as f:
        rows = sorted((r for r in csv.DictReader(f) if r["sequence_id"] == CAMTRAP_BURST),
                      key=lambda r: int(r["frame_index"]))
    names = [Path(r["file"]).name for r in rows]
    runs = assert_scored_against_labels(report, names, {Path(r["file"]).name: r["label"] for r in rows})
    assert report["footage"]["frames"] == len(rows) and report["power_mode"] == "standby"
    assert len(runs) == 1 and report["summary"]["animal_frames"] > 0
