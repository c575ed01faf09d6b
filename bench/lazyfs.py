"""Power cuts that lose the page cache: the storage root on LazyFS.

    .venv/bin/python bench/lazyfs.py [--cycles N] [--seed S] [--cache-size 64mb]

bench/powercut.py kills the trap with SIGKILL, which leaves the kernel's page
cache: bytes trapd wrote but never fsync'd still reach the card. Here the
storage root is a LazyFS mount (scripts/lazyfs.sh builds it from
../shared/vendor/lazyfs): a FUSE file system that keeps every unsynced byte in
its own cache and drops it on command, as a power cut does. Each cycle:

1. mount LazyFS over the card folder (empty cache: a fresh boot), start
   `trapd sim` on it exactly as bench/powercut.py does (real time, a PIR
   every second, every burst frame written);
2. after a random 0.6-2 s, snapshot the committed index (file, SHA-256 of
   every saved image; event numbers): read-only, through the mount, then wait
   for the trap's next commit, which shows every row in the snapshot was
   acknowledged (one writer connection commits one transaction at a time);
3. cut the power, one of:
   - clear: SIGKILL the trap, then `lazyfs::clear-cache`: everything not
     fsync'd is gone (LazyFS first reports what that is);
   - torn: `lazyfs::torn-op` on the index's write-ahead log: the trap's next
     write to it is torn in thirds, some reach the disk, and LazyFS dies;
   - crash-at: LazyFS dies right after a JPEG temp file's write (before its
     fsync), before the log's fsync (a commit in flight), or right after a
     JPEG's rename (before its row);
   then the trap is killed and the mount taken down;
4. mount again (cache empty), and do what the next start-up does: open the
   queue (recovery), then bench/powercut.py's checks: `verify()` clean, no
   `*.tmp`, every image in any earlier snapshot still indexed with the same
   SHA-256 and on disk, event numbers never reused or renumbered.

LazyFS passes metadata operations (create, rename, unlink, mkdir) straight to
the folder below, so what it takes away is file data only: it does not model
a rename lost for want of a directory fsync.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import re
import select
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from powercut import (Tally, before_recovery, check_after_restart, kill_trap,  # noqa: E402
                      start_trap, write_inputs)

BUILD_SCRIPT = REPO / "scripts" / "lazyfs.sh"
FIFO_CHUNK = 100           # LazyFS reads one command per read() of at most 100 bytes
MOUNT_TIMEOUT_S = 20
COMMAND_TIMEOUT_S = 10


class LazyFSUnavailable(Exception):
    """LazyFS cannot run here. `requirement`: "shared" (../shared missing),
    "tool" (a build dependency or FUSE missing) or "build" (the build failed)."""

    def __init__(self, reason: str, requirement: str) -> None:
        super().__init__(reason)
        self.requirement = requirement


class LazyFSError(RuntimeError):
    """LazyFS misbehaved: did not mount, did not answer a command."""


def fuse_problem() -> str | None:
    """Why FUSE mounts cannot work here, or None."""
    if not Path("/dev/fuse").exists():
        return "/dev/fuse absent (no FUSE in this kernel or container)"
    if shutil.which("fusermount3") is None:
        return "fusermount3 not installed (.ci/run installs fuse3 with apt-get)"
    return None      # (a mount that fails all the same is an error, not a skip)


def lazyfs_binary() -> Path:
    """Build LazyFS with scripts/lazyfs.sh (cached per tarball) and return its path."""
    problem = fuse_problem()
    if problem:
        raise LazyFSUnavailable(problem, "tool")
    result = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"{BUILD_SCRIPT} failed"])[-1]
        raise LazyFSUnavailable(reason, {2: "shared", 3: "tool"}.get(result.returncode, "build"))
    return Path(result.stdout.strip().splitlines()[-1])


class LazyFS:
    """Control of one mounted LazyFS (through its fault FIFO and its log)."""

    def __init__(self, mount_point: Path, data_dir: Path, process: subprocess.Popen,
                 fifo: Path, done_fd: int, log: Path) -> None:
        self.mount_point, self.data_dir, self.process = mount_point, data_dir, process
        self._fifo, self._done_fd, self.log = fifo, done_fd, log

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_dead(self, timeout: float) -> bool:
        """Wait until LazyFS has exited (after a crash fault); True if it has."""
        try:
            self.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def clear_cache(self) -> None:
        """Drop every byte not fsync'd, as a power cut would; returns once done."""
        while _read_nonblocking(self._done_fd):
            pass
        self._send("lazyfs::clear-cache")
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        answer = b""
        while b"finished::clear-cache" not in answer:
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive():
                raise LazyFSError(f"clear-cache not confirmed\n{self.log_tail()}")
            if select.select([self._done_fd], [], [], min(left, 0.1))[0]:
                answer += _read_nonblocking(self._done_fd)

    def unsynced_report(self) -> tuple[int, list[str]]:
        """(bytes not fsync'd, the files they belong to, below the mount)."""
        text = self._command("lazyfs::unsynced-data-report",
                             r"total number of bytes un-fsynced: \d+|all data blocks are synced")
        total = re.search(r"total number of bytes un-fsynced: (\d+)", text)
        files = re.findall(r"=> file: '([^']*)'", text)
        return (int(total.group(1)) if total else 0), [self._relative(f) for f in files]

    def cache_usage(self) -> float:
        """Percentage of LazyFS's cache pages in use. Near 100 %, it starts to write
        data through without an fsync, and a power cut would lose less than it should."""
        text = self._command("lazyfs::display-cache-usage", r"cache usage .* is [\d.]+%")
        return float(re.search(r"cache usage .* is ([\d.]+)%", text).group(1))

    def torn_op(self, relative: str, parts: int = 3, persist: tuple[int, ...] = (1,)) -> None:
        """The next write to `relative` (below the mount) is split into `parts`;
        only the parts numbered in `persist` (from 1) reach the disk, then LazyFS
        crashes (everything else unsynced is lost with it)."""
        path = self.data_dir / relative
        self._command(f"lazyfs::torn-op::file={path}::parts={parts}::"
                      f"persist={','.join(map(str, persist))}",
                      r"configured successfully", refused=r"INVALID torn-op")

    def torn_seq(self, relative: str, persist: tuple[int, ...], op: str = "write") -> None:
        """In the next run of `op`s to `relative` without an fsync between them,
        only those numbered in `persist` reach the disk, then LazyFS crashes."""
        path = self.data_dir / relative
        self._command(f"lazyfs::torn-seq::op={op}::file={path}::"
                      f"persist={','.join(map(str, persist))}",
                      r"configured successfully", refused=r"INVALID torn-seq")

    def crash(self, timing: str, op: str, from_rgx: str | None = None,
              to_rgx: str | None = None) -> None:
        """LazyFS kills itself `timing` ("before"/"after") the first `op` on a path
        matching the regex(es) (searched anywhere in the path)."""
        command = f"lazyfs::crash::timing={timing}::op={op}"
        command += f"::from_rgx={from_rgx}" if from_rgx else ""
        command += f"::to_rgx={to_rgx}" if to_rgx else ""
        self._command(command, r"received: VALID crash fault", refused=r"INVALID crash fault")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def _send(self, command: str) -> None:
        data = (command + "\n").encode()
        if len(data) > FIFO_CHUNK:
            raise ValueError(f"LazyFS command longer than {FIFO_CHUNK} bytes (use a shorter "
                             f"data folder path): {command}")
        try:
            fd = os.open(self._fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise LazyFSError(f"LazyFS is not reading its fault FIFO: {exc}") from exc
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _command(self, command: str, answer: str, refused: str | None = None) -> str:
        """Send one command and wait for LazyFS's answer in its log (one at a
        time: LazyFS would read two commands sent together as one)."""
        since = self.log.stat().st_size
        self._send(command)
        text = self._wait_log(answer if refused is None else f"{answer}|{refused}", since)
        if refused and re.search(refused, text):
            raise LazyFSError(f"LazyFS refused {command!r}\n{text}")
        return text

    def _wait_log(self, pattern: str, since: int) -> str:
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while True:
            with open(self.log, "rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline or not self.alive():
                raise LazyFSError(f"no answer from LazyFS matching {pattern!r}\n{self.log_tail()}")
            time.sleep(0.01)

    def _relative(self, path: str) -> str:
        try:
            return str(Path(path).relative_to(self.data_dir))
        except ValueError:
            return path


def _read_nonblocking(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


@contextmanager
def mounted(data_dir: Path | None = None, *, cache_size: str = "64mb",
            binary: Path | None = None):
    """Mount LazyFS over `data_dir` (default: a fresh folder, removed afterwards);
    yields (mount_point, LazyFS). Unmounts (fusermount3 -u) on the way out, also
    on error; whatever was not fsync'd by then is lost, as in a power cut."""
    binary = binary or lazyfs_binary()
    work = Path(tempfile.mkdtemp(prefix="lzfs_"))
    fresh = data_dir is None
    data_dir = (work / "data" if fresh else Path(data_dir)).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    mount_point, fifo, done, log = (work / "mnt", work / "faults.fifo", work / "done.fifo",
                                    work / "lazyfs.log")
    mount_point.mkdir()
    os.mkfifo(fifo, 0o600)
    os.mkfifo(done, 0o600)
    config = work / "lazyfs.toml"
    config.write_text(
        "[faults]\n"
        f'fifo_path="{fifo}"\n'
        f'fifo_path_completed="{done}"\n'
        "[cache]\n"
        "apply_eviction=false\n"          # eviction would write unsynced pages through
        "[cache.simple]\n"
        f'custom_size="{cache_size}"\n'
        "blocks_per_page=1\n"
        "[filesystem]\n"
        "log_all_operations=false\n"
        'logfile=""\n')
    # Our end of the completion FIFO, open before LazyFS's worker blocks opening its end.
    done_fd = os.open(done, os.O_RDWR | os.O_NONBLOCK)
    process = None
    try:
        with open(log, "wb") as out:
            # The config path relative to cwd: LazyFS ignores a --config-path that
            # contains "-o" anywhere (any case), as a temporary folder's name may.
            process = subprocess.Popen(
                [str(binary), str(mount_point), "--config-path", config.name,
                 "-o", "modules=subdir", "-o", f"subdir={data_dir}", "-f"],
                cwd=work, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)      # Ctrl-C reaches us, and we unmount
        lazyfs = LazyFS(mount_point, data_dir, process, fifo, done_fd, log)
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not (is_mounted(mount_point)
                   and "waiting for fault commands" in log.read_text(errors="replace")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise LazyFSError(f"LazyFS did not mount at {mount_point}\n{lazyfs.log_tail()}")
            time.sleep(0.02)
        yield mount_point, lazyfs
    finally:
        unmounted = _unmount(mount_point, process)
        os.close(done_fd)
        if unmounted:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"lazyfs: {mount_point} still mounted; left {work} in place", file=sys.stderr)


def is_mounted(path: Path) -> bool:
    """From the mount table: os.path.ismount says False for a FUSE mount whose
    file system died (stat fails with ENOTCONN), which still needs unmounting."""
    target = os.path.realpath(path)
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            point = line.split()[1]
            if re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point) == target:
                return True
    return False


def _unmount(mount_point: Path, process: subprocess.Popen | None) -> bool:
    """fusermount3 -u (also after LazyFS crashed), then reap LazyFS."""
    for attempt in range(50):
        if not is_mounted(mount_point):
            break
        result = subprocess.run(["fusermount3", "-u", str(mount_point)],
                                capture_output=True, text=True)
        if result.returncode == 0:
            break
        time.sleep(0.1)                        # busy: a process is still closing its files
    else:
        subprocess.run(["fusermount3", "-u", "-z", str(mount_point)], capture_output=True)
    if process is not None:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return not is_mounted(mount_point)


# --- the power-cut harness -------------------------------------------------------------

KINDS = ("clear", "torn", "crash-at")
KIND_WEIGHTS = (2, 1, 1)
CRASH_POINTS = {   # what it leaves: (timing, op, from_rgx, to_rgx)
    "JPEG temp file written, not fsync'd": ("after", "write", r"jpg\.tmp", None),
    "commit written to the log, not fsync'd": ("before", "fsync", r"queue\.db-wal", None),
    # for rename LazyFS (a47a5ba) checks to_rgx only when from_rgx is given too
    "JPEG renamed, its row not committed": ("after", "rename", r"jpg\.tmp", r"\.jpg"),
}
TORN_PARTS = ((1,), (2,), (3,), (1, 2), (1, 3), (2, 3))   # which thirds reach the disk
REACH_S = 3.0      # a torn or crash fault not reached in this time becomes a clear-cache cut
ACK_WAIT_S = 0.5


@dataclass
class CutCounts:
    kills: int = 0
    kinds: Counter = field(default_factory=Counter)          # cut kind -> cycles
    crash_points: Counter = field(default_factory=Counter)   # CRASH_POINTS key -> cycles
    not_reached: int = 0          # torn/crash faults the trap did not reach in REACH_S
    dropping_data: int = 0        # clear-cache cuts that dropped unsynced bytes
    dropped_bytes: int = 0
    unsynced_files: Counter = field(default_factory=Counter)  # kind of file -> cuts
    max_cache_usage: float = 0.0


def acknowledged_snapshot(storage: Path, trap: subprocess.Popen
                          ) -> tuple[dict[str, str], dict[int, str]]:
    """Saved images (file -> sha256) and events (number -> event_id) committed
    so far, read-only through the mount; then wait (up to ACK_WAIT_S) until the
    trap commits again, which shows the snapshot's last commit had returned."""
    db_path = storage / "queue.db"
    if not db_path.exists():
        return {}, {}
    db = sqlite3.connect(db_path.as_uri() + "?mode=ro", uri=True, isolation_level=None,
                         timeout=5)
    try:
        db.execute("BEGIN")
        try:
            rows = dict(db.execute("SELECT file, sha256 FROM frames WHERE file IS NOT NULL"))
            events = dict(db.execute("SELECT number, event_id FROM events"))
        except sqlite3.OperationalError:      # the schema is not there yet
            return {}, {}
        version = db.execute("PRAGMA data_version").fetchone()[0]
        db.execute("COMMIT")
        deadline = time.monotonic() + ACK_WAIT_S
        while (db.execute("PRAGMA data_version").fetchone()[0] == version
               and time.monotonic() < deadline and trap.poll() is None):
            time.sleep(0.02)
    finally:
        db.close()                 # before the cut: a reader never checkpoints the log
    return rows, events


def powercut_on_lazyfs(cycles: int, seed: int, cache_size: str = "64mb",
                       inputs: Path | None = None, progress=None) -> dict:
    """Run `cycles` power cuts; return the counts (see the module's docstring)."""
    rng = random.Random(seed)
    binary = lazyfs_binary()
    trapd_log = logging.getLogger("trapd")
    level = trapd_log.level
    trapd_log.setLevel(logging.ERROR)      # recovery's notes; the counts say it
    base = Path(tempfile.mkdtemp(prefix="lzfs_"))        # short: commands are <= 100 bytes
    card = base / "card"
    card.mkdir()
    inputs = Path(inputs) if inputs else base / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    config, scenario, _ = write_inputs(inputs)
    tally, cuts, cycle_s = Tally(), CutCounts(), []
    lost: set[str] = set()          # committed images gone, incomplete or altered
    emptied: Counter = Counter()    # trapd's small files found empty after a cut
    started = time.monotonic()
    try:
        for cycle in range(1, cycles + 1):
            t0 = time.monotonic()
            rows, events, what = _boot_and_cut(card, config, scenario, inputs / "trapd.log",
                                               rng, cuts, tally, binary, cache_size)
            with mounted(card, cache_size=cache_size, binary=binary) as (mount, _):
                storage = mount / "storage"          # the next boot: recovery, then checks
                emptied.update(f for f in SMALL_FILES if _empty(storage / f))
                before_recovery(storage, tally)
                tally.committed.update(rows)         # committed before the cut: must survive
                tally.events.update(events)
                committed = dict(tally.committed)
                check_after_restart(storage, tally)
                for file, why in _lost_images(storage, committed).items():
                    if file not in lost:
                        lost.add(file)
                        tally.problems.append(f"cycle {cycle}: lost: {file}: {why}")
            tally.cycles = cycle
            cycle_s.append(time.monotonic() - t0)
            if progress:
                progress(f"cycle {cycle}: {what}; {len(tally.committed)} committed images, "
                         f"{len(lost)} lost, {len(tally.problems)} problems "
                         f"({cycle_s[-1]:.1f} s)")
    except KeyboardInterrupt:
        if progress:
            progress(f"interrupted after {tally.cycles} of {cycles} cycles")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        trapd_log.setLevel(level)
    reused = sum(1 for p in tally.problems if "reused" in p or "renumbered" in p)
    lost_lines = sum(1 for p in tally.problems if ": lost: " in p or "committed before a kill" in p)
    return {
        "cycles": tally.cycles,
        "kills": cuts.kills,
        "cuts": {k: cuts.kinds[k] for k in KINDS},
        "crash_points": {k: cuts.crash_points[k] for k in CRASH_POINTS},
        "faults_not_reached": cuts.not_reached,
        "cuts_dropping_unsynced_data": cuts.dropping_data,
        "unsynced_bytes_dropped": cuts.dropped_bytes,
        "unsynced_files": dict(cuts.unsynced_files),
        "kills_in_event": tally.kills_in_event,
        "temp_files_removed": tally.kills_with_temp_file,
        "quarantined": tally.quarantined,
        "images_committed": len(tally.committed),
        "events": len(tally.events),
        "images_lost": len(lost),
        "numbers_reused": reused,
        "verify_problems": len(tally.problems) - lost_lines - reused,
        "small_files_emptied": dict(emptied),
        "problems": tally.problems,
        "max_cache_usage_pct": cuts.max_cache_usage,
        "cycle_s_mean": sum(cycle_s) / len(cycle_s) if cycle_s else 0.0,
        "cycle_s_max": max(cycle_s, default=0.0),
        "wall_s": time.monotonic() - started,
    }


def _boot_and_cut(card: Path, config: Path, scenario: Path, log: Path, rng: random.Random,
                  cuts: CutCounts, tally: Tally, binary: Path, cache_size: str):
    """One boot: mount, run the trap, snapshot, cut the power.
    Returns the snapshot (rows, events) and what the cut was."""
    kind, what = rng.choices(KINDS, KIND_WEIGHTS)[0], ""
    with mounted(card, cache_size=cache_size, binary=binary) as (mount, lazyfs):
        trap = start_trap(config, scenario, mount / "storage", log)
        try:
            time.sleep(rng.uniform(0.6, 2.0))      # the first burst starts ~0.6 s in
            if trap.poll() is not None:
                tally.problems.append(f"cycle {tally.cycles + 1}: the trap exited by itself "
                                      f"(status {trap.returncode})")
            rows, events = acknowledged_snapshot(mount / "storage", trap)
            usage = lazyfs.cache_usage()
            cuts.max_cache_usage = max(cuts.max_cache_usage, usage)
            if usage > 90:
                tally.problems.append(f"cycle {tally.cycles + 1}: LazyFS cache {usage}% full: "
                                      "unsynced data may have been written through")
            if kind == "torn":
                persist = rng.choice(TORN_PARTS)
                lazyfs.torn_op("storage/queue.db-wal", parts=3, persist=persist)
                what = f"torn write of queue.db-wal (thirds {persist} on disk)"
            elif kind == "crash-at":
                point = rng.choice(sorted(CRASH_POINTS))
                lazyfs.crash(*CRASH_POINTS[point])
                what = f"LazyFS died: {point}"
            if kind != "clear":
                if lazyfs.wait_dead(REACH_S):
                    cuts.kinds[kind] += 1
                    if kind == "crash-at":
                        cuts.crash_points[point] += 1
                else:
                    cuts.not_reached += 1
                    kind = "clear"
            kill_trap(trap)
            cuts.kills += 1
            if kind == "clear":
                unsynced, files = lazyfs.unsynced_report()
                lazyfs.clear_cache()
                cuts.kinds["clear"] += 1
                cuts.dropping_data += unsynced > 0
                cuts.dropped_bytes += unsynced
                cuts.unsynced_files.update({_file_kind(f) for f in files})
                what = (f"{what} not reached in {REACH_S:.0f} s, so " if what else "") + \
                    f"SIGKILL + clear-cache ({unsynced} unsynced bytes dropped)"
        finally:
            kill_trap(trap)
    return rows, events, what


def _lost_images(storage: Path, committed: dict[str, str]) -> dict[str, str]:
    """Committed images (file -> sha256) that are no longer indexed with that
    digest, or whose file is missing, incomplete or altered: file -> why."""
    # Without the -shm file (exclusive locking): through LazyFS, SQLite's
    # ftruncate of the -shm sometimes fails after a cut (SQLITE_IOERR_SHMOPEN).
    db = sqlite3.connect(storage / "queue.db", timeout=10)
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        rows = dict(db.execute("SELECT file, sha256 FROM frames WHERE file IS NOT NULL"))
    finally:
        db.close()
    lost = {}
    for file, digest in committed.items():
        if rows.get(file) != digest:
            lost[file] = "its index row is gone or changed"
            continue
        try:
            data = (storage / file).read_bytes()
        except FileNotFoundError:
            lost[file] = "file missing"
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            lost[file] = f"content differs from its SHA-256 ({len(data)} bytes left)"
    return lost


SMALL_FILES = ("health.json", "event-number")   # trapd's own files beside the index


def _empty(path: Path) -> bool:
    return path.exists() and path.stat().st_size == 0


def _file_kind(path: str) -> str:
    for suffix in (".jpg.tmp", "queue.db-wal", "queue.db-shm", "queue.db", ".jpg"):
        if path.endswith(suffix):
            return suffix.lstrip(".")
    return Path(path).name


def print_table(result: dict, seed: int) -> None:
    rows = [("power cuts (SIGKILL + LazyFS cache lost)", result["cycles"], f"seed {seed}"),
            ("  SIGKILL + clear-cache at a random instant", result["cuts"]["clear"],
             f"{result['cuts_dropping_unsynced_data']} dropped unsynced data "
             f"({result['unsynced_bytes_dropped']} bytes)"),
            ("  torn write of queue.db-wal, LazyFS dies", result["cuts"]["torn"],
             f"{result['faults_not_reached']} torn/crash faults not reached in {REACH_S:.0f} s "
             "(clear-cache cuts instead)"),
            ("  LazyFS dies at a chosen operation", result["cuts"]["crash-at"],
             "; ".join(f"{v} {k}" for k, v in result["crash_points"].items())),
            ("kills during an open event", result["kills_in_event"], ""),
            ("kills with a half-written temp file", result["temp_files_removed"],
             "removed at restart"),
            ("images renamed but not yet indexed, moved to quarantine/", result["quarantined"],
             "kept (a photo indexed again from its tags counts as committed)"),
            ("committed images checked at the end", result["images_committed"],
             "snapshot before each cut; SHA-256 + decode"),
            ("events (numbers never reused)", result["events"], ""),
            ("committed images lost", result["images_lost"],
             "missing, incomplete or altered, or row gone"),
            ("verify problems / truncated files reachable", result["verify_problems"], ""),
            ("trapd's small files found empty after a cut",
             sum(result["small_files_emptied"].values()),
             ", ".join(f"{k} {v}" for k, v in sorted(result["small_files_emptied"].items()))
             + (" (written without fsync)" if result["small_files_emptied"] else "")),
            ("event numbers reused or renumbered", result["numbers_reused"], "")]
    print("| power cut on LazyFS | count | note |\n|---|---|---|")
    for name, count, note in rows:
        print(f"| {name} | {count} | {note} |")
    unsynced = ", ".join(f"{k} {v}" for k, v in sorted(result["unsynced_files"].items()))
    print(f"(files holding unsynced data at the clear-cache cuts, cuts per kind: {unsynced or '-'}; "
          f"LazyFS cache at most {result['max_cache_usage_pct']}% used)")
    print(f"({result['wall_s']:.0f} s wall time; a cycle {result['cycle_s_mean']:.1f} s on "
          f"average, {result['cycle_s_max']:.1f} s at most)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-size", default="64mb", help="LazyFS cache (default 64mb)")
    parser.add_argument("--workdir", help="config, scenario and trap log here")
    args = parser.parse_args(argv)
    try:
        result = powercut_on_lazyfs(args.cycles, args.seed, args.cache_size, args.workdir,
                                    progress=lambda line: print(line, file=sys.stderr, flush=True))
    except LazyFSUnavailable as exc:
        print(f"lazyfs unavailable: {exc}")
        return 2
    print_table(result, args.seed)
    for problem in result["problems"]:
        print(problem)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
