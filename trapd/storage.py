"""Queue stage: durable JPEG files under one root plus an SQLite (WAL) index.

Contract (other tools rely on it, see DESIGN.md):
- a file is written to a temporary name, fsync'd, renamed, its directory
  fsync'd, and only then is its row committed: a crash at any instant leaves
  no truncated JPEG reachable from the index;
- event numbers come from an AUTOINCREMENT key committed before any file of
  the event is written, so they are never reused, across restarts too;
- below the free-space floor nothing more is saved (said once, counted) and
  nothing is ever deleted;
- at start-up temporaries are removed, events left open are marked
  interrupted, and JPEGs without a row are moved to `quarantine/` (kept).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import simplejpeg

from trapd.errors import StorageError
from trapd.health import HEALTH_FILE, Health

log = logging.getLogger(__name__)

DB_NAME = "queue.db"
IMAGES_DIR = "images"
QUARANTINE_DIR = "quarantine"
TEMP_SUFFIX = ".tmp"
FILE_MODE = 0o640
DIR_MODE = 0o750
MB = 1024 * 1024

# Frame states. Kept frames start `pending`; export/offload move them on:
# pending -> exported (in a package made with --mark-exported) -> offloaded
# (copy verified on a drive) -> freed (removed from the card after that).
DROPPED = "dropped"          # the filter found nothing; no file
PENDING = "pending"          # saved, waiting for export/offload
NOT_SAVED = "not_saved"      # kept, but below the free-space floor
MISSING = "missing"          # indexed, but the file vanished (found at start-up)
EXPORTED = "exported"        # written into a Camtrap DP package (still on the card)
OFFLOADED = "offloaded"      # a copy on an offload drive matched its SHA-256
FREED = "freed"              # removed from the card by `offload --free`, after OFFLOADED
ON_CARD = (PENDING, EXPORTED, OFFLOADED)
NOT_OFFLOADED = (PENDING, EXPORTED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    station_id TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    trigger TEXT NOT NULL,
    trigger_monotonic_ns INTEGER NOT NULL,
    trigger_wall_ns INTEGER NOT NULL,
    ended_wall_ns INTEGER,
    state TEXT NOT NULL DEFAULT 'open',
    note TEXT,
    clock_synced INTEGER,
    wall_jump_ns INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    event_number INTEGER NOT NULL REFERENCES events(number),
    sequence INTEGER NOT NULL,
    sensor_timestamp_ns INTEGER NOT NULL,
    capture_wall_ns INTEGER NOT NULL,
    pre_trigger INTEGER NOT NULL,
    score REAL,
    kept INTEGER NOT NULL,
    state TEXT NOT NULL,
    media_id TEXT UNIQUE,
    file TEXT UNIQUE,
    size_bytes INTEGER,
    sha256 TEXT,
    metadata TEXT,
    exported_wall_ns INTEGER,
    offload_dest TEXT,
    offload_path TEXT,
    offloaded_wall_ns INTEGER,
    UNIQUE (event_number, sequence)
);
"""

# Columns added since the first release, added to an older queue.db on open
# (ALTER TABLE ... ADD COLUMN keeps every row). `clock_synced` NULL = not recorded.
ADDED_COLUMNS = (
    ("events", "clock_synced", "INTEGER"),
    ("events", "wall_jump_ns", "INTEGER NOT NULL DEFAULT 0"),
    ("frames", "exported_wall_ns", "INTEGER"),
    ("frames", "offload_dest", "TEXT"),
    ("frames", "offload_path", "TEXT"),
    ("frames", "offloaded_wall_ns", "INTEGER"),
)


@dataclass(frozen=True)
class EventRecord:
    number: int
    event_id: str


@dataclass(frozen=True)
class FrameRecord:
    """What the pipeline knows about one scored frame."""

    event_number: int
    sequence: int
    sensor_timestamp_ns: int
    capture_wall_ns: int
    pre_trigger: bool
    score: float | None
    kept: bool
    media_id: str | None = None
    metadata: dict | None = None


