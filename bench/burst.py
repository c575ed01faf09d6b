"""Burst throughput and peak memory at 12 MP (4056x3040), capture to fsync'd file.

A 12 MP YUV420 frame (what the camera hands over) is pushed through trapd's
own FrameWriter: copy out of the "camera buffer", encode (simplejpeg from YUV
planes) + EXIF/XMP tag on worker threads, durable write (tmp, fsync, rename).
The limit is measured in the same run: number of cores x the rate of one
single-threaded simplejpeg encode from YUV planes.

Usage: .venv/bin/python bench/burst.py [--frames 10] [--workers N]
Peak RSS (ru_maxrss) is read in a fresh child process running only the burst,
so the parent's imports and other runs do not count.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg


from trapd.camera import yuv420_planes
from trapd.storage import Store
from trapd.writer import FrameWriter, YuvCopy

W, H = 4056, 3040
STRIDE = 4096   # YUV420 stride rounded up to 64, as picamera2 lays it out


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
    """Encodes/s with `threads` threads encoding at once: shows whether simplejpeg
    releases the GIL (it would scale with the cores if it did)."""
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


def burst(frames: int, workers: int, root: Path) -> float:
    """Frames/s from the first copy to the last fsync'd file indexed."""
    store = Store(root, 0)
    writer = FrameWriter(store.save_file, time.monotonic_ns, workers=workers)
    buffer = camera_frame(1)
    saved = []
    t = time.perf_counter()
    for i in range(frames):
        writer.submit(YuvCopy.of(FakeFrame(buffer)), 90, lambda j: j, f"b/{i:03d}.jpg",
                      lambda written: saved.append(written.saved))   # the JPEG bytes go, as in trapd
        writer.collect()
    writer.close()
    elapsed = time.perf_counter() - t
    store.close()
    assert len(saved) == frames and all(saved)
    return frames / elapsed


def child(frames: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        burst(frames, workers, Path(tmp))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.frames, args.workers)
        return 0
    cores = os.cpu_count()
    rate1 = single_encode_rate(camera_frame(1))
    with tempfile.TemporaryDirectory(prefix="trapd-burst-") as tmp:
        sync = burst(args.frames, 1, Path(tmp) / "one")
        threaded = burst(args.frames, args.workers, Path(tmp) / "many")
        rate1_after = single_encode_rate(camera_frame(1))
        parallel = threaded_encode_rate(camera_frame(1), cores)
    limit = cores * (rate1 + rate1_after) / 2
    peak = subprocess.run([sys.executable, __file__, "--child", "--frames", str(args.frames),
                           "--workers", str(args.workers)], capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]
    print(f"12 MP ({W}x{H}) burst of {args.frames}, capture copy -> encode+tag -> fsync'd file, "
          f"{cores} cores")
    print(f"{'':44} {'frames/s':>9} {'of limit':>9}")
    print(f"{'limit: cores x single encode (before/after)':44} {limit:9.2f} {'100 %':>9}"
          f"   (single {rate1:.2f} / {rate1_after:.2f} /s)")
    print(f"{'baseline: 1 writer thread':44} {sync:9.2f} {100 * sync / limit:8.0f} %")
    print(f"{f'trapd FrameWriter, {args.workers} workers':44} {threaded:9.2f} {100 * threaded / limit:8.0f} %")
    print(f"{f'encode only, {cores} threads at once':44} {parallel:9.2f} {100 * parallel / limit:8.0f} %"
          "   (simplejpeg holds the GIL if this is near 1 core's rate)")
    print(f"peak RSS of a process running the {args.frames}-frame burst: {float(peak):.0f} MB "
          f"(budget 200 MB on a Pi Zero 2 W)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
