"""Camera faults injected through the simulator: how long (virtual time)
until frames flow again, median and max over random injection instants.

    .venv/bin/python bench/camera_faults.py [--reps N] [--seed S]

Each rep runs a trap on the sim bench, starts a PIR burst, injects the fault
at a random instant within it and steps the trap until a frame newer than
the fault's end arrives on a reopened camera. Reported: that frame's
SensorTimestamp minus the injection instant (the gap in images) and minus the
fault's end (when the camera was usable again; = injection for one-off faults).

A second table holds long outages, their length drawn from L to 1.5 L (L = a
minute, ten, an hour) so that they end anywhere in the back-off's cycle: the log lines (WARNING and above) the trap wrote
from the fault until frames were back, the camera opens tried in that time, and when frames were back after the fault ended, which the
back-off bounds by its ceiling (`RETRY_MAX_DELAY_S`) plus a capture timeout.

Virtual time: the figures are the firmware's timeouts and back-off, not this
machine's speed.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from camera_fakes import failing_captures  # noqa: E402  faults the rig lacks
from conftest import Bench  # noqa: E402  the tests' sim bench: a trap on sim hardware
from trapd import camera as trapd_camera  # noqa: E402
from trapd.daemon import Hardware, build_trap, close_trap  # noqa: E402

NS = 1_000_000_000
OUTAGE_S = 5.0
LONG_OUTAGES_S = (60, 600, 3600)


def timeout(b):
    b.rig.timeout_next(1)
    return 0.0


def outage(b, fault, restore):
    """`fault` now, `restore` OUTAGE_S later on the bench's clock."""
    fault()
    b.clock.call_at(b.clock.monotonic_ns() + int(OUTAGE_S * NS), restore)
    return OUTAGE_S


def hang_cleared(b):
    return outage(b, b.rig.hang, b.rig.clear_faults)


def start_errors(b):
    b.rig.fail_next_opens(2)    # the reopen after the timeout fails twice
    b.rig.timeout_next(1)
    return 0.0


def unplugged(b):
    return outage(b, b.rig.unplug, b.rig.plug_in)


FAULTS = {"capture timeout (1)": timeout,
          f"capture hang, cleared after {OUTAGE_S:g} s": hang_cleared,
          "timeout, then 2 failed opens": start_errors,
          f"camera unplugged for {OUTAGE_S:g} s mid-burst": unplugged}


def recovery_s(inject, rng, workdir: Path) -> tuple[float, float]:
    b = Bench(workdir, {"filter": {"enabled": False}, "burst": {"frames": 8, "interval_s": 0.5}})
    try:
        b.run_for(1)
        b.pir_pulse_at(0.1)
        b.run_for(rng.uniform(0.2, 3.0))
        cameras_before = len(b.rig.cameras)
        fault_ns = b.clock.monotonic_ns()
        fault_end_ns = fault_ns + int(inject(b) * NS)
        limit_ns = fault_end_ns + 120 * NS
        while not (len(b.rig.cameras) > cameras_before
                   and (b.trap.last_frame_ns or 0) > fault_end_ns):
            if b.clock.monotonic_ns() > limit_ns:
                raise RuntimeError("no recovery within 120 s")
            b.trap.step()
        return (b.trap.last_frame_ns - fault_ns) / NS, (b.trap.last_frame_ns - fault_end_ns) / NS
    finally:
        b.close()


class OpensTried:
    """Counts the camera opens trapd tries (each starts by listing the cameras)."""

    def __init__(self, camera_class: type):
        self.count = 0
        listed = camera_class.global_camera_info

        def counted():
            self.count += 1
            return listed()

        camera_class.global_camera_info = staticmethod(counted)


class LogLines(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record):
        self.count += 1


