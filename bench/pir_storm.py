"""PIR storms on the sim bench: a PIR chattering at 1 kHz for a minute, and a
PIR stuck high for two minutes; then a real animal. Prints what a user would
check: events made, edges coalesced, RSS growth, and whether the animal after
the storm was captured.

    .venv/bin/python bench/pir_storm.py [--seconds 60] [--json]

Virtual time; RSS is this process's resident memory (VmRSS) after a warm-up
event, and again after the storm, each time after glibc's malloc_trim hands
freed memory back: what grew is memory still in use (a backlog), not the
allocator's high-water mark from the simulator rendering frames on the
encoder threads.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import Bench  # noqa: E402  the tests' sim bench: a trap on sim hardware

NS = 1_000_000_000
MB = 1024 * 1024
CONFIG = {"filter": {"enabled": False}, "burst": {"frames": 5, "interval_s": 0.5}}


def rss_bytes() -> int:
    malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)   # glibc's
    if malloc_trim is not None:
        malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def chatter(b: Bench, seconds: float, hz: float = 1000.0) -> None:
    """Square wave on the PIR pin from now for `seconds`, `hz` rising edges a second."""
    half_ns = int(NS / hz / 2)
    end_ns = b.clock.monotonic_ns() + int(seconds * NS)

    def high():
        b.pin.drive_high()
        b.clock.call_at(b.clock.monotonic_ns() + half_ns, low)

    def low():
        b.pin.drive_low()
        b.pin.clear_states()    # gpiozero's MockPin logs every edge (a test aid): not trapd's memory
        if b.clock.monotonic_ns() + half_ns < end_ns:
            b.clock.call_at(b.clock.monotonic_ns() + half_ns, high)

    b.clock.call_at(b.clock.monotonic_ns(), high)


def stuck_high(b: Bench, seconds: float) -> None:
    b.pir_pulse_at(0.0, seconds)


def storm(kind: str, seconds: float, workdir: Path) -> dict:
    b = Bench(workdir, CONFIG)
    try:
        b.run_for(2)
        b.pir_pulse_at(0.1)              # a warm-up event: buffers, encoder, index allocated
        b.run_for(5)
        events_before, rss_before = len(b.events), rss_bytes()
        (chatter if kind == "chatter" else stuck_high)(b, seconds)
        b.run_for(seconds + 1)
        rss_after = rss_bytes()
        storm_events = b.events[events_before:]
        b.run_for(b.config.trigger.max_event_s + 2)   # let the event in flight end
        animal_ns = b.pir_pulse_at(3.0)  # the next real animal
        b.run_for(8)
        animal = [e for e in b.events if e.trigger_ns == animal_ns]
        return {
            "storm": kind, "seconds": seconds,
            "events_during_storm": len(storm_events) + (b.trap.in_event and 1 or 0),
            "storm_event_frames": sum(len(e.frames) for e in storm_events),
            "edges_coalesced": b.trap.pir.coalesced_edges,
            "rss_growth_mb": round((rss_after - rss_before) / MB, 1),
            "animal_after_storm_images": sum(f.file is not None for e in animal for f in e.frames),
            "verify_problems": len(b.trap.store.verify()),
        }
    finally:
        b.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="trapd-pir-storm-") as tmp:
        results = [storm("chatter", args.seconds, Path(tmp) / "chatter"),
                   storm("stuck-high", 2 * args.seconds, Path(tmp) / "stuck")]
    if args.json:
        print(json.dumps(results))
        return 0
    keys = list(results[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in results:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
