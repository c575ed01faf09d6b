"""Burst throughput and peak memory at 12 MP (4056x3040), capture to fsync'd file.

A 12 MP YUV420 frame (what the camera hands over) is pushed through trapd's
own Camera.lend_main and FrameWriter, as the trap does it: the frame is read in
its camera buffer while the shipped config leaves buffers to spare (else copied
out of it), encoded (simplejpeg from YUV planes) and tagged (trapd's EXIF/XMP)
on worker threads, and written durably (tmp, fsync, rename). A baseline copies
every frame (trapd before 2026-11-27).
The limit is measured in the same run: number of cores x the rate of one
single-threaded simplejpeg encode from YUV planes. Limit and bursts are
measured in alternating rounds and each figure is the median over the rounds,
so a busy moment on a shared machine does not land on one side only; each
round also compares its sustained rate with the limit measured just before
and just after that burst (the machine's speed drifts within seconds).

Usage: .venv/bin/python bench/burst.py [--frames 30] [--rounds 3] [--workers N]
Peak RSS (VmHWM; not ru_maxrss, which Linux carries over from the parent
across fork and exec) is read in fresh child processes running only a 10-frame
burst (with the modules the daemon loads: about 60 MB at rest), so the
parent's other runs do not count; the largest of three is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg


from trapd.camera import Camera, yuv420_planes
from trapd.clock import SystemClock
from trapd.config import CameraConfig, load_config
from trapd.daemon import station_info
from trapd.metadata import CaptureInfo, build_exif, build_xmp, tag_jpeg
from trapd.storage import Store
from trapd.trap import lendable_buffers
from trapd.writer import FrameWriter, YuvCopy, default_workers

W, H = 4056, 3040
STRIDE = 4096   # YUV420 stride rounded up to 64, as picamera2 lays it out
MEMORY_BURST_FRAMES = 10
MEMORY_RUNS = 3


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

    def release(self):
        pass


class FakeFrame:
    def __init__(self, array):
        self.request = FakeRequest(array)
        self.main_size = (W, H)


class MappedArray:
    """picamera2.MappedArray over the bench's camera buffer: the buffer itself, no copy."""

    def __init__(self, request, stream, reshape=True, write=True):
        self.array = request.array

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


class BenchPicamera2:
    """Stands for picamera2.Picamera2 only so that trapd's Camera finds MappedArray beside it."""


def bench_camera() -> Camera:
    return Camera(BenchPicamera2, CameraConfig(main_size=(W, H)), SystemClock())


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


def station_tagger():
    """trapd's own EXIF + XMP splice, with a frame's tags as the trap builds them."""
    config = load_config()
    station = station_info(config, "imx477")
    capture = CaptureInfo(
        wall_time_ns=time.time_ns(), media_id="0" * 32, event_id="e" * 32, event_number=1,
        sequence=1, event_length=30, capture_method="activityDetection", trigger_source="pir",
        motion_score=0.01, width=W, height=H, exposure_time_us=10000, analogue_gain=1.0,
        digital_gain=1.0)
    exif, xmp = build_exif(station, capture), build_xmp(station, capture)
    return lambda jpeg: tag_jpeg(jpeg, exif, xmp)


def burst(frames: int, workers: int, root: Path, spare_buffers: int = 0) -> tuple[float, float]:
    """(whole burst, sustained) frames/s: from the first frame handed over to
    the last fsync'd file, and between the first and the last file made
    durable (the pipeline full). Up to `spare_buffers` frames at a time are
    encoded in their camera buffer, as trapd does; the others are copied."""
    store = Store(root, 0)
    writer = FrameWriter(store.save_file, time.monotonic_ns, workers=workers)
    camera = bench_camera()
    buffer = camera_frame(1)
    tag = station_tagger()
    written = []
    start_ns = time.monotonic_ns()
    for i in range(frames):
        frame = FakeFrame(buffer)
        image = camera.lend_main(frame, spare_buffers) or YuvCopy.of(frame)
        writer.submit(image, 90, tag, f"b/{i:03d}.jpg",
                      lambda w: written.append((w.saved, w.stored_ns)))   # the JPEG bytes go, as in trapd
        writer.collect()
    writer.close()
    store.close()
    assert len(written) == frames and all(saved for saved, _ in written)
    stored = sorted(ns for _, ns in written)
    return (frames * 1e9 / (stored[-1] - start_ns),
            (frames - 1) * 1e9 / (stored[-1] - stored[0]))


