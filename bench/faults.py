"""Fault campaign: break the card, the index, the folders and the processes
under a running trap, and check that it heals (issue 13).

    .venv/bin/python bench/faults.py [--faults N] [--seed S] [--kinds a,b] [--lazyfs-cycles N]

Each fault is applied to one storage root that lives on from fault to fault
(as a trap's card does), with a folder of someone else's files beside it
that some faults link into the root. After each fault the trap is started
(`trapd sim`, real time, a PIR every second, every burst frame written) and
stopped with SIGTERM once it has saved a new photo. Checked every time:
- every photo committed before the fault is still on the card, unchanged
  (SHA-256 of the file), and indexed;
- nothing outside the storage root was touched (every file there hashed);
- no event number was reused: the photos' numbers only grow, and each
  number keeps its event id;
- the trap captured again (a new photo saved) after the fault;
- no Python traceback on any trapd process's stderr, and exit status 0 on stop.

Kinds: kill-capture, kill-startup, kill-export, kill-offload (SIGKILL at a
random instant), index-flip (1-8 random bit flips in queue.db), index-truncate,
wal-removal (SIGKILL mid-burst, then the -wal deleted), link-images and
link-date (images/ or today's folder a link to someone else's folder; same
and, with root, another file system), card-full (another process fills a
tmpfs card: root only) and camera-fail (captures failing at once for 1-15
minutes of virtual time, in process at the Picamera2 seam: back-off, log
lines, back to capturing once it clears). Power cuts that lose the page
cache run on LazyFS: bench/lazyfs.py (--lazyfs-cycles).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests")]

import yaml  # noqa: E402
from powercut import kill_trap, start_trap, write_inputs  # noqa: E402
from trapd.config import load_config  # noqa: E402
from trapd.metadata import local_time  # noqa: E402
from trapd.recovery import IMAGE_NAME, xmp_fields  # noqa: E402

CAPTURE_TIMEOUT_S = 30
CARD_SIZE = "3g"   # room for a long campaign's photos (RAM-backed)
FIRST_LINKED_DAY = dt.datetime(2031, 1, 1, 12, tzinfo=dt.timezone.utc)
KINDS = ("kill-capture", "kill-startup", "kill-export", "kill-offload", "index-flip",
         "index-truncate", "wal-removal", "link-images", "link-date", "card-full", "camera-fail")


@dataclass
class Outcome:
    kind: str
    lost: list[str] = field(default_factory=list)
    outside_touched: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    captured_again: bool = True
    recovery_s: float | None = None
    tracebacks: list[str] = field(default_factory=list)
    skipped: str | None = None


class Campaign:
    def __init__(self, workdir: Path, rng: random.Random) -> None:
        self.workdir = workdir
        self.rng = rng
        self.config, self.scenario, self.storage = write_inputs(workdir)
        self.card_is_tmpfs = _mount_tmpfs(self.storage.parent / "card", CARD_SIZE)
        if self.card_is_tmpfs:     # a card another process can fill (root only)
            self.storage = self.storage.parent / "card" / "storage"
            _point_config_at(self.config, self.storage)
        self.outside = workdir / "someone-else"
        self.outsides: dict[Path, dict] = {}
        self._add_outside(self.outside)
        self.events: dict[int, str] = {}      # number -> event id, as the photos name them
        self.committed: dict[str, str] = {}   # file -> sha256 of what is on the card
        self.log = workdir / "trapd.log"
        self.day_scenario = workdir / "day-scenario.yaml"
        # Restarts see a PIR every 3 s: events end, so SIGTERM (which finishes
        # the event in flight) stops the trap within a few seconds.
        self.calm_scenario = _every_3_s(self.scenario, workdir / "calm-scenario.yaml")
        self.linked_days = 0
        self.capture_once()                   # a card with photos to lose

    # -- the trap ------------------------------------------------------------
    def capture_once(self, outcome: Outcome | None = None, scenario: Path | None = None,
                     photos: bool = True) -> None:
        """Start the trap, wait for a new photo (or, `photos=False`, a new event:
        a card that cannot take photos), stop it with SIGTERM."""
        started_wall = time.time()

        def progress():
            if not photos:
                return set(range(self._event_count()))
            # Written after this start: a photo a recovery indexed again is not a capture.
            return {f for f in self._indexed_files() if _written_since(self.storage / f,
                                                                        started_wall)}
        before = progress()
        started = time.monotonic()
        trap = start_trap(self.config, scenario or self.calm_scenario, self.storage, self.log)
        deadline = started + CAPTURE_TIMEOUT_S
        while time.monotonic() < deadline and not (progress() - before):
            time.sleep(0.1)
        new = progress() - before
        back_s = time.monotonic() - started
        trap.send_signal(signal.SIGTERM)
        try:
            status = trap.wait(30)
        except subprocess.TimeoutExpired:
            kill_trap(trap)
            status = "hung at stop"
        if outcome is not None:
            outcome.captured_again = bool(new)
            outcome.recovery_s = back_s if new else None
            self._stderr_check(outcome, "trapd sim")
            if status not in (0, 128 + signal.SIGTERM):   # the sim: stopped, report partial
                outcome.tracebacks.append(f"trapd sim exit status {status}")
        self._remember()

    def _event_count(self) -> int:
        try:
            db = sqlite3.connect(f"file:{self.storage / 'queue.db'}?mode=ro", uri=True, timeout=5)
            try:
                return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error:
            return 0

    def _indexed_files(self) -> list[str]:
        try:
            db = sqlite3.connect(f"file:{self.storage / 'queue.db'}?mode=ro", uri=True, timeout=5)
            try:
                return [r[0] for r in db.execute("SELECT file FROM frames WHERE file IS NOT NULL")]
            finally:
                db.close()
        except sqlite3.Error:
            return []

    def _stderr_check(self, outcome: Outcome, what: str, text: str | None = None) -> None:
        text = self.log.read_text(errors="replace") if text is None else text
        if "Traceback" in text:
            outcome.tracebacks.append(f"{what}: {text[text.index('Traceback'):][:400]}")

    def _remember(self) -> None:
        """What is committed now: the photos (by hash) and their event numbers."""
        for file in self._indexed_files():
            path = self.storage / file
            if file not in self.committed and path.is_file() and not path.is_symlink():
                self.committed[file] = sha256(path)
        for file in self.committed:
            found = IMAGE_NAME.match(Path(file).name)
            if found:
                self.events.setdefault(int(found["number"]), file.split("_E")[0])

    # -- after each fault ------------------------------------------------------
    def check(self, outcome: Outcome, highest_before: int) -> None:
        indexed = set(self._indexed_files())
        for file, digest in self.committed.items():
            path = self.storage / file
            if not path.is_file() or sha256(path) != digest:
                outcome.lost.append(f"{file}: gone or changed")
            elif file not in indexed:
                outcome.lost.append(f"{file}: on the card but no longer indexed")
        for folder, before in self.outsides.items():
            now = tree_digest(folder)
            outcome.outside_touched += sorted(
                f"{folder}/{name}" for name in set(now) | set(before)
                if now.get(name) != before.get(name))
        numbers = defaultdict(set)
        for file in indexed:
            found = IMAGE_NAME.match(Path(file).name)
            event_id = self._event_of(file)
            if found and event_id:      # None: freed by `offload --free`, its row kept
                numbers[int(found["number"])].add(event_id)
        for number, ids in numbers.items():
            if len(ids) > 1:
                outcome.reused.append(f"E{number:06d} names two events: {sorted(ids)}")
        new = [n for n in numbers if n not in self.events]
        if new and min(new) <= highest_before:
            outcome.reused.append(f"E{min(new):06d} reused (earlier maximum E{highest_before:06d})")

    def _event_of(self, file: str) -> str | None:
        """The event id a photo's own tags give (its XMP)."""
        try:
            return xmp_fields((self.storage / file).read_bytes()).get("EventID", "?")
        except OSError:
            return None

    def highest_event(self) -> int:
        return max(self.events, default=0)

    # -- the faults --------------------------------------------------------------
    def run(self, kind: str) -> Outcome:
        outcome = Outcome(kind)
        highest = self.highest_event()
        try:
            skipped = getattr(self, "fault_" + kind.replace("-", "_"))(outcome)
        except Exception:       # the harness's own failure: counted, the campaign goes on
            outcome.tracebacks.append("harness: " + traceback.format_exc(limit=4))
            return outcome
        if skipped and skipped != "captured":
            outcome.skipped = skipped
            return outcome
        if skipped == "captured":
            skipped = None
        elif not skipped:
            self.capture_once(outcome)
        self.check(outcome, highest)
        return outcome

    def fault_kill_capture(self, outcome: Outcome) -> None:
        trap = start_trap(self.config, self.scenario, self.storage, self.log)
        time.sleep(self.rng.uniform(0.3, 2.5))
        kill_trap(trap)
        self._stderr_check(outcome, "killed trapd sim")
        self._remember()        # a photo whose row committed before the kill is committed

    def fault_kill_startup(self, outcome: Outcome) -> None:
        """SIGKILL during start-up and its recovery (imports, index check, re-indexing)."""
        with open(self.log, "w") as stderr:
            trap = subprocess.Popen(
                [sys.executable, "-m", "trapd.cli", "sim", str(self.scenario), "--config",
                 str(self.config), "--storage", str(self.storage), "--realtime"],
                stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO)
        time.sleep(self.rng.uniform(0.2, 1.6))
        kill_trap(trap)
        self._stderr_check(outcome, "trapd sim killed at start-up")

    def fault_kill_export(self, outcome: Outcome) -> None:
        self._kill_command(outcome, ["export", str(self.workdir / "export"), "--mark-exported"])

    def fault_kill_offload(self, outcome: Outcome) -> None:
        drive = self.workdir / "drive"
        drive.mkdir(exist_ok=True)
        self._kill_command(outcome, ["offload", str(drive)]
                           + (["--free"] if self.rng.random() < 0.5 else []))

    def _kill_command(self, outcome: Outcome, args: list[str]) -> None:
        command = subprocess.Popen(
            [sys.executable, "-m", "trapd.cli", *args, "--config", str(self.config),
             "--storage", str(self.storage)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
        time.sleep(self.rng.uniform(0.3, 2.0))
        kill_trap(command)
        self._stderr_check(outcome, f"trapd {args[0]}", command.stderr.read())
        self._forget_freed()

    def _forget_freed(self) -> None:
        """`offload --free` deletes photos whose copy verified: not a loss."""
        freed = self._indexed_files_in_state("freed")
        for file in freed:
            self.committed.pop(file, None)

    def _indexed_files_in_state(self, state: str) -> list[str]:
        try:
            db = sqlite3.connect(f"file:{self.storage / 'queue.db'}?mode=ro", uri=True, timeout=5)
            try:
                return [r[0] for r in db.execute(
                    "SELECT file FROM frames WHERE file IS NOT NULL AND state = ?", (state,))]
            finally:
                db.close()
        except sqlite3.Error:
            return []

    def fault_index_flip(self, outcome: Outcome) -> None:
        db = self.storage / "queue.db"
        data = bytearray(db.read_bytes())
        for _ in range(self.rng.randint(1, 8)):
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        db.write_bytes(bytes(data))

    def fault_index_truncate(self, outcome: Outcome) -> None:
        db = self.storage / "queue.db"
        data = db.read_bytes()
        db.write_bytes(data[:self.rng.randrange(len(data))])

    def fault_wal_removal(self, outcome: Outcome) -> None:
        self.fault_kill_capture(outcome)
        for suffix in ("-wal", "-shm"):
            (self.storage / f"queue.db{suffix}").unlink(missing_ok=True)

    def fault_link_images(self, outcome: Outcome) -> None:
        """images/ becomes a link to someone else's folder for one run (events
        recorded, no photo), then a folder again (the next run must save photos)."""
        images = self.storage / "images"
        kept = self.storage.parent / "images-kept"   # same file system: a rename
        os.replace(images, kept)
        images.symlink_to(self._link_target())
        try:   # no photo may be saved through the link: the trap records events without
            self.capture_once(outcome, photos=False)
        finally:
            images.unlink()
            os.replace(kept, images)

    def fault_link_date(self, outcome: Outcome) -> str:
        """A date folder linked out of the root before the trap's first photo
        that day: the trap saves beside it (a new day for each such fault)."""
        day = FIRST_LINKED_DAY + dt.timedelta(days=self.linked_days)
        self.linked_days += 1
        scenario = yaml.safe_load(self.calm_scenario.read_text())
        scenario["start_time"] = day.isoformat()
        self.day_scenario.write_text(yaml.safe_dump(scenario))
        folder = local_time(int(day.timestamp() * 1e9), load_config(self.config).time.tz)
        link = self.storage / "images" / f"{folder:%Y-%m-%d}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(self._link_target())
        self.capture_once(outcome, scenario=self.day_scenario)
        return "captured"

    def _link_target(self) -> Path:
        other_fs = self.workdir / "other-fs"
        if self.rng.random() < 0.5 and _mount_tmpfs(other_fs, "4m"):
            target = other_fs / "someone-else"
            if target not in self.outsides:
                self._add_outside(target)
            return target
        return self.outside

    def fault_card_full(self, outcome: Outcome) -> str | None:
        """Another process fills the card to the last byte; the trap runs on it
        (events recorded, no photo), then the space comes back."""
        if not self.card_is_tmpfs:
            return "needs a tmpfs card (root)"
        ballast = self.storage.parent / "someone-elses-ballast"
        try:
            with open(ballast, "wb") as f:
                while True:
                    f.write(b"\0" * 2**20)
        except OSError:     # full: what the other process wanted
            pass
        try:
            self.capture_once(outcome, photos=False)
        finally:
            ballast.unlink()
        return None

    def fault_camera_fail(self, outcome: Outcome) -> str:
        """Captures failing at once while opens work, for 1-15 minutes of the
        sim's virtual time (in process: the fault lives at the Picamera2 seam),
        PIR edges meanwhile; then the fault clears and an animal passes."""
        from camera_fakes import failing_captures
        from camera_faults import LogLines
        from conftest import Bench
        from trapd.daemon import Hardware, build_trap, close_trap
        b = Bench(self.workdir / "camera-fail", {
            "storage": {"root": str(self.storage), "min_free_mb": 0},
            "filter": {"enabled": False}, "burst": {"frames": 3, "interval_s": 0.2}})
        lines = LogLines()
        logging.getLogger("trapd").addHandler(lines)
        try:
            close_trap(b.trap)
            camera_class = failing_captures(b.rig.picamera2_class)
            b.trap = build_trap(b.config, Hardware(camera_class, b.factory, b.clock),
                                on_event=b.events.append)
            outage_s = self.rng.uniform(60, 900)
            for at_s in sorted(self.rng.uniform(0, outage_s) for _ in range(3)):
                b.pir_pulse_at(at_s, 0.3)
            b.run_for(outage_s)
            camera_class.failing = False
            cleared_ns = b.clock.monotonic_ns()
            before = len(self._indexed_files())
            deadline_ns = cleared_ns + 700 * 10**9        # two back-off ceilings and more
            while len(self._indexed_files()) <= before and b.clock.monotonic_ns() < deadline_ns:
                b.pir_pulse_at(0.1, 0.3)
                b.run_for(10)
            outcome.captured_again = len(self._indexed_files()) > before
            outcome.recovery_s = (b.clock.monotonic_ns() - cleared_ns) / 1e9   # virtual
            if lines.count > 4 + outage_s / 300 + 4:
                outcome.tracebacks.append(f"log flood: {lines.count} lines in {outage_s:.0f} s")
        except Exception:
            outcome.tracebacks.append(traceback.format_exc(limit=3))
        finally:
            logging.getLogger("trapd").removeHandler(lines)
            b.close()
        self._remember()
        return "captured"

    def _add_outside(self, folder: Path) -> None:
        self._make_outside(folder)
        self.outsides[folder] = tree_digest(folder)

    @staticmethod
    def _make_outside(folder: Path) -> None:
        (folder / "holiday").mkdir(parents=True, exist_ok=True)
        (folder / "holiday" / "thesis.tex.tmp").write_text("three years of work")
        (folder / "holiday" / "beach.jpg").write_bytes(b"\xff\xd8 a beach \xff\xd9")
        (folder / "ST01_20261203_120000_E000001_01.jpg.tmp").write_bytes(b"looks like ours")
        (folder / "ST01_20261203_120000_E000002_01.jpg").write_bytes(b"looks like ours too")


def _written_since(path: Path, wall_s: float) -> bool:
    try:
        return path.stat().st_mtime >= wall_s - 0.01
    except OSError:
        return False


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _every_3_s(scenario: Path, to: Path) -> Path:
    settings = yaml.safe_load(scenario.read_text())
    settings["pir"]["false_triggers"] = settings["pir"]["false_triggers"][::3]
    to.write_text(yaml.safe_dump(settings))
    return to


def _point_config_at(config: Path, storage: Path) -> None:
    settings = yaml.safe_load(config.read_text())
    settings["storage"]["root"] = str(storage)
    config.write_text(yaml.safe_dump(settings))


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.path.ismount(path):
        return True
    path.mkdir(exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _unmount_all(workdir: Path) -> None:
    for mount in (workdir / "other-fs", workdir / "card"):
        if os.path.ismount(mount):
            subprocess.run(["umount", "-l", str(mount)], check=False)


def run_campaign(faults: int, seed: int, kinds=KINDS, workdir: Path | None = None,
                 progress=None) -> list[Outcome]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="trapd-faults-") as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        outcomes = []
        try:
            campaign = Campaign(work, rng)
            schedule = [kinds[i % len(kinds)] for i in range(faults)]
            rng.shuffle(schedule)
            for n, kind in enumerate(schedule, 1):
                outcome = campaign.run(kind)
                outcomes.append(outcome)
                if progress:
                    progress(f"fault {n}/{faults} {kind}: " + _outcome_line(outcome))
        except KeyboardInterrupt:
            if progress:
                progress(f"interrupted after {len(outcomes)} faults")
        finally:
            _unmount_all(work)
    return outcomes


def _outcome_line(o: Outcome) -> str:
    if o.skipped:
        return f"skipped ({o.skipped})"
    problems = o.lost + o.outside_touched + o.reused + o.tracebacks
    again = f"captured again after {o.recovery_s:.1f} s" if o.captured_again else "NOT CAPTURING"
    return again + (f"; PROBLEMS: {problems}" if problems else "")


def failures(outcomes: list[Outcome]) -> list[str]:
    found = []
    for n, o in enumerate(outcomes, 1):
        for problem in o.lost + o.outside_touched + o.reused + o.tracebacks:
            found.append(f"fault {n} ({o.kind}): {problem}")
        if not o.skipped and not o.captured_again:
            found.append(f"fault {n} ({o.kind}): the trap did not capture again")
    return found


def print_table(outcomes: list[Outcome], lazyfs: dict | None) -> None:
    by_kind = defaultdict(list)
    for o in outcomes:
        by_kind[o.kind].append(o)
    print("| fault kind | tried | images lost | files outside the root touched | numbers reused "
          "| not capturing again | back to capturing (s, median / max) | tracebacks |")
    print("|---|---|---|---|---|---|---|---|")
    totals = Counter()
    for kind in KINDS:
        runs = [o for o in by_kind.get(kind, []) if not o.skipped]
        if kind in by_kind and not runs:
            print(f"| {kind} | 0 | | | | | | skipped: {by_kind[kind][0].skipped} |")
            continue
        if not runs:
            continue
        row = Counter(tried=len(runs), lost=sum(len(o.lost) for o in runs),
                      outside=sum(len(o.outside_touched) for o in runs),
                      reused=sum(len(o.reused) for o in runs),
                      stuck=sum(not o.captured_again for o in runs),
                      tracebacks=sum(len(o.tracebacks) for o in runs))
        totals.update(row)
        times = sorted(o.recovery_s for o in runs if o.recovery_s is not None)
        timing = f"{times[len(times) // 2]:.1f} / {times[-1]:.1f}" if times else "-"
        timing += " (virtual)" if kind == "camera-fail" else ""
        print(f"| {kind} | {row['tried']} | {row['lost']} | {row['outside']} | {row['reused']} "
              f"| {row['stuck']} | {timing} | {row['tracebacks']} |")
    if lazyfs:
        row = Counter(tried=lazyfs["cycles"], lost=lazyfs["images_lost"],
                      reused=lazyfs["numbers_reused"],
                      tracebacks=lazyfs["verify_problems"])
        totals.update(row)
        print(f"| power cut on LazyFS (unsynced cache dropped) | {row['tried']} | {row['lost']} "
              f"| 0 | {row['reused']} | 0 | - | {row['tracebacks']} (verify problems) |")
    print(f"| **all** | {totals['tried']} | {totals['lost']} | {totals['outside']} "
          f"| {totals['reused']} | {totals['stuck']} | | {totals['tracebacks']} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=22, help="faults outside LazyFS")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--lazyfs-cycles", type=int, default=0)
    parser.add_argument("--workdir")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    started = time.monotonic()
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    outcomes = run_campaign(args.faults, args.seed, kinds, args.workdir, say)
    lazyfs = None
    if args.lazyfs_cycles:
        from lazyfs import LazyFSUnavailable, powercut_on_lazyfs
        try:
            lazyfs = powercut_on_lazyfs(args.lazyfs_cycles, args.seed, progress=say)
        except LazyFSUnavailable as exc:
            print(f"LazyFS power cuts not run: {exc}")
    print_table(outcomes, lazyfs)
    print(f"({time.monotonic() - started:.0f} s wall time, seed {args.seed})")
    problems = failures(outcomes) + (lazyfs["problems"] if lazyfs else [])
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
