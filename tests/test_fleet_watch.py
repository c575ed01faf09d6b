"""`trapd fleet-watch` against a real Mosquitto: every station's state in SQLite,
each message counted once (a redelivery with the same msg_id is dropped), and
the flags an operator acts on."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import paho.mqtt.client as mqtt

from conftest import trapd
from fleet_servers import ADMIN, LOOPBACK
from trapd.fleet.outbox import FleetDb
from trapd.fleet.telemetry import Telemetry, topic
from test_fleet_telemetry import telemetry_config


def heartbeat(**fields) -> dict:
    return {"schema": 1, "type": "heartbeat", "time": "2026-12-03T10:00:00Z", "firmware": "t",
            "battery_v": 12.6, "free_mb": 20000, "queue_depth": 0, "clock_synced": True,
            "degraded": {}, "sync": {"paused": None, "failed_attempts": 0, "set_aside": 0},
            "telemetry_refused": None, "deployment": "D1", **fields}


def send_from(broker, tmp_path, station: str, messages: list[tuple[str, dict]]) -> FleetDb:
    (tmp_path / station).mkdir()
    db = FleetDb(tmp_path / station)
    for kind, payload in messages:
        db.enqueue(station, topic(station, kind), payload, time.time_ns())
    link = Telemetry(station, telemetry_config(broker, station), db, "t", clock_synced=lambda: True)
    assert link.drain(timeout_s=10) == len(messages)
    link.close()
    return db


def resend_raw(broker, station: str, kind: str, payload: dict) -> None:
    """What a trap does after a crash between the broker's store and its PUBACK."""
    cert, key = broker.ca.client(station)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=station, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(broker.ca.ca), certfile=str(cert), keyfile=str(key))
    done = threading.Event()
    client.on_connect = lambda c, *a: c.publish(topic(station, kind), json.dumps(payload), qos=1)
    client.on_publish = lambda *a: done.set()
    client.connect(LOOPBACK, broker.port)
    client.loop_start()
    assert done.wait(10)
    client.disconnect()
    client.loop_stop()


def test_fleet_watch_keeps_each_station_once_and_flags_what_needs_a_look(broker, tmp_path):
    cert, key = broker.ca.client(ADMIN)
    watch_args = ["fleet-watch", "--broker", broker.url, "--ca", broker.ca.ca, "--cert", cert,
                  "--key", key, "--db", tmp_path / "watch.db"]
    trapd(*watch_args, "--seconds", "1")          # subscribes once: the session now queues for it

    healthy = send_from(broker, tmp_path, "TRAP-A", [
        ("heartbeat", heartbeat(queue_depth=3)), ("event", {"event_id": "A-E1", "time": "t1"})])
    send_from(broker, tmp_path, "TRAP-B", [
        ("heartbeat", heartbeat(queue_depth=q, battery_v=11.1, clock_synced=False, free_mb=300,
                                sync={"paused": "store unreachable", "failed_attempts": 4,
                                      "set_aside": 0})) for q in (10, 20, 30, 40)])
    sent_a = [json.loads(p) for (p,) in sqlite3.connect(tmp_path / "TRAP-A" / "queue.db").execute(
        "SELECT payload FROM telemetry_outbox ORDER BY seq")]
    resend_raw(broker, "TRAP-A", "event", sent_a[1])            # a redelivery of A's event
    healthy.close()

    run = trapd(*watch_args, "--seconds", "3", "--json", tmp_path / "stations.json")
    stations = {s["station"]: s for s in json.loads((tmp_path / "stations.json").read_text())}
    a, b = stations["TRAP-A"], stations["TRAP-B"]
    assert (a["heartbeats"], a["events"], a["last_event"], a["flags"]) == (1, 1, "A-E1", [])
    assert (b["heartbeats"], b["queue_depth"], b["deployment"]) == (4, 40, "D1")
    assert set(b["flags"]) == {"queue growing", "card nearly full", "battery low",
                               "clock not synchronised", "sync paused"}
    assert "TRAP-B" in run.stdout and "battery low" in run.stdout
    seen = sqlite3.connect(tmp_path / "watch.db").execute("SELECT COUNT(*) FROM seen").fetchone()[0]
    assert seen == 6      # 2 from A (its event once) + 4 from B


def test_a_station_that_stops_reporting_is_flagged_silent(tmp_path):
    from trapd.fleet.watch import FleetState, Thresholds

    state = FleetState(tmp_path / "w.db")
    now = time.time_ns()
    assert state.handle("trapd/v1/TRAP-C/heartbeat", json.dumps({**heartbeat(), "msg_id": "C-1"}).encode(),
                        now - 3600 * 10**9)
    [station] = state.stations(now, Thresholds(silent_after_s=2700))
    assert station["flags"] == ["silent"]
    state.close()
