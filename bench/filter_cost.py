"""Per-frame cost of the empty-frame filter on lores frames, on one core,
beside two references measured in the same run: the picamera2 example's
mean-squared-difference score, and one full-resolution (4056x3040) JPEG
encode from YUV420 planes with simplejpeg, what saving a kept frame costs.
Also the process's peak RSS before and after all the scoring (the filter
must not grow).

    .venv/bin/python bench/filter_cost.py [--frames N] [--scenario NAME]

Frames come from the simulator's scene (320x240 Y plane, the lores stream);
timing is wall-clock per call, median over all frames. Two mixes: the
scenario's frames over its whole length against one background from its start
(a worst case: about half are candidates), and exactly what the trap's filter
is shown in one run of the scenario (each event's own background, every frame
it scores with the frame before it, the rebases), replayed and timed here.
Standby (trapd.burst_filter): frames of the standby scenario in events of 5
burst frames with 4 camera frames between each, timed per frame judged and
per camera frame observed between them.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from multiprocessing import Pool

import cv2
import numpy as np
import simplejpeg

from filter_baselines import recorded_filter_inputs
from hw_sim.scenario import load_scenario
from hw_sim.scene import Scene
from trapd.config import DEFAULT_CONFIG_PATH, load_config
from trapd.burst_filter import BurstFilter
from trapd.motion import MotionFilter

NS = 1_000_000_000


def lores_frames(scenario_name: str, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    scene = Scene(load_scenario(scenario_name), start_ns=0)
    step = int(scene.scenario.duration_s * NS / count)
    return [cv2.cvtColor(scene.render_bgr(i * step, size), cv2.COLOR_BGR2GRAY) for i in range(count)]


def picamera2_example_score(previous: np.ndarray, current: np.ndarray) -> float:
    """capture_motion.py's score, with the uint8 wrap-around fixed."""
    return float(np.square(current.astype(np.int16) - previous.astype(np.int16)).mean())


def call_ms(score, frames: list[np.ndarray]) -> list[float]:
    times = []
    for previous, current in zip(frames, frames[1:]):
        start = time.perf_counter()
        score(previous, current)
        times.append((time.perf_counter() - start) * 1000)
    return times


def median_of(times: list[float], kept: list[bool], which: bool) -> str:
    chosen = [t for t, k in zip(times, kept) if k == which]
    return f"{statistics.median(chosen):.3f}" if chosen else "-"


def median_ms(score, frames: list[np.ndarray]) -> float:
    return statistics.median(call_ms(score, frames))


def as_the_trap_scores(config, events: list[list[tuple]]) -> tuple[list[float], list[bool]]:
    """ms per score and keep, replaying what the trap's filter was shown."""
    times, kept = [], []
    for event in events:
        motion = MotionFilter(config.filter, config.hardware.camera)
        motion.set_background([frame for role, frame, *_ in event if role == "background"])
        for role, frame, *previous in event:
            if role == "rebase":
                motion.rebase(frame)
            elif role == "score":
                start = time.perf_counter()
                kept.append(motion.score(frame, previous[0]).keep)
                times.append((time.perf_counter() - start) * 1000)
    return times, kept


def standby_ms(config, scenario_name: str = "standby", events: int = 12,
               burst_frames: int = 5, between: int = 4) -> tuple[list[float], list[float]]:
    """ms per burst frame judged (`add`) and per camera frame between them
    (`observe`), as the trap calls the standby filter: events of `burst_frames`
    frames with `between` camera frames between each, spread over the scenario."""
    per_event = burst_frames * (between + 1)
    frames = lores_frames(scenario_name, events * per_event, config.hardware.camera.lores_size)
    judged, observed = [], []
    for e in range(events):
        judge = BurstFilter(config.filter, config.hardware.camera)
        for i, frame in enumerate(frames[e * per_event:(e + 1) * per_event]):
            start = time.perf_counter()
            if i % (between + 1) == 0:
                judge.add(frame)
                judged.append((time.perf_counter() - start) * 1000)
            else:
                judge.observe(frame)
                observed.append((time.perf_counter() - start) * 1000)
        judge.finish()
    return judged, observed


def full_resolution_encode_ms(repeats: int = 5) -> float:
    w, h = 4056, 3040
    rng = np.random.default_rng(0)
    y = cv2.resize(rng.integers(0, 255, (76, 101), np.uint8), (w, h))
    u = np.full((h // 2, w // 2), 128, np.uint8)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        simplejpeg.encode_jpeg_yuv_planes(y, u, u, quality=90)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--scenario", default="default")
    args = parser.parse_args()
    with Pool(1) as child:   # recording patches MotionFilter: not in this process
        events, _ = child.apply(recorded_filter_inputs, (args.scenario,))
    cv2.setNumThreads(1)
    config = load_config(DEFAULT_CONFIG_PATH)
    frames = lores_frames(args.scenario, args.frames, config.hardware.camera.lores_size)
    motion = MotionFilter(config.filter, config.hardware.camera)
    motion.set_background(frames[: config.filter.background_frames])

    baseline = median_ms(picamera2_example_score, frames)
    motion.score(frames[-1])
    rss_before = peak_rss_mb()
    # With the previous camera frame, as the trap calls it (the confirmation
    # runs only for frames that would be kept).
    kept = []
    times = call_ms(lambda previous, current: kept.append(motion.score(current, previous).keep),
                    frames * 3)
    ours = statistics.median(times)
    trap_times, trap_kept = as_the_trap_scores(config, events)
    standby_judged, standby_observed = standby_ms(config)
    rss_after = peak_rss_mb()
    encode = full_resolution_encode_ms()
    print(f"{len(frames) * 3} scores of {len(frames)} lores frames "
          f"{frames[0].shape[1]}x{frames[0].shape[0]}, one core, median per call")
    print(f"| step                                 | ms/frame | % of a 12 MP JPEG encode |")
    print(f"|--------------------------------------|----------|--------------------------|")
    print(f"| picamera2 example MSE (baseline)     | {baseline:8.3f} | {100 * baseline / encode:23.1f}% |")
    print(f"| trapd MotionFilter.score             | {ours:8.3f} | {100 * ours / encode:23.1f}% |")
    trap = statistics.median(trap_times)
    print(f"| the same, as the trap scores them    | {trap:8.3f} | {100 * trap / encode:23.1f}% |")
    judged, observed = statistics.median(standby_judged), statistics.median(standby_observed)
    print(f"| standby: a burst frame judged        | {judged:8.3f} | {100 * judged / encode:23.1f}% |")
    print(f"| standby: a camera frame between them | {observed:8.3f} | {100 * observed / encode:23.1f}% |")
    per_event = (sum(standby_judged) + sum(standby_observed)) / 12
    print(f"| standby: one event of 5 + 20 frames  | {per_event:8.3f} | {100 * per_event / encode:23.1f}% |")
    print(f"| simplejpeg 4056x3040 YUV420 encode   | {encode:8.3f} | {100.0:23.1f}% |")
    print(f"{sum(kept)} of {len(kept)} scored frames kept (each checked against the frame before); "
          f"median {median_of(times, kept, True)} ms for those kept, "
          f"{median_of(times, kept, False)} ms for those dropped")
    print(f"as the trap scores them in one run of {args.scenario}: {len(trap_times)} frames of "
          f"{len(events)} events, {sum(trap_kept)} kept; median {median_of(trap_times, trap_kept, True)} ms "
          f"for those kept, {median_of(trap_times, trap_kept, False)} ms for those dropped")
    print(f"peak RSS {rss_before:.1f} MB before scoring, {rss_after:.1f} MB after")


if __name__ == "__main__":
    main()
