"""`trapd fleet-watch`: the operator's view of every station, from the broker.

Subscribes to `trapd/v1/+/#` (QoS 1, a persistent session, so hours offline
lose nothing the broker queued) with the operator's certificate, and keeps
each station's state in SQLite: last heartbeat, queue depth, free space,
battery, clock, deployment, last event, sync and link problems. Every
message is counted once: a redelivery (same `msg_id`) is dropped. Flags what
needs a visit or a look: silent traps, growing queues, full cards, low
batteries, unsynchronised clocks, degraded states, paused sync, refused
telemetry. Prints a table; writes JSON.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (msg_id TEXT PRIMARY KEY, station TEXT NOT NULL, type TEXT);
CREATE TABLE IF NOT EXISTS stations (
    station TEXT PRIMARY KEY,
    online INTEGER,
    last_heartbeat TEXT, last_heartbeat_ns INTEGER,
    queue_depth INTEGER, previous_queue_depths TEXT NOT NULL DEFAULT '[]',
    free_mb REAL, battery_v REAL, clock_synced INTEGER, deployment TEXT,
    last_event TEXT, last_event_time TEXT,
    degraded TEXT, sync TEXT, telemetry_refused TEXT, firmware TEXT,
    heartbeats INTEGER NOT NULL DEFAULT 0, events INTEGER NOT NULL DEFAULT 0
);
"""
# A queue that grew over this many heartbeats in a row is "growing".
GROWING_AFTER = 3


@dataclass(frozen=True)
class Thresholds:
    silent_after_s: float = 3 * 900      # three heartbeat intervals as shipped
    low_battery_v: float = 11.5
    min_free_mb: float = 1000
    growing_after: int = GROWING_AFTER


