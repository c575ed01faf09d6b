"""The index file, queue.db: its schema, opening it (WAL), and telling a
damaged one (integrity check, text that is not UTF-8, SQLite's corrupt and
not-a-database errors) from a full card."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)

SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 10, 11, 13, 26
SQLITE_IOERR_SHMOPEN, SQLITE_IOERR_SHMSIZE, SQLITE_IOERR_SHMLOCK, SQLITE_IOERR_SHMMAP = (
    4618, 4874, 5130, 5386)

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
    wall_jump_ns INTEGER NOT NULL DEFAULT 0,
    saved_images INTEGER
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
    offload_sha256 TEXT,
    UNIQUE (event_number, sequence)
);
"""

# Columns added since the first release, added to an older queue.db on open
# (ALTER TABLE ... ADD COLUMN keeps every row). `clock_synced` NULL = not recorded.
ADDED_COLUMNS = (
    ("events", "clock_synced", "INTEGER"),
    ("events", "wall_jump_ns", "INTEGER NOT NULL DEFAULT 0"),
    # The event's saved images, counted when it closes (the m of "n of m"); NULL:
    # still open, or closed by an older trapd (then counted from its frames).
    ("events", "saved_images", "INTEGER"),
    ("frames", "exported_wall_ns", "INTEGER"),
    ("frames", "offload_dest", "TEXT"),
    ("frames", "offload_path", "TEXT"),
    ("frames", "offloaded_wall_ns", "INTEGER"),
    ("frames", "offload_sha256", "TEXT"),   # the drive copy's, when re-tagged (offload.py)
)


class Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        if not exc_type:
            self._db.execute("COMMIT")
        elif self._db.in_transaction:   # SQLite may have rolled back already (a full card)
            self._db.execute("ROLLBACK")


def connect(path: Path, exclusive: bool = False) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        if exclusive:   # WAL without the shared-memory file: needs no room on the card
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        # A short WAL: on a full card the index lives on its small reserve.
        db.execute("PRAGMA wal_autocheckpoint=64")
        db.executescript(SCHEMA)
        _add_missing_columns(db)
    except BaseException:
        db.close()
        raise
    return db


def _add_missing_columns(db: sqlite3.Connection) -> None:
    for table, column, declaration in ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            log.info("upgrading the queue index: adding %s.%s", table, column)
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def index_damage(db: sqlite3.Connection, time_limit_s: float | None) -> str | None:
    """What is wrong with the index file, or None: SQLite's integrity check
    (given up after `time_limit_s`, then trusted) and text that is not UTF-8."""
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    if deadline is not None:
        db.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        rows = [r[0] for r in db.execute("PRAGMA integrity_check(5)")]
    except sqlite3.OperationalError:
        if deadline is not None and time.monotonic() > deadline:
            log.warning("index integrity check stopped after %.0f s (a large index); "
                        "it is trusted", time_limit_s)
            return None
        raise
    finally:
        db.set_progress_handler(None, 0)
    if rows != ["ok"]:
        return "integrity check: " + "; ".join(str(r) for r in rows)
    return _undecodable_text(db)


def _undecodable_text(db: sqlite3.Connection) -> str | None:
    text_columns = {table: [r[1] for r in db.execute(f"PRAGMA table_info({table})")
                            if r[2].upper() == "TEXT"] for table in ("events", "frames")}
    db.text_factory = bytes
    try:
        for table, columns in text_columns.items():
            for row in db.execute(f"SELECT rowid, {', '.join(columns)} FROM {table}"):
                for column, value in zip(columns, row[1:]):
                    if isinstance(value, bytes):
                        try:
                            value.decode("utf-8")
                        except UnicodeDecodeError:
                            return f"{table} row {row[0]}: {column} is not readable text"
    finally:
        db.text_factory = str
    return None


def is_shared_memory_error(exc: sqlite3.Error) -> bool:
    """The WAL's -shm file cannot be opened, sized or mapped: not damage to the index."""
    return getattr(exc, "sqlite_errorcode", None) in (
        SQLITE_IOERR_SHMOPEN, SQLITE_IOERR_SHMLOCK, SQLITE_IOERR_SHMMAP)


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if is_shared_memory_error(exc) or code == SQLITE_IOERR_SHMSIZE:
        return False
    if code is not None and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_IOERR):
        return True
    text = str(exc)
    return "malformed" in text or "not a database" in text or "decode" in text


def highest_event_number_in(damaged: Path) -> int:
    """As much as a damaged index still tells of the numbers it handed out."""
    highest = 0
    try:
        db = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    try:
        for query in ("SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                      "SELECT MAX(number) FROM events"):
            try:
                value = db.execute(query).fetchone()
            except sqlite3.Error:
                continue
            if value and isinstance(value[0], int):
                highest = max(highest, value[0])
    finally:
        db.close()
    return highest
