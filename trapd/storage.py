"""Queue stage: durable JPEG files under one root plus an SQLite (WAL) index.

Contract (other tools rely on it, see DESIGN.md):
- a file is written to a temporary name, fsync'd, renamed, its directory
  fsync'd, and only then is its row committed: a crash at any instant leaves
  no truncated JPEG reachable from the index;
- event numbers come from an AUTOINCREMENT key committed before any file of
  the event is written, and are noted in `event-number` beside the index, so
  they are never reused, across restarts, a lost -wal or a rebuilt index;
- below the free-space floor nothing more is saved (said once, a degraded
  state) and nothing is ever deleted; a 1 MB reserve lets the index record a
  full card;
- at start-up a damaged index is set aside and rebuilt from the photos' tags,
  trapd's temporaries are removed, events left open are marked interrupted,
  photos without a row are indexed again from their tags (unreadable ones are
  moved to `quarantine/`, kept); nothing is reached through a link.
"""
from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import simplejpeg

from trapd.errors import StorageError
from trapd.health import (HEALTH_FILE, INDEX_FULL, STORAGE_FULL, STORAGE_LINK, Health,
                          read_health)
from trapd.queue_index import (SQLITE_FULL, SQLITE_IOERR, SQLITE_IOERR_SHMSIZE, Transaction,
                                connect, highest_event_number_in, index_damage, is_damage,
                                is_shared_memory_error)
from trapd.recovery import (IMAGE_NAME, TEMP_NAME, NotOurPhoto, PhotoRecord, free_name,
                            insert_photo_rows,
                            highest_number_in_names, is_inside, own_files, read_photo,
                            real_root, set_aside_name)

log = logging.getLogger(__name__)

