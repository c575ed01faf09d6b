"""Trigger latency, pre-trigger frames, dead time and idle CPU, on `trapd sim --realtime`.

Runs the trap, unchanged, on the simulator at wall-clock pace (RealtimeClock,
the path `trapd sim --realtime` takes) with PIR pulses at known instants,
some of them just after the previous event ended. Per mode:

- streaming: camera always on (writer threads);
- standby: camera stopped while idle, started on the PIR edge;
- baseline "sync writer": streaming, but encode+tag+save in the capture
  thread (how trapd worked before the writer threads);
- baseline "still switch": how pi-timolo works: on the PIR edge switch the
  camera to a still configuration and capture (switch_mode_and_capture_request),
  then encode and save.

Usage: .venv/bin/python bench/trigger.py [--events 12] [--main 640x480]
The simulator does not model the Pi's camera start-up or mode-switch time
(0.5-0.7 s on a Pi, picamera2 #1062): standby and still-switch figures here
are lower bounds.

`--real` (in the real-camera lane: `ci/realcam/run.sh --bench`) adds the same
streaming and standby rows on the real picamera2 and libcamera (the virtual
camera: real request queue, buffers and threads; frames paced by our handler
patch, no sensor start-up time either), in the same run as hw_sim's.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


from gpiozero.pins.mock import MockFactory

from hw_sim.picamera2 import CameraRig
from hw_sim.pir import PirOutputPin
from hw_sim.scenario import Conditions, Scenario
from hw_sim.scene import Scene
from trapd.camera import yuv420_planes
from trapd.clock import RealtimeClock, SystemClock
from trapd.config import load_config_with
from trapd.daemon import Hardware, build_trap, close_trap
from trapd.writer import FrameWriter, Written

NS = 1_000_000_000
MS = 1e6


class SyncWriter(FrameWriter):
    """Baseline: the job runs in the capture thread (no worker threads)."""

    def submit(self, copy, quality, tag, file_name, on_written):
        done: Future = Future()
        done.set_result(self._save(self._encode(copy, quality, tag), file_name) if copy is not None
                        else Written(None, None, None))
        self._jobs.append((done, on_written))


def _scene(clock):
    start = datetime(2026, 11, 26, 3, tzinfo=timezone.utc)
    scenario = Scenario("bench", 3600, 3, start, (Conditions(0, "day", 0.2),))
    return Scene(scenario, clock.monotonic_ns())


def pulse_times(events: int, gap_s: float) -> list[float]:
    """Edges every gap_s, jittered so they land at any phase of the frame clock,
    and every third one just after the previous event should have ended."""
    rng = np.random.default_rng(1)
    times, t = [], 1.5
    for i in range(events):
        t += gap_s + rng.uniform(-0.15, 0.1)
        times.append(t)
    return times


class SimCamera:
    """hw_sim's camera at wall-clock pace: PIR edges ride the clock's schedule."""

    readout_ns = 100_000_000     # a frame arrives one readout (a frame time) after its timestamp

    def __init__(self):
        self.clock = RealtimeClock()
        self.rig = CameraRig(_scene(self.clock), self.clock)
        self.picamera2_class = self.rig.picamera2_class

    def at(self, t_ns: int, callback) -> None:
        self.clock.call_at(t_ns, callback)


class RealCamera:
    """The real picamera2 on libcamera (the lane's virtual camera): nothing
    advances a clock, so PIR edges come from timer threads."""

    rig = None
    readout_ns = 0      # our virtual-camera patch completes a request at its SensorTimestamp

    def __init__(self, picamera2_class: type):
        self.clock = SystemClock()
        self.picamera2_class = picamera2_class

    def at(self, t_ns: int, callback) -> None:
        timer = threading.Timer((t_ns - time.monotonic_ns()) / NS, callback)
        timer.daemon = True
        timer.start()


def run_trap(tmp: Path, mode: str, events: int, main_size, sync: bool = False,
             idle_s: float = 10.0, camera=None) -> dict:
    overrides = {"hardware": {"camera": {"main_size": list(main_size)}},
                 "power": {"mode": mode}, "filter": {"enabled": False},
                 "burst": {"frames": 3, "interval_s": 0.0, "pre_trigger_frames": 2},
                 "storage": {"root": str(tmp / "storage"), "min_free_mb": 0}}
    config = load_config_with(overrides)
    camera = camera or SimCamera()
    clock = camera.clock
    factory = MockFactory()
    pin = factory.pin(config.hardware.pir_pin, pin_class=PirOutputPin)
    got = []
    trap = build_trap(config, Hardware(camera.picamera2_class, factory, clock), str(tmp / mode),
                      got.append)
    if sync:
        trap.writer = SyncWriter(trap.store.save_file, clock.monotonic_ns, workers=1)
    start = clock.monotonic_ns()
    # Event: 2 pre-trigger + 3 frames at 10 fps ~ 0.3 s + PIR high 0.2 s; next edge 0.55 s later.
    edges = [start + int(s * NS) for s in pulse_times(events, 0.55)]
    for e in edges:
        camera.at(e, pin.drive_high)
        camera.at(e + int(0.2 * NS), pin.drive_low)
    end = edges[-1] + int(3 * NS)
    camera.at(end, trap.wake)      # a standby wait ends here
    while clock.monotonic_ns() < end:
        trap.step()
    trap.finish()
    cpu_idle = _idle_cpu(trap, camera, idle_s)
    close_trap(trap)
    factory.close()
    return _figures(edges, got, cpu_idle, camera.readout_ns)


def _idle_cpu(trap, camera, seconds: float) -> tuple[float, float | None]:
    """(CPU share of one core of the whole process, the part spent rendering the
    simulated scene, None on a real camera) over `seconds` of idle trap, no PIR edge."""
    render_cpu = [0.0]
    if camera.rig is not None:
        render = camera.rig.scene.render_bgr

        def timed_render(*args):
            t = time.thread_time()
            try:
                return render(*args)
            finally:
                render_cpu[0] += time.thread_time() - t

        camera.rig.scene.render_bgr = timed_render
    clock = camera.clock
    start, cpu0 = clock.monotonic_ns(), time.process_time()
    end = start + int(seconds * NS)
    camera.at(end, trap.wake)
    while clock.monotonic_ns() < end:
        trap.step()
    elapsed = (clock.monotonic_ns() - start) / NS
    return ((time.process_time() - cpu0) / elapsed,
            render_cpu[0] / elapsed if camera.rig is not None else None)


def _figures(edges, reports, cpu_idle, readout_ns: int) -> dict:
    first, stored, pre, nxt, soft, gaps = [], [], [], [], [], []
    recorded = 0
    for e in edges:
        # The trigger is stamped in the GPIO callback, a little after the scheduled edge;
        # latencies below are measured from the scheduled edge (the worse of the two).
        r = next((x for x in reports if 0 <= x.trigger_ns - e < 50 * MS), None)
        if r is None:   # the edge extended an event: find the event holding frames after it
            r = next((x for x in reports if x.trigger_ns < e and any(
                f.sensor_timestamp_ns >= e for f in x.frames)), None)
            if r is None:
                continue
        recorded += 1
        post = [f for f in r.frames if not f.pre_trigger and f.sensor_timestamp_ns >= e]
        after = [f.arrived_ns for f in r.frames if f.arrived_ns and f.arrived_ns >= e]
        if after:
            nxt.append((min(after) - e) / MS)
        if post:
            first.append((post[0].arrived_ns - e) / MS)
            # The trap's own delay: arrival minus the end of the frame's readout
            # (hw_sim: SensorTimestamp is the end of exposure; readout takes one frame, 100 ms).
            soft.append((post[0].arrived_ns - post[0].sensor_timestamp_ns - readout_ns) / MS)
            stored.append((min(f.stored_ns for f in post if f.stored_ns) - e) / MS)
        # Frames from before this edge in the record: those exposed in the 2 frame periods before it.
        pre.append(sum(1 for x in reports for f in x.frames
                       if f.file and e - 200 * MS <= f.sensor_timestamp_ns < e))
        if 0 <= r.trigger_ns - e < 50 * MS:
            earlier = [x for x in reports if x.trigger_ns < r.trigger_ns and x.frames]
            if earlier:   # time since the previous event took its last frame
                gaps.append((e - max(f.arrived_ns for f in earlier[-1].frames if f.arrived_ns)) / MS)
    return {"edges": len(edges), "recorded": recorded, "first": first, "stored": stored,
            "pre": pre, "cpu_idle": cpu_idle, "next": nxt, "soft": soft, "gaps": gaps}


def run_still_switch(tmp: Path, events: int, main_size) -> dict:
    """pi-timolo's way: stream lores, and on the edge switch to a still mode and capture."""
    clock = RealtimeClock()
    rig = CameraRig(_scene(clock), clock)
    cam = rig.picamera2_class(0)
    video = cam.create_video_configuration(main={"format": "YUV420", "size": (640, 480)},
                                           lores={"format": "YUV420", "size": (320, 240)},
                                           controls={"FrameDurationLimits": (100000, 100000)})
    still = cam.create_still_configuration(main={"format": "YUV420", "size": tuple(main_size)},
                                           raw=None, buffer_count=2)
    cam.configure(video)
    cam.start()
    edge = threading.Event()
    start = clock.monotonic_ns()
    edges = [start + int(s * NS) for s in pulse_times(events, 0.55)]
    for e in edges:
        clock.call_at(e, edge.set)
    first, stored, seen = [], [], 0
    end = edges[-1] + int(1 * NS)
    while clock.monotonic_ns() < end and seen < len(edges):
        cam.capture_request(wait=2).release()
        if not edge.is_set():
            continue
        edge.clear()
        e = edges[seen]
        seen += 1
        request = cam.switch_mode_and_capture_request(still, wait=5)
        first.append((clock.monotonic_ns() - e) / MS)
        w, h = main_size
        import simplejpeg
        jpeg = simplejpeg.encode_jpeg_yuv_planes(*yuv420_planes(request.make_array("main"), w, h),
                                                 quality=90)
        request.release()
        path = tmp / f"still{seen}.jpg"
        with open(path, "wb") as f:
            f.write(jpeg)
            f.flush()
            os.fsync(f.fileno())
        stored.append((clock.monotonic_ns() - e) / MS)
    cam.close()
    return {"edges": len(edges), "recorded": seen, "first": first, "stored": stored,
            "pre": [0] * seen, "cpu_idle": None, "next": first, "soft": [], "gaps": []}


def _p(values, q):
    return f"{np.percentile(values, q):7.1f}" if values else "    n/a"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=12)
    parser.add_argument("--main", default="640x480")
    parser.add_argument("--idle-s", type=float, default=10.0, help="idle CPU measured over this")
    parser.add_argument("--real", action="store_true",
                        help="also run on the real picamera2 (the real-camera lane)")
    args = parser.parse_args()
    main_size = tuple(int(v) for v in args.main.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows.append(("streaming (writer threads)", run_trap(tmp / "a", "streaming", args.events, main_size, idle_s=args.idle_s)))
        rows.append(("standby (camera off when idle)", run_trap(tmp / "b", "standby", args.events, main_size, idle_s=args.idle_s)))
        rows.append(("baseline: streaming, sync writer", run_trap(tmp / "c", "streaming", args.events, main_size, sync=True, idle_s=args.idle_s)))
        rows.append(("baseline: still switch (pi-timolo)", run_still_switch(tmp, args.events, main_size)))
        if args.real:
            from picamera2 import Picamera2
            for mode in ("streaming", "standby"):
                rows.append((f"real picamera2: {mode}",
                             run_trap(tmp / f"real-{mode}", mode, args.events, main_size,
                                      idle_s=args.idle_s, camera=RealCamera(Picamera2))))
    print(f"PIR edge -> frame, ms ({args.events} edges, main {args.main}, 10 fps = 100 ms/frame, "
          f"{os.cpu_count()} cores)")
    print("next = next frame delivered after the edge (the last pre-trigger frame in streaming);")
    print("first = first frame exposed after the edge; trap = its arrival minus the end of its readout")
    print(f"{'mode':36} {'recorded':>9} {'next p95':>8} {'first p50':>9} {'first p95':>9} "
          f"{'trap p95':>8} {'stored p50':>10} {'stored p95':>10} {'pre-trigger':>12} {'idle CPU, 1 core = 100 %':>30}")
    for name, r in rows:
        pre = f"{min(r['pre'])}-{max(r['pre'])}" if r["pre"] else "n/a"
        cpu = ("n/a" if r["cpu_idle"] is None else f"{100 * r['cpu_idle'][0]:.1f} %" + (
            "" if r["cpu_idle"][1] is None else f" (sim render {100 * r['cpu_idle'][1]:.1f} %)"))
        print(f"{name:36} {r['recorded']:>4}/{r['edges']:<4} {_p(r['next'], 95):>8} "
              f"{_p(r['first'], 50):>9} {_p(r['first'], 95):>9} {_p(r['soft'], 95):>8} "
              f"{_p(r['stored'], 50):>10} {_p(r['stored'], 95):>10} {pre:>12} {cpu:>30}")
    print()
    print("dead time: edges that opened a new event (the rest extended one), by time since the "
          "previous event's last frame")
    for name, r in rows:
        if r["gaps"]:
            print(f"{name:36} {len(r['gaps'])} edges, {min(r['gaps']):.0f}-{max(r['gaps']):.0f} ms "
                  f"after the previous event's last frame; recorded {r['recorded']}/{r['edges']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