class Store:
    def __init__(self, root: str | os.PathLike, min_free_mb: int, recover: bool = True) -> None:
        """`recover=False` opens the queue beside a running daemon (status,
        verify) without touching its in-flight files."""
        self.root = Path(root)
        self.min_free_mb = min_free_mb
        self.full = False
        try:
            _make_dir(self.root)
            _make_dir(self.root / IMAGES_DIR)
            _make_private(self.root / DB_NAME)
            self._db = sqlite3.connect(self.root / DB_NAME, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._add_missing_columns()
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the image queue at {self.root}: {exc}") from exc
        # Only the daemon (recover=True) reports health; a reader must not overwrite it.
        self.health = Health(self.root / HEALTH_FILE if recover else None)
        if recover:
            self.recover()

    def _add_missing_columns(self) -> None:
        for table, column, declaration in ADDED_COLUMNS:
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                log.info("upgrading the queue index: adding %s.%s", table, column)
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    # -- events -----------------------------------------------------------
    def open_event(self, station_id: str, deployment_id: str, trigger: str,
                   trigger_monotonic_ns: int, trigger_wall_ns: int,
                   clock_synced: bool | None = None, wall_jump_ns: int = 0) -> EventRecord:
        """`clock_synced`: the kernel's verdict at the trigger (None = unknown);
        `wall_jump_ns`: wall-clock steps seen since the previous event."""
        synced = None if clock_synced is None else int(clock_synced)
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO events (event_id, station_id, deployment_id, trigger,"
                " trigger_monotonic_ns, trigger_wall_ns, clock_synced, wall_jump_ns)"
                " VALUES ('', ?, ?, ?, ?, ?, ?, ?)",
                (station_id, deployment_id, trigger, trigger_monotonic_ns, trigger_wall_ns,
                 synced, wall_jump_ns))
            number = cursor.lastrowid
            event_id = f"{deployment_id}-E{number:06d}"
            self._db.execute("UPDATE events SET event_id = ? WHERE number = ?", (event_id, number))
        return EventRecord(number, event_id)

    def close_event(self, event: EventRecord, ended_wall_ns: int, note: str | None = None) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE events SET state = 'closed', ended_wall_ns = ?, note = ? WHERE number = ?",
                (ended_wall_ns, note, event.number))

    def add_wall_jump(self, event: EventRecord, jump_ns: int) -> None:
        """A wall-clock step seen while `event` was in progress."""
        with self._transaction():
            self._db.execute("UPDATE events SET wall_jump_ns = wall_jump_ns + ? WHERE number = ?",
                             (jump_ns, event.number))

    # -- frames -----------------------------------------------------------
    def add_frame(self, record: FrameRecord, jpeg: bytes | None = None,
                  relative_path: str | None = None) -> str | None:
        """Index one scored frame; with `jpeg`, save it first. Returns the
        stored file's path relative to the root, or None if none was saved."""
        saved = None
        if record.kept and jpeg is not None:
            saved = self._save_file(relative_path, jpeg)
        self.index_frame(record, jpeg, saved)
        return saved

    def save_file(self, relative_path: str, jpeg: bytes) -> str | None:
        """Write one image durably (tmp, fsync, rename); safe from worker threads.
        Its row must be committed afterwards with `index_frame`."""
        return self._save_file(relative_path, jpeg)

    def index_frame(self, record: FrameRecord, jpeg: bytes | None, saved: str | None) -> None:
        """Commit a frame's row; `saved` is the file `save_file` made durable, or None."""
        state = PENDING if record.kept else DROPPED
        if record.kept and jpeg is not None:
            state = PENDING if saved else NOT_SAVED
        values = (record.event_number, record.sequence, record.sensor_timestamp_ns,
                  record.capture_wall_ns, int(record.pre_trigger), record.score,
                  int(record.kept), state, record.media_id if saved else None, saved,
                  len(jpeg) if saved else None,
                  hashlib.sha256(jpeg).hexdigest() if saved else None,
                  json.dumps(record.metadata, default=str) if record.metadata else None)
        with self._transaction():
            self._db.execute(
                "INSERT INTO frames (event_number, sequence, sensor_timestamp_ns, capture_wall_ns,"
                " pre_trigger, score, kept, state, media_id, file, size_bytes, sha256, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)

    def _save_file(self, relative_path: str, jpeg: bytes) -> str | None:
        if not self._has_room_for(len(jpeg)):
            return None
        target = self.root / IMAGES_DIR / relative_path
        _make_dir(target.parent)
        temporary = target.with_name(target.name + TEMP_SUFFIX)
        try:
            _write_durably(temporary, jpeg)
            os.replace(temporary, target)
            fsync_dir(target.parent)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            log.error("could not save %s: %s", relative_path, exc)
            return None
        return str(target.relative_to(self.root))

    def _has_room_for(self, size: int) -> bool:
        free = shutil.disk_usage(self.root).free
        full = free - size < self.min_free_mb * MB
        if full != self.full:
            self.full = full
            if full:
                log.error("storage full: %d MB free at %s, below the %d MB floor; "
                          "saving stops until space is freed (nothing is deleted)",
                          free // MB, self.root, self.min_free_mb)
            else:
                log.warning("storage has room again (%d MB free); saving resumes", free // MB)
        return not full

    # -- start-up recovery ------------------------------------------------
    def recover(self) -> None:
        images = self.root / IMAGES_DIR
        for temporary in images.rglob("*" + TEMP_SUFFIX):
            log.warning("removing unfinished temporary file %s", temporary)
            temporary.unlink()
        with self._transaction():
            cursor = self._db.execute(
                "UPDATE events SET state = 'interrupted' WHERE state = 'open'")
        if cursor.rowcount:
            log.warning("%d event(s) were interrupted by a stop or power cut", cursor.rowcount)
        self._mark_missing_files()
        self._quarantine_unindexed(images)

    def _mark_missing_files(self) -> None:
        for row_id, file in self._db.execute(
                "SELECT id, file FROM frames WHERE file IS NOT NULL AND state NOT IN (?, ?)",
                (MISSING, FREED)).fetchall():
            if not (self.root / file).exists():
                log.error("indexed image %s is missing from the card", file)
                with self._transaction():
                    self._db.execute("UPDATE frames SET state = ? WHERE id = ?", (MISSING, row_id))

    def _quarantine_unindexed(self, images: Path) -> None:
        indexed = self._indexed_files()
        for path in sorted(images.rglob("*.jpg")):
            relative = str(path.relative_to(self.root))
            if relative in indexed:
                continue
            target = self.root / QUARANTINE_DIR / path.name
            _make_dir(target.parent)
            os.replace(path, target)
            log.warning("image %s had no index row (stopped mid-save); kept in %s", relative, target)

    def _indexed_files(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT file FROM frames WHERE file IS NOT NULL")}

    # -- operator views ---------------------------------------------------
    def status(self) -> dict:
        usage = shutil.disk_usage(self.root)
        last = self._db.execute(
            "SELECT event_id, trigger, trigger_wall_ns, state FROM events"
            " ORDER BY number DESC LIMIT 1").fetchone()
        return {
            "root": str(self.root),
            "events": dict(self._db.execute("SELECT state, COUNT(*) FROM events GROUP BY state")),
            "frames": dict(self._db.execute("SELECT state, COUNT(*) FROM frames GROUP BY state")),
            "last_event": None if last is None else {
                "event_id": last[0], "trigger": last[1], "trigger_wall_ns": last[2], "state": last[3]},
            "free_mb": usage.free // MB,
            "min_free_mb": self.min_free_mb,
            "below_floor": usage.free < self.min_free_mb * MB,
        }

    def verify(self) -> list[str]:
        """Problems found: rows whose file is absent, truncated, altered or not
        a decodable JPEG, and JPEGs under the images folder without a row."""
        problems = []
        indexed = set()
        for file, size, digest, state in self._db.execute(
                "SELECT file, size_bytes, sha256, state FROM frames WHERE file IS NOT NULL"):
            indexed.add(file)
            if state == FREED:
                continue
            problem = _check_image(self.root / file, size, digest)
            if problem:
                problems.append(f"{file}: {problem}" + (" (known missing)" if state == MISSING else ""))
        for path in sorted((self.root / IMAGES_DIR).rglob("*.jpg")):
            if str(path.relative_to(self.root)) not in indexed:
                problems.append(f"{path.relative_to(self.root)}: no index row")
        return problems

    # -- export and offload -------------------------------------------------
    def saved_frames(self, states: tuple[str, ...], deployment_id: str | None = None,
                     since_wall_ns: int | None = None, offload_dest: str | None = None
                     ) -> list[sqlite3.Row]:
        """Saved frames in capture order (event number, then sequence), each with
        its event's fields (event_id, trigger, clock_synced, wall_jump_ns,
        deployment_id, trigger_wall_ns, ended_wall_ns)."""
        marks = ",".join("?" * len(states))
        query = ("SELECT f.*, e.event_id, e.trigger, e.clock_synced, e.wall_jump_ns,"
                 " e.deployment_id, e.station_id, e.trigger_wall_ns, e.ended_wall_ns"
                 " FROM frames f JOIN events e ON e.number = f.event_number"
                 f" WHERE f.file IS NOT NULL AND f.state IN ({marks})")
        params: list = list(states)
        for condition, value in (("e.deployment_id = ?", deployment_id),
                                 ("f.capture_wall_ns >= ?", since_wall_ns),
                                 ("f.offload_dest = ?", offload_dest)):
            if value is not None:
                query += " AND " + condition
                params.append(value)
        cursor = self._db.execute(query + " ORDER BY f.event_number, f.sequence", params)
        cursor.row_factory = sqlite3.Row
        return cursor.fetchall()

    def deployments(self) -> list[str]:
        return [r[0] for r in self._db.execute(
            "SELECT DISTINCT deployment_id FROM events ORDER BY deployment_id")]

    def mark_exported(self, frame_ids: list[int], wall_ns: int) -> int:
        """Pending frames among `frame_ids` become exported; returns how many."""
        with self._transaction():
            return sum(self._db.execute(
                "UPDATE frames SET state = ?, exported_wall_ns = ? WHERE id = ? AND state = ?",
                (EXPORTED, wall_ns, frame_id, PENDING)).rowcount for frame_id in frame_ids)

    def mark_offloaded(self, frame_id: int, dest: str, path: str, wall_ns: int) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE frames SET state = ?, offload_dest = ?, offload_path = ?,"
                " offloaded_wall_ns = ? WHERE id = ?", (OFFLOADED, dest, path, wall_ns, frame_id))

    def mark_freed(self, frame_id: int) -> None:
        """Record that the card's copy goes; call before deleting the file, so a
        crash in between leaves a file the index still knows (never a gap)."""
        with self._transaction():
            self._db.execute("UPDATE frames SET state = ? WHERE id = ? AND state = ?",
                             (FREED, frame_id, OFFLOADED))

    def frames(self, event_number: int) -> list[sqlite3.Row]:
        cursor = self._db.execute(
            "SELECT * FROM frames WHERE event_number = ? ORDER BY sequence", (event_number,))
        cursor.row_factory = sqlite3.Row
        return cursor.fetchall()

    def close(self) -> None:
        self._db.close()

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _check_image(path: Path, size: int, digest: str) -> str | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "file missing"
    if len(data) != size:
        return f"size {len(data)} bytes, index says {size} (truncated?)"
    if hashlib.sha256(data).hexdigest() != digest:
        return "content differs from the index checksum"
    try:
        simplejpeg.decode_jpeg(data)
    except ValueError as exc:
        return f"not a decodable JPEG ({exc})"
    return None


def _make_private(db: Path) -> None:
    """The index file at FILE_MODE before SQLite opens it: SQLite gives the
    -wal and -shm files it creates the database file's permissions."""
    os.close(os.open(db, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists():
            os.chmod(path, FILE_MODE)


def _make_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def _write_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