DB_NAME = "queue.db"
IMAGES_DIR = "images"
QUARANTINE_DIR = "quarantine"
TEMP_SUFFIX = ".tmp"
FILE_MODE = 0o640
DIR_MODE = 0o750
MB = 1024 * 1024
EVENT_NUMBER_FILE = "event-number"   # the highest event number handed out, beside the index
RESERVE_NAME = "index-reserve"       # room kept for the index on a full card
RESERVE_BYTES = 1 * MB
START_CHECK_S = 10.0                 # the integrity check at start-up gives up after this
UNRECORDED = 0                       # event number of an event a full card could not record
T = TypeVar("T")

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
            self._root_real = real_root(self.root)
            if recover:
                _make_dir(self.root / IMAGES_DIR)
            _make_private(self.root / DB_NAME)
        except OSError as exc:
            raise StorageError(f"cannot open the image queue at {self.root}: {exc}") from exc
        # Only the daemon (recover=True) reports health; a reader must not overwrite it.
        self.health = Health(self.root / HEALTH_FILE if recover else None)
        self._reserve = self.root / RESERVE_NAME
        self._owner = recover       # the daemon; a reader never touches the reserve
        self._unrecorded_rows = 0
        self._index_in_memory = False
        self._db = self._open_index(check=recover)
        if recover:
            self.recover()

    # -- the index file ------------------------------------------------------
    def _open_index(self, check: bool) -> sqlite3.Connection:
        """Open queue.db; when the daemon starts, a damaged one is set aside
        (kept) and a new one rebuilt from the photos."""
        try:
            db = self._connect_when_full_too()
            damage = index_damage(db, START_CHECK_S) if check else None
        except sqlite3.DatabaseError as exc:
            if not check or not is_damage(exc):
                raise StorageError(f"cannot open the image queue at {self.root}: {exc}") from exc
            db, damage = None, str(exc)
        if damage:
            if db is not None:
                db.close()
            db = self._set_aside_and_start_again(damage)
        return db

    def _connect_when_full_too(self) -> sqlite3.Connection:
        try:
            return connect(self.root / DB_NAME)
        except sqlite3.OperationalError as exc:
            if is_shared_memory_error(exc):
                # The -shm file cannot be used (seen on FUSE after a power cut): the
                # index itself is fine; keep its WAL index in this process instead.
                log.warning("the index's shared-memory file cannot be used (%s); readers "
                            "such as `trapd status` wait until the next start", exc)
                return connect(self.root / DB_NAME, exclusive=True)
            if not self._is_full(exc):
                raise
            if self._release_reserve():
                try:
                    return connect(self.root / DB_NAME)
                except sqlite3.OperationalError as again:
                    if not self._is_full(again):
                        raise
            # No room even for the WAL index in shared memory: keep it in this
            # process (readers such as `trapd status` wait until the next start).
            self._index_full(f"the card is full ({exc})")
            try:
                return connect(self.root / DB_NAME, exclusive=True)
            except sqlite3.OperationalError as again:
                if not self._is_full(again):
                    raise
            # Not even a new index fits: watch on, record nothing, and open the
            # real index as soon as there is room (_has_room_for).
            self._index_in_memory = True
            self._index_full("the card is full and holds no index yet: events are not "
                             "recorded until there is room")
            return connect(":memory:")

    def _open_real_index(self) -> None:
        """Space came back to a card that had no room for an index at start."""
        try:
            db = connect(self.root / DB_NAME)
        except sqlite3.OperationalError as exc:
            log.debug("index still cannot be made: %s", exc)
            return
        self._db.close()
        self._db, self._index_in_memory = db, False
        self.recover()
        self.health.clear(INDEX_FULL, "the index is on the card again")

    def _set_aside_and_start_again(self, damage: str) -> sqlite3.Connection:
        now = dt.datetime.now(dt.timezone.utc)
        kept = set_aside_name(self.root / DB_NAME, now)
        highest = highest_event_number_in(self.root / DB_NAME)
        for suffix in ("", "-wal", "-shm"):
            damaged = self.root / (DB_NAME + suffix)
            if damaged.exists() and not damaged.is_symlink():
                os.replace(damaged, kept.with_name(kept.name.replace(DB_NAME, DB_NAME + suffix, 1)))
        fsync_dir(self.root)
        log.error("the image index was damaged (%s); kept as %s, rebuilding it from the photos",
                  damage, kept.name)
        _make_private(self.root / DB_NAME)
        db = connect(self.root / DB_NAME)
        self._db = db
        self._raise_event_numbers_to(highest)
        found, unreadable = self._index_photos()
        what = (f"index damaged ({damage}); kept as {kept.name}; rebuilt from {found} photos"
                + (f", {unreadable} unreadable photos quarantined" if unreadable else ""))
        log.warning("image index rebuilt: %s", what)
        self.health.repaired(what)
        return db

    # -- writing the index, on a card that may be full -------------------------
    def _write(self, statements: Callable[[sqlite3.Connection], T]) -> T | None:
        """Run `statements` in one transaction; on a full card use the index
        reserve, and if even that is gone, say so once and return None (the
        caller's row is not recorded; the trap goes on)."""
        for attempt in (1, 2):
            try:
                with self._transaction() as db:
                    result = statements(db)
            except sqlite3.OperationalError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if not self._is_full(exc):
                    raise
                if attempt == 1 and self._release_reserve():
                    continue
                self._unrecorded_rows += 1
                self._index_full(f"the card is full; {self._unrecorded_rows} index rows "
                                 f"not recorded ({exc})")
                return None
            if self.health.is_set(INDEX_FULL) and not self._index_in_memory:
                self.health.clear(INDEX_FULL, "index rows are recorded again")
            return result
        return None

    def _is_full(self, exc: sqlite3.Error) -> bool:
        code = getattr(exc, "sqlite_errorcode", 0)
        if code & 0xFF == SQLITE_FULL or code == SQLITE_IOERR_SHMSIZE:
            return True
        return code & 0xFF == SQLITE_IOERR and _free_bytes(self.root) < RESERVE_BYTES

    def _index_full(self, why: str) -> None:
        self.full = True
        self.health.set(INDEX_FULL, why)

    def _release_reserve(self) -> bool:
        """Free the space kept for the index; False if there is none to free."""
        if not self._owner or not self._reserve.is_file() or self._reserve.is_symlink():
            return False
        self._reserve.unlink()
        log.warning("the card is full: the index's %d MB reserve is released so that "
                    "it can still record what happens", RESERVE_BYTES // MB)
        return True

    def _keep_reserve(self, free: int) -> bool:
        """Keep RESERVE_BYTES aside for the index (made again once there is room)."""
        if self._reserve.is_file():
            return True
        if free < self.min_free_mb * MB + RESERVE_BYTES:
            return False
        try:
            _write_durably(self._reserve, bytes(RESERVE_BYTES))
        except OSError:
            self._reserve.unlink(missing_ok=True)
            return False
        return True

    # -- events -----------------------------------------------------------
    def open_event(self, station_id: str, deployment_id: str, trigger: str,
                   trigger_monotonic_ns: int, trigger_wall_ns: int,
                   clock_synced: bool | None = None, wall_jump_ns: int = 0) -> EventRecord:
        """`clock_synced`: the kernel's verdict at the trigger (None = unknown);
        `wall_jump_ns`: wall-clock steps seen since the previous event.
        On a card too full to record it, the event is UNRECORDED (no images saved)."""
        synced = None if clock_synced is None else int(clock_synced)

        def insert(db: sqlite3.Connection) -> EventRecord:
            cursor = db.execute(
                "INSERT INTO events (event_id, station_id, deployment_id, trigger,"
                " trigger_monotonic_ns, trigger_wall_ns, clock_synced, wall_jump_ns)"
                " VALUES ('', ?, ?, ?, ?, ?, ?, ?)",
                (station_id, deployment_id, trigger, trigger_monotonic_ns, trigger_wall_ns,
                 synced, wall_jump_ns))
            number = cursor.lastrowid
            event_id = f"{deployment_id}-E{number:06d}"
            db.execute("UPDATE events SET event_id = ? WHERE number = ?", (event_id, number))
            # Outside the index too, before the commit: a lost -wal or a rebuilt
            # index can then never hand out this number again.
            self._note_highest_event_number(number)
            return EventRecord(number, event_id)

        return self._write(insert) or EventRecord(UNRECORDED, f"{deployment_id}-unrecorded")

    def close_event(self, event: EventRecord, ended_wall_ns: int, note: str | None = None) -> None:
        """Called once all the event's frames are indexed: records its final
        number of saved images (`saved_images`, the m of "n of m")."""
        self._write(lambda db: db.execute(
            "UPDATE events SET state = 'closed', ended_wall_ns = ?, note = ?, saved_images ="
            " (SELECT COUNT(*) FROM frames WHERE event_number = ? AND file IS NOT NULL)"
            " WHERE number = ?", (ended_wall_ns, note, event.number, event.number)))

    def add_wall_jump(self, event: EventRecord, jump_ns: int) -> None:
        """A wall-clock step seen while `event` was in progress."""
        self._write(lambda db: db.execute(
            "UPDATE events SET wall_jump_ns = wall_jump_ns + ? WHERE number = ?",
            (jump_ns, event.number)))

    def _note_highest_event_number(self, number: int) -> None:
        try:
            _write_small_durably(self.root / EVENT_NUMBER_FILE, f"{number}\n".encode())
        except OSError as exc:
            log.debug("event number not noted beside the index: %s", exc)

    def _raise_event_numbers_to(self, highest: int) -> None:
        """The next event number comes after `highest` (numbers are never reused)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        current = max(row[0] if row else 0,
                      self._db.execute("SELECT COALESCE(MAX(number), 0) FROM events").fetchone()[0])
        if highest <= current:
            return
        log.warning("event numbers continue after E%06d, the highest used on this card "
                    "(the index knew only E%06d)", highest, current)

        def raise_sequence(db: sqlite3.Connection) -> None:
            if row is None:
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (highest,))
            else:
                db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'", (highest,))
        self._write(raise_sequence)

    # -- frames -----------------------------------------------------------
    def add_frame(self, record: FrameRecord, jpeg: bytes | None = None,
                  relative_path: str | None = None) -> str | None:
        """Index one scored frame; with `jpeg`, save it first. Returns the
        stored file's path relative to the root, or None if none was saved."""
        saved = None
        if record.kept and jpeg is not None:
            saved = self._save_file(relative_path, jpeg, record.event_number)
        self.index_frame(record, jpeg, saved)
        return saved

    def save_file(self, relative_path: str, jpeg: bytes) -> str | None:
        """Write one image durably (tmp, fsync, rename); safe from worker threads.
        Its row must be committed afterwards with `index_frame`."""
        name = IMAGE_NAME.match(Path(relative_path).name)
        return self._save_file(relative_path, jpeg, int(name["number"]) if name else None)

    def index_frame(self, record: FrameRecord, jpeg: bytes | None, saved: str | None) -> None:
        """Commit a frame's row; `saved` is the file `save_file` made durable, or None."""
        if record.event_number == UNRECORDED:
            return
        state = PENDING if record.kept else DROPPED
        if record.kept and jpeg is not None:
            state = PENDING if saved else NOT_SAVED
        values = (record.event_number, record.sequence, record.sensor_timestamp_ns,
                  record.capture_wall_ns, int(record.pre_trigger), record.score,
                  int(record.kept), state, record.media_id if saved else None, saved,
                  len(jpeg) if saved else None,
                  hashlib.sha256(jpeg).hexdigest() if saved else None,
                  json.dumps(record.metadata, default=str) if record.metadata else None)
        self._write(lambda db: db.execute(
            "INSERT INTO frames (event_number, sequence, sensor_timestamp_ns, capture_wall_ns,"
            " pre_trigger, score, kept, state, media_id, file, size_bytes, sha256, metadata)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values))

    def _save_file(self, relative_path: str, jpeg: bytes, event_number: int | None = None
                   ) -> str | None:
        if not self._has_room_for(len(jpeg)) or event_number == UNRECORDED:
            return None
        if self.health.is_set(INDEX_FULL):
            return None     # a file the index cannot record would be quarantined later
        folder = self._own_folder(Path(relative_path).parent)
        if folder is None:
            return None
        target = free_name(folder / Path(relative_path).name)
        temporary = target.with_name(target.name + TEMP_SUFFIX)
        try:
            _write_durably(temporary, jpeg)
            os.replace(temporary, target)
            fsync_dir(target.parent)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            log.error("could not save %s: %s", relative_path, exc)
            if exc.errno == errno.ENOSPC:
                self._storage_full(f"no space left on the card ({exc})")
            return None
        return str(target.relative_to(self.root))

    def _own_folder(self, relative: Path) -> Path | None:
        """images/<relative>, made if needed; never a link (a linked date folder
        is stepped around with a new name; a linked images/ is not written through)."""
        images = self.root / IMAGES_DIR
        if images.is_symlink():     # recovery and verify never follow it either
            self.health.set(STORAGE_LINK, f"{images} is a link to {os.path.realpath(images)}: "
                            "nothing is written through it (make it a folder)")
            return None
        try:
            _make_dir(images)
            folder, n = images / relative, 1
            while folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                folder = images / f"{relative}_{n}"
                n += 1
            _make_dir(folder)
        except OSError as exc:
            log.error("could not make the folder for %s: %s", relative, exc)
            return None
        return folder

    def _has_room_for(self, size: int) -> bool:
        free = _free_bytes(self.root)
        self._keep_reserve(free)
        if self._index_in_memory and self._reserve.is_file():
            self._open_real_index()
        full = free - size < self._floor_bytes()
        if full:
            reserve = "" if self._reserve.is_file() else f" + {RESERVE_BYTES // MB} MB for the index"
            self._storage_full(f"{free // MB} MB free at {self.root}, the next image would "
                               f"leave less than the {self.min_free_mb} MB floor{reserve}")
        elif self.full:
            self.full = False
            self.health.clear(STORAGE_FULL, f"{free // MB} MB free")
            log.warning("storage has room again (%d MB free); saving resumes", free // MB)
        return not full

    def _floor_bytes(self) -> int:
        """The floor, plus room for the index reserve while it is not made."""
        return self.min_free_mb * MB + (0 if self._reserve.is_file() else RESERVE_BYTES)

    def _storage_full(self, why: str) -> None:
        if not self.full:
            log.error("storage full: %s; saving stops until space is freed (nothing is deleted)",
                      why)
        self.full = True
        self.health.set(STORAGE_FULL, why)

    # -- start-up recovery ------------------------------------------------
    def recover(self) -> None:
        images = self.root / IMAGES_DIR
        for temporary in own_files(images, self._root_real, TEMP_NAME):
            log.warning("removing unfinished temporary file %s", temporary)
            temporary.unlink()
        cursor = self._write(lambda db: db.execute(
            "UPDATE events SET state = 'interrupted' WHERE state = 'open'"))
        if cursor is not None and cursor.rowcount:
            log.warning("%d event(s) were interrupted by a stop or power cut", cursor.rowcount)
        self._raise_event_numbers_to(max(
            _read_number(self.root / EVENT_NUMBER_FILE),
            highest_number_in_names(own_files(images, self._root_real, IMAGE_NAME)),
            highest_number_in_names(own_files(self.root / QUARANTINE_DIR, self._root_real,
                                              IMAGE_NAME))))
        self._mark_missing_files()
        found, unreadable = self._index_photos()
        if found:
            log.warning("%d photo(s) without an index row were indexed again from their tags",
                        found)

    def _mark_missing_files(self) -> None:
        for row_id, file in self._db.execute(
                "SELECT id, file FROM frames WHERE file IS NOT NULL AND state NOT IN (?, ?)",
                (MISSING, FREED)).fetchall():
            if self.image_path(file) is None:
                log.error("indexed image %s is missing from the card", file)
                self._write(lambda db: db.execute(
                    "UPDATE frames SET state = ? WHERE id = ?", (MISSING, row_id)))

    def _index_photos(self) -> tuple[int, int]:
        """Index trapd's photos that have no row, from their own tags; those
        that cannot be read go to quarantine/ (kept). Returns (indexed, quarantined)."""
        indexed_files = self._indexed_files()
        found = unreadable = 0
        for path in own_files(self.root / IMAGES_DIR, self._root_real, IMAGE_NAME):
            relative = str(path.relative_to(self.root))
            if relative in indexed_files:
                continue
            try:
                photo = read_photo(path, relative)
            except (NotOurPhoto, OSError) as exc:
                self._quarantine(path, str(exc))
                unreadable += 1
                continue
            if self._index_photo(photo):
                found += 1
            else:
                self._quarantine(path, f"event {photo.event_number} frame {photo.sequence} "
                                 "is already indexed with another image")
                unreadable += 1
        return found, unreadable

    def _index_photo(self, photo: PhotoRecord) -> bool:
        """Add `photo`'s rows (its event's too, if missing); False if its place is taken."""
        return bool(self._write(
            lambda db: insert_photo_rows(db, photo, lambda f: self.image_path(f) is not None)))

    def _quarantine(self, path: Path, why: str) -> None:
        """Move one of trapd's unreadable photos to quarantine/, keeping its
        relative path and never overwriting another."""
        relative = path.relative_to(self.root)
        target = free_name(self.root / QUARANTINE_DIR / relative)
        _make_dir(target.parent)
        os.replace(path, target)
        log.warning("image %s could not be indexed (%s); kept in %s", relative, why, target)

    def _indexed_files(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT file FROM frames WHERE file IS NOT NULL")}

    def image_path(self, relative: str) -> Path | None:
        """The photo `relative` (an index path) if it is a file inside the root
        reached through no link out of it; else None."""
        path = self.root / relative
        if not relative or path.is_symlink() or not path.is_file():
            return None
        return path if is_inside(self._root_real, path) else None

    # -- operator views ---------------------------------------------------
    def status(self) -> dict:
        usage = shutil.disk_usage(self.root)
        health = read_health(self.root)
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
            "below_floor": (usage.free < self._floor_bytes()
                            or STORAGE_FULL in health["degraded"]),
            "degraded": health["degraded"],
            "repairs": health["repairs"],
        }

    def verify(self) -> list[str]:
        """Problems found: a damaged index (integrity check, unreadable text), rows
        whose file is absent, truncated, altered or not a decodable JPEG, and
        trapd's JPEGs under the images folder without a row."""
        damage = index_damage(self._db, time_limit_s=None)
        if damage:
            return [f"{DB_NAME}: damaged ({damage}); the daemon sets it aside and "
                    "rebuilds it from the photos at its next start"]
        problems = []
        indexed = set()
        for file, size, digest, state in self._db.execute(
                "SELECT file, size_bytes, sha256, state FROM frames WHERE file IS NOT NULL"):
            indexed.add(file)
            if state == FREED:
                continue
            path = self.image_path(file)
            problem = _check_image(path, size, digest) if path else "file missing (or a link)"
            if problem:
                problems.append(f"{file}: {problem}" + (" (known missing)" if state == MISSING else ""))
        for path in own_files(self.root / IMAGES_DIR, self._root_real, IMAGE_NAME):
            if str(path.relative_to(self.root)) not in indexed:
                problems.append(f"{path.relative_to(self.root)}: no index row")
        return problems

    # -- export and offload -------------------------------------------------
    def saved_frames(self, states: tuple[str, ...], deployment_id: str | None = None,
                     since_wall_ns: int | None = None, offload_dest: str | None = None
                     ) -> list[sqlite3.Row]:
        """Saved frames in capture order (event number, then sequence), each with
        its event's fields (event_id, trigger, clock_synced, wall_jump_ns,
        deployment_id, trigger_wall_ns, ended_wall_ns) and its true "n of m":
        image_number (its place among the event's saved images) and event_images
        (their number; NULL while the event is open, its frames not all in)."""
        marks = ",".join("?" * len(states))
        saved = "SELECT COUNT(*) FROM frames g WHERE g.event_number = f.event_number" \
                " AND g.file IS NOT NULL"
        query = ("SELECT f.*, e.event_id, e.trigger, e.clock_synced, e.wall_jump_ns,"
                 " e.deployment_id, e.station_id, e.trigger_wall_ns, e.ended_wall_ns,"
                 f" ({saved} AND g.sequence <= f.sequence) AS image_number,"
                 f" CASE WHEN e.state = 'open' THEN NULL ELSE COALESCE(e.saved_images, ({saved}))"
                 " END AS event_images"
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

    def mark_offloaded(self, frame_id: int, dest: str, path: str, wall_ns: int,
                       copy_sha256: str | None = None) -> None:
        """`copy_sha256`: the drive copy's own SHA-256 when it differs from the
        card's (re-tagged for `publish`); None = a byte-for-byte copy."""
        with self._transaction():
            self._db.execute(
                "UPDATE frames SET state = ?, offload_dest = ?, offload_path = ?,"
                " offloaded_wall_ns = ?, offload_sha256 = ? WHERE id = ?",
                (OFFLOADED, dest, path, wall_ns, copy_sha256, frame_id))

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

    def write_index(self, statements: Callable[[sqlite3.Connection], T]) -> T | None:
        """Other records kept in the index (trapd/deployments.py), written as the
        queue's own rows are: one transaction, None on a card too full for it."""
        return self._write(statements)

    @property
    def index(self) -> sqlite3.Connection:
        return self._db

    def close(self) -> None:
        self._db.close()

    def _transaction(self):
        return Transaction(self._db)


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


def _read_number(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def _free_bytes(root: Path) -> int:
    return shutil.disk_usage(root).free


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


def _write_small_durably(path: Path, data: bytes) -> None:
    """Replace a small file of ours atomically and durably."""
    temporary = path.with_name(path.name + TEMP_SUFFIX)
    _write_durably(temporary, data)
    os.replace(temporary, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
