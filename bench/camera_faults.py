"""Camera faults injected through the simulator: how long (virtual time)
until frames flow again, median and max over random injection instants.

    .venv/bin/python bench/camera_faults.py [--reps N] [--seed S]

Each rep runs a trap on the sim bench, starts a PIR burst, injects the fault
at a random instant within it and steps the trap until a frame newer than
the fault's end arrives on a reopened camera. Reported: that frame's
SensorTimestamp minus the injection instant (the gap in images) and minus the
fault's end (when the camera was usable again; = injection for one-off faults). Virtual time: the figures are the firmware's timeouts
and back-off, not this machine's speed.
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

from conftest import Bench  # noqa: E402  the tests' sim bench: a trap on sim hardware

NS = 1_000_000_000
OUTAGE_S = 5.0


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
