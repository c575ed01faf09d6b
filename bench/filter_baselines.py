"""trapd's filter against three baselines, on one manifest, at equal animal-frame recall.

    .venv/bin/python bench/filter_baselines.py [MANIFEST] [--config PATH]
    .venv/bin/python bench/filter_baselines.py --sim [SCENARIO ...]

Baselines (each scores every test frame; its threshold is then set as high
as it can go while keeping at least trapd's animal-frame recall):
- picamera2 example: mean squared difference to the previous frame
  (capture_motion.py), with its uint8 wrap-around fixed;
- Frigate-style: running-average background (accumulateWeighted), blur,
  threshold, dilate, largest contour area;
- OpenCV MOG2: mixture-of-Gaussians background subtractor, foreground share.
Every method sees the same frames: the sequence's background frames first,
then its test frames in order; a frame with nothing before it to compare
with is kept by every method (scored infinite).

With --sim the frames are those trapd's filter saw in the simulator
scenarios (default: all), recorded as the trap ran, one sequence per event:
its background frames, then every frame scored, labelled by the scene's
ground truth; a frame the trap rebased on after a light or lamp switch is
shown to the baselines as background too (seen, not scored).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import tempfile
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

from hw_sim.run import run_scenario
from hw_sim.scenario import SCENARIO_DIR, load_scenario
from trapd.config import load_config
from trapd.evaluate import load_lores_y, read_manifest, score_sequences, summarise
from trapd.motion import MotionFilter

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1].parent / "shared/data/camtrap/eval-manifest.csv"


class Picamera2Example:
    def __init__(self):
        self.previous = None

    def see(self, frame):
        self.previous = frame

    def score(self, frame):
        previous, self.previous = self.previous, frame
        if previous is None:
            return math.inf
        return float(np.square(frame.astype(np.int16) - previous.astype(np.int16)).mean())


class FrigateStyle:
    """After frigate/motion/improved_motion.py: running average, threshold, contours."""

    ALPHA, THRESHOLD = 0.2, 30

    def __init__(self):
        self.average = None

    def _blur(self, frame):
        return cv2.GaussianBlur(frame, (3, 3), 0).astype(np.float32)

    def see(self, frame):
        if self.average is None:
            self.average = self._blur(frame)
        cv2.accumulateWeighted(self._blur(frame), self.average, self.ALPHA)

    def score(self, frame):
        if self.average is None:
            self.see(frame)
            return math.inf
        blurred = self._blur(frame)
        delta = cv2.absdiff(blurred, self.average)
        cv2.accumulateWeighted(blurred, self.average, self.ALPHA)
        mask = cv2.dilate((delta > self.THRESHOLD).astype(np.uint8), None, iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        return max((cv2.contourArea(c) for c in contours), default=0.0) / mask.size


class Mog2:
    def __init__(self):
        self.subtractor = cv2.createBackgroundSubtractorMOG2(history=50, detectShadows=True)
        self.seen = 0

    def see(self, frame):
        self.subtractor.apply(frame)
        self.seen += 1

    def score(self, frame):
        foreground = self.subtractor.apply(frame)
        if not self.seen:
            self.seen += 1
            return math.inf
        moving = cv2.morphologyEx((foreground == 255).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        return float(moving.mean())


BASELINES = {"picamera2 example MSE": Picamera2Example, "Frigate-style running average": FrigateStyle,
             "OpenCV MOG2": Mog2}


def baseline_scores(sequences, lores_size, make_method) -> list[tuple[float, str]]:
    scored = []
    for sequence in sequences:
        method = make_method()
        for row in sequence:
            frame = load_lores_y(row.file, lores_size)
            if row.role == "background":
                method.see(frame)
            else:
                scored.append((method.score(frame), row.label))
    return scored


def at_recall(scored: list[tuple[float, str]], recall: float) -> tuple[float, float, float]:
    """(threshold, recall, empty rejection) with the highest threshold that keeps `recall`."""
    animal = sorted((s for s, label in scored if label == "animal"), reverse=True)
    empty = [s for s, label in scored if label == "empty"]
    needed = max(1, math.ceil(recall * len(animal) - 1e-9))
    threshold = animal[needed - 1]
    kept_animal = sum(s >= threshold for s in animal)
    dropped_empty = sum(s < threshold for s in empty)
    return threshold, kept_animal / len(animal), dropped_empty / len(empty) if empty else 0.0


def record_filter_inputs(sequences: list[list[tuple]]) -> None:
    """Make every MotionFilter append what it is shown to `sequences`, one list
    per event: ("background", frame) for its background frames, ("rebase",
    frame) for a frame it rebased on, ("score", frame, previous camera frame)."""
    real_set, real_rebase, real_score = (MotionFilter.set_background, MotionFilter.rebase,
                                         MotionFilter.score)

    def set_background(self, frames):
        sequences.append([("background", f.copy()) for f in frames])
        return real_set(self, frames)

    def rebase(self, lores_y):
        if sequences:
            sequences[-1].append(("rebase", lores_y.copy()))
        return real_rebase(self, lores_y)

    def score(self, lores_y, previous=None):
        sequences[-1].append(("score", lores_y.copy(), None if previous is None else previous.copy()))
        return real_score(self, lores_y, previous)

    MotionFilter.set_background, MotionFilter.rebase, MotionFilter.score = set_background, rebase, score


def recorded_filter_inputs(name: str) -> tuple[list[list[tuple]], dict]:
    """What trapd's filter was shown, per event (see record_filter_inputs), in one run of
    the scenario with the shipped config (main stream 640x480: the filter sees only the
    unchanged lores stream), and the run's report. Run it in a child process: it
    patches MotionFilter for good."""
    logging.disable(logging.WARNING)
    config = load_config()
    camera = dataclasses.replace(config.hardware.camera, main_size=(640, 480))
    config = dataclasses.replace(config, hardware=dataclasses.replace(config.hardware, camera=camera))
    sequences: list[list[tuple]] = []
    record_filter_inputs(sequences)
    with tempfile.TemporaryDirectory() as storage:
        report = run_scenario(load_scenario(name), config, storage).report()
    return sequences, report


def sim_scores(name: str) -> dict[str, list[tuple[float, str]]]:
    """Ours ((1 if kept else 0), truth) and each baseline's (score, truth), per frame the
    trap scored in one scenario run."""
    sequences, report = recorded_filter_inputs(name)
    frames = [f for e in report["events"] for f in e["frames"]]
    truths = [f["truth"] for f in frames]
    scored = {"trapd MotionFilter": [(float(f["kept"]), f["truth"]) for f in frames]}
    for method_name, make_method in BASELINES.items():
        scores = []
        for sequence in sequences:
            method = make_method()
            for role, frame, *_ in sequence:
                if role == "score":
                    scores.append(method.score(frame))
                else:
                    method.see(frame)
        assert len(scores) == len(truths), (name, len(scores), len(truths))
        scored[method_name] = list(zip(scores, truths))
    return scored


def print_table(rows: list[tuple[str, float, float]]) -> None:
    print("| method                         | animal recall | empty rejection |")
    print("|--------------------------------|---------------|-----------------|")
    for name, recall, rejection in rows:
        print(f"| {name:30s} | {recall:13.3f} | {rejection:15.3f} |")


def compare_on_sim(names: list[str]) -> None:
    with Pool(2) as pool:
        runs = pool.map(sim_scores, names)
    pooled = {name: [x for run in runs for x in run[name]] for name in runs[0]}
    ours = pooled.pop("trapd MotionFilter")
    animal = [kept for kept, truth in ours if truth == "animal"]
    empty = [kept for kept, truth in ours if truth == "empty"]
    recall = sum(animal) / len(animal)
    rows = [("trapd MotionFilter", recall, 1 - sum(empty) / len(empty))]
    for name, scored in pooled.items():
        _, r, rejection = at_recall(scored, recall)
        rows.append((name, r, rejection))
    print(f"simulator scenarios {', '.join(names)}: {len(animal)} animal, {len(empty)} empty frames scored")
    print_table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", default=str(DEFAULT_MANIFEST))
    parser.add_argument("--config")
    parser.add_argument("--sim", nargs="*", metavar="SCENARIO",
                        help="compare on simulator scenarios instead (default: all)")
    args = parser.parse_args()
    if args.sim is not None:
        compare_on_sim(args.sim or sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
        return
    config = load_config(args.config)
    sequences = read_manifest(args.manifest)
    ours = summarise(score_sequences(sequences, config))
    recall = ours["animal_frame_recall"]
    print(f"{args.manifest}: {ours['animal_frames']} animal, {ours['empty_frames']} empty test frames")
    rows = [("trapd MotionFilter", recall, ours["empty_frame_rejection"])]
    for name, make_method in BASELINES.items():
        _, r, rejection = at_recall(baseline_scores(sequences, config.hardware.camera.lores_size,
                                                    make_method), recall)
        rows.append((name, r, rejection))
    print_table(rows)


if __name__ == "__main__":
    main()
