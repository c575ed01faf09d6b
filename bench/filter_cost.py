"""Per-frame cost of the empty-frame filter on lores frames, against the
picamera2 example's mean-squared-difference score measured in the same run.

    .venv/bin/python bench/filter_cost.py [--frames N] [--scenario NAME]

Frames come from the simulator's scene (320x240 Y plane, the lores stream);
timing is wall-clock per call, median over all frames.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from hw_sim.scenario import load_scenario
from hw_sim.scene import Scene
from trapd.config import DEFAULT_CONFIG_PATH, load_config
from trapd.motion import MotionFilter

NS = 1_000_000_000


def lores_frames(scenario_name: str, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    scene = Scene(load_scenario(scenario_name), start_ns=0)
    step = int(scene.scenario.duration_s * NS / count)
    return [cv2.cvtColor(scene.render_bgr(i * step, size), cv2.COLOR_BGR2GRAY) for i in range(count)]


def picamera2_example_score(previous: np.ndarray, current: np.ndarray) -> float:
    """capture_motion.py's score, with the uint8 wrap-around fixed."""
    return float(np.square(current.astype(np.int16) - previous.astype(np.int16)).mean())


def median_ms(score, frames: list[np.ndarray]) -> float:
    times = []
    for previous, current in zip(frames, frames[1:]):
        start = time.perf_counter()
        score(previous, current)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--scenario", default="default")
    args = parser.parse_args()
    config = load_config(DEFAULT_CONFIG_PATH)
    frames = lores_frames(args.scenario, args.frames, config.hardware.camera.lores_size)
    motion = MotionFilter(config.filter, config.hardware.camera)
    motion.set_background(frames[: config.filter.background_frames])

    baseline = median_ms(picamera2_example_score, frames)
    ours = median_ms(lambda _, current: motion.score(current), frames)
    print(f"{len(frames)} lores frames {frames[0].shape[1]}x{frames[0].shape[0]}, median per frame")
    print(f"| filter                               | ms/frame | x baseline |")
    print(f"|--------------------------------------|----------|------------|")
    print(f"| picamera2 example MSE (baseline)     | {baseline:8.3f} | {1.0:10.1f} |")
    print(f"| trapd MotionFilter.score             | {ours:8.3f} | {ours / baseline:10.1f} |")


if __name__ == "__main__":
    main()
