"""Telemetry outbox and upload state: tables beside the queue in queue.db.

`telemetry_outbox` holds every MQTT message until the broker acknowledged it
(PUBACK for QoS 1). Each row has a message id (`<station>-<seq>`) that the
payload carries, so a consumer drops a redelivery: delivery over MQTT QoS 1
is at-least-once; with the consumer keeping the ids it has seen, each
message is processed exactly once.

`upload_state` records per image the object key, the multipart UploadId
(saved before the first part is sent) and when a HEAD verified the object.
`sync_set_aside` lists images sync skips (damaged or missing on the card), and why.
`sync_bytes` counts bytes sent per local day for the byte budget.

The outbox opens its own connection; an INSERT is the only thing the capture
path ever does here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from trapd.storage import DB_NAME

SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL,
    delivered_ns INTEGER
);
CREATE INDEX IF NOT EXISTS telemetry_outbox_undelivered
    ON telemetry_outbox (seq) WHERE delivered_ns IS NULL;
CREATE TABLE IF NOT EXISTS upload_state (
    media_id TEXT PRIMARY KEY,
    object_key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    upload_id TEXT,
    verified_ns INTEGER
);
CREATE TABLE IF NOT EXISTS sync_set_aside (
    media_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    set_aside_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_bytes (
    day TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class OutboxMessage:
    seq: int
    msg_id: str
    topic: str
    payload: str
    retain: bool


class FleetDb:
    """The fleet tables in `<root>/queue.db`; safe to share between threads."""

    def __init__(self, root: str | Path) -> None:
        self._db = sqlite3.connect(Path(root) / DB_NAME, isolation_level=None,
                                   check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, params=()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    # -- telemetry ----------------------------------------------------------
    def enqueue(self, station_id: str, topic: str, payload: dict, now_ns: int,
                retain: bool = False) -> str:
        """Queue one message; its payload gains `msg_id`. Returns the id."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._db.execute(
                    "INSERT INTO telemetry_outbox (msg_id, topic, payload, retain, created_ns)"
                    " VALUES ('', ?, '', ?, ?)", (topic, int(retain), now_ns)).lastrowid
                msg_id = f"{station_id}-{seq}"
                body = json.dumps({**payload, "msg_id": msg_id}, separators=(",", ":"))
                self._db.execute("UPDATE telemetry_outbox SET msg_id = ?, payload = ? WHERE seq = ?",
                                 (msg_id, body, seq))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return msg_id

    def undelivered(self, limit: int, after_seq: int = 0) -> list[OutboxMessage]:
        rows = self._run(
            "SELECT seq, msg_id, topic, payload, retain FROM telemetry_outbox"
            " WHERE delivered_ns IS NULL AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit)).fetchall()
        return [OutboxMessage(s, m, t, p, bool(r)) for s, m, t, p, r in rows]

    def mark_delivered(self, seq: int, now_ns: int) -> None:
        self._run("UPDATE telemetry_outbox SET delivered_ns = ? WHERE seq = ?"
                  " AND delivered_ns IS NULL", (now_ns, seq))

    def outbox_depth(self) -> int:
        return self._run("SELECT COUNT(*) FROM telemetry_outbox"
                         " WHERE delivered_ns IS NULL").fetchone()[0]

    # -- uploads ------------------------------------------------------------
    def upload_row(self, media_id: str) -> sqlite3.Row | None:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM upload_state WHERE media_id = ?", (media_id,))
            cursor.row_factory = sqlite3.Row
            return cursor.fetchone()

    def begin_upload(self, media_id: str, key: str, sha256: str, size: int) -> None:
        self._run("INSERT OR IGNORE INTO upload_state (media_id, object_key, sha256, size_bytes)"
                  " VALUES (?, ?, ?, ?)", (media_id, key, sha256, size))

    def save_upload_id(self, media_id: str, upload_id: str | None) -> None:
        self._run("UPDATE upload_state SET upload_id = ? WHERE media_id = ?", (upload_id, media_id))

    def mark_verified(self, media_id: str, now_ns: int) -> None:
        self._run("UPDATE upload_state SET verified_ns = ?, upload_id = NULL WHERE media_id = ?",
                  (now_ns, media_id))

    def verified_media(self) -> set[str]:
        return {r[0] for r in self._run(
            "SELECT media_id FROM upload_state WHERE verified_ns IS NOT NULL")}

    def unsynced_frames(self, states: tuple[str, ...], limit: int) -> list[sqlite3.Row]:
        """Saved frames not yet verified in the store, newest event first, in
        capture order within an event, with their event's fields."""
        marks = ",".join("?" * len(states))
        with self._lock:
            cursor = self._db.execute(
                "SELECT f.*, e.event_id, e.deployment_id, e.station_id FROM frames f"
                " JOIN events e ON e.number = f.event_number"
                " LEFT JOIN upload_state u ON u.media_id = f.media_id"
                f" WHERE f.file IS NOT NULL AND f.state IN ({marks}) AND u.verified_ns IS NULL"
                " AND f.media_id NOT IN (SELECT media_id FROM sync_set_aside)"
                " ORDER BY f.event_number DESC, f.sequence LIMIT ?", (*states, limit))
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    def unsynced_count(self, states: tuple[str, ...]) -> int:
        marks = ",".join("?" * len(states))
        return self._run(
            "SELECT COUNT(*) FROM frames f LEFT JOIN upload_state u ON u.media_id = f.media_id"
            f" WHERE f.file IS NOT NULL AND f.state IN ({marks}) AND u.verified_ns IS NULL",
            states).fetchone()[0]

    def set_aside(self, media_id: str, reason: str, now_ns: int) -> None:
        self._run("INSERT OR REPLACE INTO sync_set_aside (media_id, reason, set_aside_ns)"
                  " VALUES (?, ?, ?)", (media_id, reason, now_ns))

    def set_aside_count(self) -> int:
        return self._run("SELECT COUNT(*) FROM sync_set_aside").fetchone()[0]

    def bytes_sent(self, day: str) -> int:
        row = self._run("SELECT bytes FROM sync_bytes WHERE day = ?", (day,)).fetchone()
        return row[0] if row else 0

    def add_bytes_sent(self, day: str, count: int) -> None:
        self._run("INSERT INTO sync_bytes (day, bytes) VALUES (?, ?)"
                  " ON CONFLICT(day) DO UPDATE SET bytes = bytes + excluded.bytes", (day, count))
