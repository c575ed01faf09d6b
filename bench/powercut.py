"""Power-cut harness: SIGKILL the trap at random instants during bursts,
restart it on the same storage, check the queue after every cycle.

    .venv/bin/python bench/powercut.py [--cycles N] [--seed S] [--workdir DIR]

Each cycle starts `trapd sim` (real time, a PIR firing every second, filter
off so every burst frame is written), waits until it runs, lets it work for
a random 0.6-2 s and kills it with SIGKILL. Then, as the next start-up
would, it opens the queue (recovery) and checks:
- `trapd verify` is clean (every indexed file complete and decodable, every
  JPEG under images/ indexed) and no temporary file is left;
- every image whose row was committed before any earlier kill is still
  there, unchanged (SHA-256) and decodes;
- event numbers only grow: no number is reused or renumbered.
Exit status 1 on any problem. SIGKILL loses the process, not the page cache:
it tests the write/rename/commit ordering, not what a real card does
without power (that needs a Pi and a relay).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trapd.config import DEFAULT_CONFIG_PATH  # noqa: E402
from trapd.storage import Store  # noqa: E402

START_TIMEOUT_S = 60


@dataclass
class Tally:
    cycles: int = 0
    kills_in_event: int = 0         # an event was open at the kill
    kills_with_temp_file: int = 0   # a JPEG was half-written at the kill
    quarantined: int = 0            # renamed but its row not committed at the kill
    committed: dict[str, str] = field(default_factory=dict)   # file -> sha256
    events: dict[int, str] = field(default_factory=dict)      # number -> event_id
    lost: int = 0
    problems: list[str] = field(default_factory=list)


def write_inputs(workdir: Path) -> tuple[Path, Path, Path]:
    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    config["hardware"]["camera"]["main_size"] = [640, 480]   # keeps verify-everything cheap
    config["filter"]["enabled"] = False
    config["burst"].update(frames=5, interval_s=0.2)
    storage = workdir / "storage"
    config["storage"].update(root=str(storage), min_free_mb=0)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    pir_every_s = 1.0          # re-triggers chain the bursts: nearly always mid-event
    scenario = {"name": "powercut", "duration_s": 3600, "seed": 5,
                "conditions": [{"from_s": 0, "light": "day", "wind": 0.2}],
                "pir": {"hold_s": 0.1, "false_triggers": [{"at_s": round(0.5 + i * pir_every_s, 2), "duration_s": 0.6}
                                           for i in range(int(3600 / pir_every_s))]}}
    scenario_path = workdir / "powercut-scenario.yaml"
    scenario_path.write_text(yaml.safe_dump(scenario))
    return config_path, scenario_path, storage


def run_until_killed(config: Path, scenario: Path, storage: Path, log: Path, rng) -> None:
    trap = start_trap(config, scenario, storage, log)
    try:
        time.sleep(rng.uniform(0.6, 2.0))   # the first burst starts ~0.6 s in
    finally:
        kill_trap(trap)


def start_trap(config: Path, scenario: Path, storage: Path, log: Path) -> subprocess.Popen:
    """`trapd sim` in real time on `storage`, returned once it runs (its stderr in `log`)."""
    with open(log, "w") as stderr:
        trap = subprocess.Popen(
            [sys.executable, "-m", "trapd.cli", "sim", str(scenario), "--config", str(config),
             "--storage", str(storage), "--realtime"],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "trapd running" not in log.read_text():
            if trap.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sim daemon did not start:\n{log.read_text()}")
            time.sleep(0.05)
    except BaseException:
        kill_trap(trap)
        raise
    return trap


def kill_trap(trap: subprocess.Popen) -> None:
    """SIGKILL (if still running) and reap: no system call of it is in flight after this."""
    if trap.poll() is None:
        os.kill(trap.pid, signal.SIGKILL)
    trap.wait()


def before_recovery(storage: Path, tally: Tally) -> None:
    """What the kill left: an open event? a half-written file?"""
    if list((storage / "images").rglob("*.tmp")):
        tally.kills_with_temp_file += 1
    db = sqlite3.connect(storage / "queue.db")
    try:
        if db.execute("SELECT COUNT(*) FROM events WHERE state = 'open'").fetchone()[0]:
            tally.kills_in_event += 1
    finally:
        db.close()


def check_after_restart(storage: Path, tally: Tally) -> None:
    quarantine_before = _count(storage / "quarantine")
    store = Store(storage, min_free_mb=0)          # start-up recovery, as after a power cut
    try:
        tally.quarantined += _count(storage / "quarantine") - quarantine_before
        problems = store.verify()
        problems += [f"{p}: temporary file left" for p in storage.rglob("*.tmp")]
        rows = dict(store._db.execute(
            "SELECT file, sha256 FROM frames WHERE file IS NOT NULL"))
        events = dict(store._db.execute("SELECT number, event_id FROM events"))
    finally:
        store.close()
    for file, digest in tally.committed.items():
        problem = _committed_image_problem(storage, file, digest, rows)
        if problem:
            tally.lost += 1
            problems.append(problem)
    for number, event_id in tally.events.items():
        if events.get(number) != event_id:
            problems.append(f"event {number} ({event_id}) renumbered or gone")
    new = [n for n in events if n not in tally.events]
    if tally.events and new and min(new) <= max(tally.events):
        problems.append(f"event number {min(new)} reused (earlier maximum {max(tally.events)})")
    tally.committed.update(rows)
    tally.events.update(events)
    tally.problems += [f"cycle {tally.cycles + 1}: {p}" for p in problems]


def _committed_image_problem(storage: Path, file: str, digest: str, rows: dict) -> str | None:
    """`verify()` has checked every indexed file (size, SHA-256, decode); here:
    is the row of an image committed before an earlier kill still there, unchanged?"""
    if rows.get(file) != digest:
        return f"{file}: committed before a kill, its index row is gone or changed"
    if not (storage / file).exists():
        return f"{file}: committed before a kill, file lost"
    return None


def _count(directory: Path) -> int:
    return len(list(directory.glob("*.jpg"))) if directory.exists() else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="keep the queue here (default: a temporary directory)")
    args = parser.parse_args(argv)
    logging.getLogger("trapd").setLevel(logging.ERROR)   # recovery's notes; the table says it
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="trapd-powercut-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        config, scenario, storage = write_inputs(workdir)
        tally = Tally()
        started = time.monotonic()
        try:
            for cycle in range(1, args.cycles + 1):
                run_until_killed(config, scenario, storage, workdir / "trapd.log", rng)
                before_recovery(storage, tally)
                check_after_restart(storage, tally)
                tally.cycles = cycle            # counted once checked
                print(f"cycle {cycle}: {len(tally.committed)} committed images, {tally.lost} lost, "
                      f"{len(tally.problems)} problems", file=sys.stderr, flush=True)
        except KeyboardInterrupt:       # SIGINT: report the cycles completed so far
            print(f"interrupted after {tally.cycles} of {args.cycles} cycles")
        print_table(tally, args, time.monotonic() - started)
    for problem in tally.problems:
        print(problem)
    return 1 if tally.problems else 0


def print_table(tally: Tally, args, elapsed_s: float) -> None:
    rows = [("SIGKILL cycles", tally.cycles, f"seed {args.seed}"),
            ("kills during an open event", tally.kills_in_event, ""),
            ("kills with a half-written temp file", tally.kills_with_temp_file, "removed at restart"),
            ("images renamed but not yet indexed", tally.quarantined, "moved to quarantine/, kept"),
            ("committed images checked at the end", len(tally.committed), "SHA-256 + decode"),
            ("events (numbers never reused)", len(tally.events), ""),
            ("committed images lost", tally.lost, ""),
            ("verify problems / truncated files reachable", len(tally.problems), "")]
    print(f"| power-cut harness | count | note |\n|---|---|---|")
    for name, count, note in rows:
        print(f"| {name} | {count} | {note} |")
    print(f"({elapsed_s:.0f} s wall time)")


if __name__ == "__main__":
    sys.exit(main())
