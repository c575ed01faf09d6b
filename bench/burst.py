"""Burst throughput and peak memory at 12 MP (4056x3040), capture to fsync'd file.

A 12 MP YUV420 frame (what the camera hands over) is pushed through trapd's
own FrameWriter: copy out of the "camera buffer", encode (simplejpeg from YUV
planes) + EXIF/XMP tag on worker threads, durable write (tmp, fsync, rename).
The limit is measured in the same run: number of cores x the rate of one
single-threaded simplejpeg encode from YUV planes. Limit and bursts are
measured in alternating rounds and each figure is the median over the rounds,
so a busy moment on a shared machine does not land on one side only; each
round also compares its sustained rate with the limit measured just before
and just after that burst (the machine's speed drifts within seconds).

Usage: .venv/bin/python bench/burst.py [--frames 30] [--rounds 3] [--workers N]
Peak RSS (ru_maxrss) is read in a fresh child process running only a 10-frame
burst, so the parent's imports and other runs do not count.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg


from trapd.camera import yuv420_planes
from trapd.storage import Store
from trapd.writer import FrameWriter, YuvCopy, default_workers

W, H = 4056, 3040
STRIDE = 4096   # YUV420 stride rounded up to 64, as picamera2 lays it out
MEMORY_BURST_FRAMES = 10


def camera_frame(seed: int) -> np.ndarray:
    """A textured 12 MP YUV420 buffer (shape (h*3/2, stride)), like a scene, not flat."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (H * 3 // 2 // 16, STRIDE // 16), dtype=np.uint8)
    frame = np.repeat(np.repeat(small, 16, axis=0), 16, axis=1)
    frame += rng.integers(0, 8, frame.shape, dtype=np.uint8)
    return frame


class FakeRequest:
    def __init__(self, array):
        self.array = array

    def make_array(self, name):
        return self.array.copy()   # picamera2's make_array copies


class FakeFrame:
    def __init__(self, array):
        self.request = FakeRequest(array)
        self.main_size = (W, H)


def single_encode_rate(frame: np.ndarray, repeats: int = 4) -> float:
    y, u, v = yuv420_planes(frame, W, H)
    simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=90)
    t = time.perf_counter()
    for _ in range(repeats):
        simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=90)
    return repeats / (time.perf_counter() - t)


def threaded_encode_rate(frame: np.ndarray, threads: int, per_thread: int = 2) -> float:
    """Encodes/s with `threads` threads encoding at once and nothing else:
    near the limit when simplejpeg releases the GIL while it encodes."""
    import threading
    y, u, v = yuv420_planes(frame, W, H)

    def work():
        for _ in range(per_thread):
            simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=90)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    t = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return threads * per_thread / (time.perf_counter() - t)


def burst(frames: int, workers: int, root: Path) -> tuple[float, float]:
    """(whole burst, sustained) frames/s: from the first copy to the last
    fsync'd file, and between the first and the last file made durable
    (the rate once the pipeline is full)."""
    store = Store(root, 0)
    writer = FrameWriter(store.save_file, time.monotonic_ns, workers=workers)
    buffer = camera_frame(1)
    written = []
    start_ns = time.monotonic_ns()
    for i in range(frames):
        writer.submit(YuvCopy.of(FakeFrame(buffer)), 90, lambda j: j, f"b/{i:03d}.jpg",
                      lambda w: written.append((w.saved, w.stored_ns)))   # the JPEG bytes go, as in trapd
        writer.collect()
    writer.close()
    store.close()
    assert len(written) == frames and all(saved for saved, _ in written)
    stored = sorted(ns for _, ns in written)
    return (frames * 1e9 / (stored[-1] - start_ns),
            (frames - 1) * 1e9 / (stored[-1] - stored[0]))


def child(frames: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        burst(frames, workers, Path(tmp))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(MEMORY_BURST_FRAMES, args.workers)
        return 0
    cores = os.cpu_count()
    frame = camera_frame(1)
    rounds = {k: [] for k in ("single", "sync", "threaded", "sustained", "parallel", "paired")}
    with tempfile.TemporaryDirectory(prefix="trapd-burst-") as tmp:
        for i in range(args.rounds):
            before = single_encode_rate(frame)
            rounds["sync"].append(burst(args.frames, 1, Path(tmp) / f"one{i}")[0])
            whole, sustained = burst(args.frames, args.workers, Path(tmp) / f"many{i}")
            after = single_encode_rate(frame)
            rounds["single"] += [before, after]
            rounds["threaded"].append(whole)
            rounds["sustained"].append(sustained)
            rounds["paired"].append(sustained / (cores * (before + after) / 2))
            rounds["parallel"].append(threaded_encode_rate(frame, cores))
    single, sync, threaded, sustained, parallel = (
        statistics.median(rounds[k]) for k in ("single", "sync", "threaded", "sustained", "parallel"))
    limit = cores * single
    peak = subprocess.run([sys.executable, __file__, "--child", "--workers", str(args.workers)],
                          capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    print(f"12 MP ({W}x{H}) burst of {args.frames}, capture copy -> encode+tag -> fsync'd file, "
          f"{cores} cores, median of {args.rounds} rounds")
    print(f"{'':44} {'frames/s':>9} {'of limit':>9}")
    print(f"{'limit: cores x single encode':44} {limit:9.2f} {'100 %':>9}"
          f"   (single {single:.2f}/s; rounds {', '.join(f'{r:.1f}' for r in rounds['single'])})")
    print(f"{'baseline: 1 writer thread':44} {sync:9.2f} {100 * sync / limit:8.0f} %")
    print(f"{f'trapd FrameWriter, {args.workers} encoders, whole burst':44} {threaded:9.2f} "
          f"{100 * threaded / limit:8.0f} %   (rounds {', '.join(f'{r:.1f}' for r in rounds['threaded'])})")
    print(f"{f'trapd FrameWriter, {args.workers} encoders, sustained':44} {sustained:9.2f} "
          f"{100 * sustained / limit:8.0f} %   (rounds {', '.join(f'{r:.1f}' for r in rounds['sustained'])})")
    print(f"{f'encode only, {cores} threads at once':44} {parallel:9.2f} {100 * parallel / limit:8.0f} %")
    paired = rounds["paired"]
    print(f"sustained against the limit measured just before and after the same burst, per round: "
          f"median {100 * statistics.median(paired):.0f} % ({', '.join(f'{100 * r:.0f}' for r in paired)})")
    print(f"peak RSS of a process running a {MEMORY_BURST_FRAMES}-frame burst with {args.workers} "
          f"workers: {float(peak):.0f} MB (budget 200 MB on a Pi Zero 2 W)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