def long_outage(kind, outage_s, rng, workdir: Path) -> tuple[int, int, float]:
    """(log lines, camera opens tried, s from the fault's end to a frame) for one
    outage of `outage_s` to 1.5 times that."""
    b = Bench(workdir, {"filter": {"enabled": False}})
    try:
        if kind == "captures fail at once (opens work)":
            # The rig lacks this fault: the trap gets a Picamera2 class that has it.
            close_trap(b.trap)
            camera_class = failing_captures(b.rig.picamera2_class)
            camera_class.failing = False
            b.trap = build_trap(b.config, Hardware(camera_class, b.factory, b.clock),
                                on_event=b.events.append)
            fault, restore = (lambda: setattr(camera_class, "failing", True),
                              lambda: setattr(camera_class, "failing", False))
        else:
            camera_class = b.rig.picamera2_class
            fault, restore = {"capture hang": (b.rig.hang, b.rig.clear_faults),
                              "camera unplugged": (b.rig.unplug, b.rig.plug_in)}[kind]
        opens = OpensTried(camera_class)
        b.run_for(rng.uniform(1.0, 5.0))
        lines = LogLines()
        trapd_log = logging.getLogger("trapd")
        trapd_log.addHandler(lines)
        try:
            fault_ns = b.clock.monotonic_ns()
            fault_end_ns = fault_ns + int(rng.uniform(outage_s, 1.5 * outage_s) * NS)
            b.clock.call_at(fault_end_ns, restore)
            fault()
            opens.count = 0
            limit_ns = fault_end_ns + int(2 * trapd_camera.RETRY_MAX_DELAY_S * NS)
            while (b.trap.last_frame_ns or 0) <= fault_end_ns:
                if b.clock.monotonic_ns() > limit_ns:
                    raise RuntimeError(f"{kind}: no frame within twice the back-off ceiling")
                b.trap.step()
        finally:
            trapd_log.removeHandler(lines)
        return lines.count, opens.count, (b.trap.last_frame_ns - fault_end_ns) / NS
    finally:
        b.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    logging.getLogger().setLevel(logging.CRITICAL)   # the trap's recovery log lines
    print("| fault (injected in a burst) | reps | gap in frames median / max s "
          "| frames back after the fault ended, median / max s |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="trapd-camera-faults-") as tmp:
        for name, inject in FAULTS.items():
            gaps, times = [], []
            for rep in range(args.reps):
                workdir = Path(tmp) / f"{len(times)}-{rep}-{abs(hash(name))}"
                workdir.mkdir()
                gap, after_end = recovery_s(inject, rng, workdir)
                gaps.append(gap)
                times.append(after_end)
            print(f"| {name} | {len(times)} | {statistics.median(gaps):.2f} / {max(gaps):.2f} "
                  f"| {statistics.median(times):.2f} / {max(times):.2f} |")
        print()
        print(f"Long outages (back-off ceiling {trapd_camera.RETRY_MAX_DELAY_S:g} s, "
              f"capture timeout 2 s):")
        print()
        print("| long outage | length s | reps | log lines median / max "
              "| camera opens tried median / max | frames back after it ended, median / max s |")
        print("|---|---|---|---|---|---|")
        trapd_log = logging.getLogger("trapd")
        trapd_log.setLevel(logging.WARNING)     # counted by LogLines, printed nowhere
        trapd_log.propagate = False
        for kind in ("captures fail at once (opens work)", "capture hang", "camera unplugged"):
            for outage_s in LONG_OUTAGES_S:
                found = []
                for rep in range(args.reps):
                    workdir = Path(tmp) / f"long-{abs(hash(kind))}-{outage_s}-{rep}"
                    workdir.mkdir()
                    found.append(long_outage(kind, outage_s, rng, workdir))
                lines, tried, back = zip(*found)
                print(f"| {kind} | {outage_s}-{outage_s * 3 // 2} | {len(found)} "
                      f"| {statistics.median(lines):g} / {max(lines)} "
                      f"| {statistics.median(tried):g} / {max(tried)} "
                      f"| {statistics.median(back):.1f} / {max(back):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
