"""trapd's filter against three baselines, on one manifest, at equal animal-frame recall.

    .venv/bin/python bench/filter_baselines.py [MANIFEST] [--config PATH]

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
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from trapd.config import load_config
from trapd.evaluate import load_lores_y, read_manifest, score_sequences, summarise

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1].parent / "shared/data/camtrap/eval-manifest.csv"


class Picamera2Example:
    def __init__(self):
        self.previous = None

    def see(self, frame):
        self.previous = frame

    def score(self, frame):
        if self.previous is None:
            return math.inf
        mse = float(np.square(frame.astype(np.int16) - self.previous.astype(np.int16)).mean())
        self.previous = frame
        return mse


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", default=str(DEFAULT_MANIFEST))
    parser.add_argument("--config")
    args = parser.parse_args()
    config = load_config(args.config)
    sequences = read_manifest(args.manifest)
    ours = summarise(score_sequences(sequences, config))
    recall = ours["animal_frame_recall"]
    print(f"{args.manifest}: {ours['animal_frames']} animal, {ours['empty_frames']} empty test frames")
    print(f"| method                         | animal recall | empty rejection |")
    print(f"|--------------------------------|---------------|-----------------|")
    print(f"| trapd MotionFilter             | {recall:13.3f} | {ours['empty_frame_rejection']:15.3f} |")
    for name, make_method in BASELINES.items():
        _, r, rejection = at_recall(baseline_scores(sequences, config.hardware.camera.lores_size,
                                                    make_method), recall)
        print(f"| {name:30s} | {r:13.3f} | {rejection:15.3f} |")


if __name__ == "__main__":
    main()