class FleetState:
    """The stations' state in SQLite; `handle` takes one MQTT message."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def handle(self, topic: str, payload: bytes, now_ns: int) -> bool:
        """False if the message is a redelivery (or not ours) and was dropped."""
        parts = topic.split("/")
        if len(parts) < 4 or parts[:2] != ["trapd", "v1"]:
            return False
        station, kind = parts[2], parts[3]
        try:
            message = json.loads(payload)
        except ValueError:
            return False
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO stations (station) VALUES (?)", (station,))
            if kind == "status":      # retained, no msg_id: the latest is the state
                self._db.execute("UPDATE stations SET online = ?, firmware = COALESCE(?, firmware)"
                                 " WHERE station = ?", (message.get("online"), message.get("firmware"), station))
                return True
            msg_id = message.get("msg_id")
            if not msg_id or self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
                                              (msg_id, station, kind)).rowcount == 0:
                return False
            if kind == "heartbeat":
                self._heartbeat(station, message, now_ns)
            elif kind == "event":
                self._db.execute("UPDATE stations SET last_event = ?, last_event_time = ?, "
                                 "events = events + 1 WHERE station = ?",
                                 (message.get("event_id"), message.get("time"), station))
            return True

    def _heartbeat(self, station: str, message: dict, now_ns: int) -> None:
        row = self._db.execute("SELECT queue_depth, previous_queue_depths FROM stations"
                               " WHERE station = ?", (station,)).fetchone()
        depths = json.loads(row["previous_queue_depths"])
        if row["queue_depth"] is not None:
            depths = (depths + [row["queue_depth"]])[-GROWING_AFTER:]
        self._db.execute(
            "UPDATE stations SET last_heartbeat = ?, last_heartbeat_ns = ?, queue_depth = ?,"
            " previous_queue_depths = ?, free_mb = ?, battery_v = ?, clock_synced = ?,"
            " deployment = COALESCE(?, deployment), degraded = ?, sync = ?, telemetry_refused = ?,"
            " firmware = ?, heartbeats = heartbeats + 1 WHERE station = ?",
            (message.get("time"), now_ns, message.get("queue_depth"), json.dumps(depths),
             message.get("free_mb"), message.get("battery_v"), message.get("clock_synced"),
             message.get("deployment"), json.dumps(message.get("degraded") or {}),
             json.dumps(message.get("sync")), message.get("telemetry_refused"),
             message.get("firmware"), station))

    def stations(self, now_ns: int, limits: Thresholds = Thresholds()) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM stations ORDER BY station").fetchall()
        return [{**_public(row), "flags": flags(row, now_ns, limits)} for row in rows]


def _public(row: sqlite3.Row) -> dict:
    out = {k: row[k] for k in row.keys() if k not in ("previous_queue_depths", "last_heartbeat_ns")}
    for key in ("degraded", "sync"):
        out[key] = json.loads(row[key]) if row[key] else None
    for key in ("online", "clock_synced"):
        out[key] = None if row[key] is None else bool(row[key])
    return out


def flags(row: sqlite3.Row, now_ns: int, limits: Thresholds) -> list[str]:
    """What needs a look, in words an operator acts on."""
    found = []
    if row["last_heartbeat_ns"] is None or now_ns - row["last_heartbeat_ns"] > limits.silent_after_s * 1e9:
        found.append("silent")
    depths = json.loads(row["previous_queue_depths"]) + [row["queue_depth"]]
    if len(depths) > limits.growing_after and all(a < b for a, b in zip(depths[-limits.growing_after - 1:],
                                                                        depths[-limits.growing_after:])):
        found.append("queue growing")
    if row["free_mb"] is not None and row["free_mb"] < limits.min_free_mb:
        found.append("card nearly full")
    if row["battery_v"] is not None and row["battery_v"] < limits.low_battery_v:
        found.append("battery low")
    if row["clock_synced"] is not None and not row["clock_synced"]:
        found.append("clock not synchronised")
    if row["degraded"] and json.loads(row["degraded"]):
        found.append("degraded: " + ", ".join(json.loads(row["degraded"])))
    sync = json.loads(row["sync"]) if row["sync"] else None
    if sync and sync.get("paused"):
        found.append("sync paused")
    if row["telemetry_refused"]:
        found.append("telemetry refused")
    return found


def table(stations: list[dict]) -> str:
    lines = [f"{'station':<14}{'heartbeat':<22}{'queue':>6}{'free MB':>9}{'battery':>8}  "
             f"{'last event':<28}flags"]
    for s in stations:
        battery = f"{s['battery_v']:.2f}" if s["battery_v"] is not None else "-"
        free = f"{s['free_mb']:.0f}" if s["free_mb"] is not None else "-"
        lines.append(f"{s['station']:<14}{s['last_heartbeat'] or '-':<22}"
                     f"{s['queue_depth'] if s['queue_depth'] is not None else '-':>6}{free:>9}"
                     f"{battery:>8}  {s['last_event'] or '-':<28}{', '.join(s['flags']) or 'ok'}")
    return "\n".join(lines)


def watch(broker_url: str, ca_file: str, cert_file: str, key_file: str, state: FleetState,
          seconds: float | None, client_id: str = "trapd-fleet-watch",
          on_update=lambda: None) -> None:
    """Subscribe and keep the state until `seconds` pass (None: until interrupted)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    url = urlsplit(broker_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if url.scheme == "mqtts":
        client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file)
    client.on_connect = lambda c, *a: c.subscribe("trapd/v1/+/#", qos=1)

    def on_message(client, userdata, message):
        if state.handle(message.topic, message.payload, time.time_ns()):
            on_update()

    client.on_message = on_message
    session = Properties(PacketTypes.CONNECT)
    session.SessionExpiryInterval = 7 * 86400    # hours offline: the broker keeps what came
    client.connect(url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883),
                   clean_start=False, properties=session)
    client.loop_start()
    try:
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        client.disconnect()
        client.loop_stop()


def add_parser(commands) -> None:
    p = commands.add_parser("fleet-watch", help="the operator's view: every station's state from "
                            "the broker, kept in SQLite, with what needs a look")
    p.add_argument("--broker", required=True, help="mqtts://HOST:PORT of the fleet's broker")
    p.add_argument("--ca", help="the fleet CA certificate")
    p.add_argument("--cert", help="the operator's certificate (the broker's ACL lets it read trapd/#)")
    p.add_argument("--key", help="the operator's private key")
    p.add_argument("--db", default="fleet-watch.db", help="SQLite file for the state (default ./fleet-watch.db)")
    p.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--json", help="write the stations and their flags to this file at the end")
    p.add_argument("--silent-after", type=float, default=Thresholds.silent_after_s,
                   help="a station with no heartbeat for this long is silent (default 2700 s)")
    p.add_argument("--low-battery", type=float, default=Thresholds.low_battery_v,
                   help="battery volts below which it is flagged (default 11.5)")
    p.add_argument("--min-free-mb", type=float, default=Thresholds.min_free_mb,
                   help="free card space below which it is flagged (default 1000 MB)")


def main(args) -> int:
    limits = Thresholds(args.silent_after, args.low_battery, args.min_free_mb)
    state = FleetState(args.db)
    try:
        try:
            watch(args.broker, args.ca, args.cert, args.key, state, args.seconds)
        except KeyboardInterrupt:
            pass
        stations = state.stations(time.time_ns(), limits)
    finally:
        state.close()
    print(table(stations))
    if args.json:
        Path(args.json).write_text(json.dumps(stations, indent=1))
    return 0