def child(frames: int, workers: int, spare_buffers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        burst(frames, workers, Path(tmp), spare_buffers)
    print(peak_rss_mb())


def peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def rounds_of(args, frame, spare: int) -> dict[str, list[float]]:
    """Limit, bursts and pure encoding measured in alternating rounds."""
    cores = os.cpu_count()
    rounds = {k: [] for k in ("single", "sync", "copied", "threaded", "sustained", "parallel", "paired")}
    with tempfile.TemporaryDirectory(prefix="trapd-burst-") as tmp:
        for i in range(args.rounds):
            before = single_encode_rate(frame)
            rounds["sync"].append(burst(args.frames, 1, Path(tmp) / f"one{i}")[0])
            rounds["copied"].append(burst(args.frames, args.workers, Path(tmp) / f"copied{i}")[1])
            whole, sustained = burst(args.frames, args.workers, Path(tmp) / f"lent{i}", spare)
            after = single_encode_rate(frame)
            rounds["single"] += [before, after]
            rounds["threaded"].append(whole)
            rounds["sustained"].append(sustained)
            rounds["paired"].append(sustained / (cores * (before + after) / 2))
            rounds["parallel"].append(threaded_encode_rate(frame, cores))
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = load_config()
    spare = lendable_buffers(config, config.hardware.camera.buffer_count)
    if args.child:
        child(MEMORY_BURST_FRAMES, args.workers, spare)
        return 0
    cores = os.cpu_count()
    rounds = rounds_of(args, camera_frame(1), spare)
    median = {k: statistics.median(v) for k, v in rounds.items()}
    limit = cores * median["single"]
    peaks = [float(subprocess.run([sys.executable, __file__, "--child", "--workers", str(args.workers)],
                                  capture_output=True, text=True, check=True).stdout.split()[-1])
             for _ in range(MEMORY_RUNS)]

    def row(label: str, key: str, listed: bool = False) -> None:
        listing = f"   (rounds {', '.join(f'{r:.1f}' for r in rounds[key])})" if listed else ""
        print(f"{label:52} {median[key]:9.2f} {100 * median[key] / limit:8.0f} %{listing}")

    print(f"12 MP ({W}x{H}) burst of {args.frames}, camera frame -> encode+tag -> fsync'd file, "
          f"{cores} cores, median of {args.rounds} rounds")
    print(f"{'':52} {'frames/s':>9} {'of limit':>9}")
    print(f"{'limit: cores x single encode':52} {limit:9.2f} {'100 %':>9}"
          f"   (single {median['single']:.2f}/s; rounds {', '.join(f'{r:.1f}' for r in rounds['single'])})")
    row("baseline: 1 writer thread, every frame copied", "sync")
    row(f"baseline: {args.workers} encoders, every frame copied, sustained", "copied", listed=True)
    row(f"trapd: {args.workers} encoders, whole burst", "threaded", listed=True)
    row(f"trapd: {args.workers} encoders, sustained", "sustained", listed=True)
    row(f"encode only, {cores} threads at once", "parallel")
    paired = rounds["paired"]
    print(f"trapd reads a frame in its camera buffer while {spare} buffers are spare (shipped "
          f"buffer_count and pre_trigger_frames), else copies it")
    print(f"trapd sustained against the limit measured just before and after the same burst, "
          f"per round: median {100 * statistics.median(paired):.0f} % "
          f"({', '.join(f'{100 * r:.0f}' for r in paired)})")
    print(f"peak RSS of a process running a {MEMORY_BURST_FRAMES}-frame burst with {args.workers} "
          f"workers, trapd's modules loaded: {max(peaks):.0f} MB, the largest of {MEMORY_RUNS} runs "
          f"({', '.join(f'{p:.0f}' for p in peaks)}; budget 200 MB on a Pi Zero 2 W)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
