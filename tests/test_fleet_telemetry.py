"""Telemetry against a real Mosquitto (mTLS, per-station ACL) on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import paho.mqtt.client as mqtt
import pytest

from fleet_servers import ADMIN, LOOPBACK
from trapd.config import TelemetryConfig
from trapd.fleet.outbox import FleetDb
from trapd.fleet.secrets import FleetError
from trapd.fleet.telemetry import Telemetry, topic

STATION = "TRAP-A"


class Subscriber:
    """The fleet's consumer: fleet-admin's certificate, reads trapd/#."""

    def __init__(self, broker, topics: str = "trapd/#") -> None:
        cert, key = broker.ca.client(ADMIN)
        self.messages: list[tuple[str, dict, bool]] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="consumer",
                                  protocol=mqtt.MQTTv311)
        self.client.tls_set(ca_certs=str(broker.ca.ca), certfile=str(cert), keyfile=str(key))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topics, qos=1)
        self.client.connect(LOOPBACK, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "consumer could not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        with self._changed:
            self.messages.append((message.topic, json.loads(message.payload), message.retain))
            self._changed.notify_all()

    def wait_for(self, predicate, timeout_s: float = 15) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def telemetry_config(broker, station: str = STATION, **overrides) -> TelemetryConfig:
    cert, key = broker.ca.client(station)
    return TelemetryConfig(broker_url=broker.url, ca_file=str(broker.ca.ca), cert_file=str(cert),
                           key_file=str(key), **overrides)


@pytest.fixture
def trap_link(tmp_path, broker):
    links = []

    def make(station: str = STATION, **overrides) -> Telemetry:
        (tmp_path / station).mkdir()
        db = FleetDb(tmp_path / station)
        link = Telemetry(station, telemetry_config(broker, station, **overrides), db, "test",
                         clock_synced=lambda: True)
        links.append(link)
        return link

    yield make
    for link in links:
        link.close()
        link.db.close()


def test_a_trap_cannot_publish_into_another_stations_topics(broker, trap_link):
    consumer = Subscriber(broker)
    link = trap_link()
    assert link.connect()
    link._client.publish(topic("TRAP-B", "heartbeat"), '{"forged": true}', qos=1).wait_for_publish(10)
    link._client.publish(topic(STATION, "heartbeat"), '{"own": true}', qos=1).wait_for_publish(10)

    assert consumer.wait_for(lambda ms: any(t == topic(STATION, "heartbeat") for t, _, _ in ms))
    assert not any(t.startswith("trapd/v1/TRAP-B/") for t, _, _ in consumer.messages)
    assert f"Denied PUBLISH from {STATION}" in broker.log_text()
    consumer.close()


def test_birth_status_is_retained_on_connect(broker, trap_link):
    link = trap_link()
    assert link.connect()
    consumer = Subscriber(broker, topic(STATION, "status"))
    assert consumer.wait_for(lambda ms: any(p.get("online") is True and retained
                                            for _, p, retained in ms))
    consumer.close()


TRAP_PROCESS = """
import sys, time
from trapd.config import TelemetryConfig
from trapd.fleet.outbox import FleetDb
from trapd.fleet.telemetry import Telemetry
url, ca, cert, key, root = sys.argv[1:]
link = Telemetry("TRAP-A", TelemetryConfig(broker_url=url, ca_file=ca, cert_file=cert, key_file=key),
                 FleetDb(root), "test", clock_synced=lambda: True)
assert link.connect()
print("connected", flush=True)
time.sleep(600)
"""


def test_a_killed_trap_leaves_its_last_will_status(broker, tmp_path):
    cert, key = broker.ca.client(STATION)
    trap = subprocess.Popen([sys.executable, "-c", TRAP_PROCESS, broker.url, str(broker.ca.ca),
                             str(cert), str(key), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert trap.stdout.readline().strip() == "connected"
    finally:
        os.kill(trap.pid, signal.SIGKILL)
        trap.wait(10)

    consumer = Subscriber(broker, topic(STATION, "status"))
    assert consumer.wait_for(lambda ms: bool(ms) and ms[-1][1]["online"] is False)
    topic_, payload, retained = consumer.messages[-1]
    assert payload == {"schema": 1, "station": STATION, "online": False, "firmware": "test"}
    consumer.close()


def test_every_message_queued_while_the_broker_is_down_arrives_once(broker, trap_link):
    link = trap_link(max_inflight=5)
    db = link.db
    before = db.enqueue(STATION, topic(STATION, "heartbeat"), {"n": 0}, 0)
    assert link.drain(timeout_s=10) == 1

    broker.stop()
    queued = [db.enqueue(STATION, topic(STATION, "heartbeat" if n % 3 else "event"), {"n": n}, n)
              for n in range(1, 31)]
    assert link.drain(timeout_s=2) == 0          # no broker: nothing acknowledged, nothing lost
    assert db.outbox_depth() == 30

    broker.start()
    consumer = Subscriber(broker, f"trapd/v1/{STATION}/+")
    deadline = time.monotonic() + 60
    while db.outbox_depth() and time.monotonic() < deadline:
        link.drain(timeout_s=5)
    assert db.outbox_depth() == 0
    assert consumer.wait_for(lambda ms: len([m for m in ms if "msg_id" in m[1]]) >= 30)

    received = Counter(p["msg_id"] for _, p, _ in consumer.messages if "msg_id" in p)
    assert set(received) == set(queued)           # every one arrived; the pre-outage one not again
    assert before not in received
    assert max(received.values()) == 1            # each exactly once
    consumer.close()


def test_cmd_status_asks_the_trap_for_a_heartbeat(broker, tmp_path):
    commands = []
    (tmp_path / "q").mkdir()
    link = Telemetry(STATION, telemetry_config(broker), FleetDb(tmp_path / "q"), "test",
                     clock_synced=lambda: True, on_command=lambda c, p: commands.append(c))
    assert link.connect()
    consumer = Subscriber(broker)
    consumer.client.publish(topic(STATION, "cmd/status"), "{}", qos=1).wait_for_publish(10)
    deadline = time.monotonic() + 10
    while not commands and time.monotonic() < deadline:
        time.sleep(0.05)
    assert commands == ["status"]
    consumer.close()
    link.close()
    link.db.close()


# --- unit tests, no broker ----------------------------------------------------

@pytest.mark.parametrize("key_mode, clock_synced, refusal", [
    (0o600, False, "clock is not synchronised"),    # TLS cannot check a certificate's dates
    (0o644, True, "chmod 600"),                      # a key readable by others
])
def test_tls_refuses_to_start_when_it_cannot_be_trusted(tmp_path, key_mode, clock_synced, refusal):
    key = tmp_path / "trap.key"
    key.write_text("x")
    key.chmod(key_mode)
    config = TelemetryConfig(broker_url="mqtts://127.0.0.1:1", ca_file="/x", cert_file="/x",
                             key_file=str(key))
    link = Telemetry(STATION, config, FleetDb(tmp_path), "test", clock_synced=lambda: clock_synced)
    with pytest.raises(FleetError, match=refusal):
        link.connect()


def test_queued_messages_survive_a_restart_with_their_ids(tmp_path):
    db = FleetDb(tmp_path)
    ids = [db.enqueue(STATION, topic(STATION, "heartbeat"), {"n": n}, n) for n in range(3)]
    db.close()
    reopened = FleetDb(tmp_path)
    pending = reopened.undelivered(10)
    assert [m.msg_id for m in pending] == ids == [f"{STATION}-1", f"{STATION}-2", f"{STATION}-3"]
    assert [json.loads(m.payload)["msg_id"] for m in pending] == ids
    reopened.close()


def test_the_heartbeat_names_the_faults_the_trap_is_outliving(tmp_path):
    from trapd.fleet.telemetry import heartbeat_payload
    from trapd.health import STORAGE_FULL
    from trapd.storage import Store
    daemon_store = Store(tmp_path, min_free_mb=0)
    daemon_store.health.set(STORAGE_FULL, "0 MB free")
    reader = Store(tmp_path, min_free_mb=0, recover=False)     # as the fleet worker opens it
    payload = heartbeat_payload(STATION, "test", 0, reader.status(), 0)
    assert payload["degraded"] == {STORAGE_FULL: "0 MB free"}
    daemon_store.health.clear(STORAGE_FULL)
    assert heartbeat_payload(STATION, "test", 0, reader.status(), 0)["degraded"] == {}
    reader.close()
    daemon_store.close()


def test_a_certificate_for_another_station_is_refused_before_connecting(broker, tmp_path):
    cert, key = broker.ca.client("TRAP-B")
    config = TelemetryConfig(broker_url=broker.url, ca_file=str(broker.ca.ca), cert_file=str(cert),
                             key_file=str(key))
    link = Telemetry(STATION, config, FleetDb(tmp_path), "test", clock_synced=lambda: True)
    with pytest.raises(FleetError, match=f"issued to 'TRAP-B', not to this station '{STATION}'"):
        link.connect()
    assert f"New client connected from" not in broker.log_text()
    link.db.close()


def test_check_config_compares_the_certificate_with_the_station(broker, tmp_path):
    import yaml

    from conftest import config_dict, trapd

    cert, key = broker.ca.client("TRAP-B")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict(tmp_path, {"fleet": {"enabled": True, "telemetry": {
        "broker_url": broker.url, "ca_file": str(broker.ca.ca), "cert_file": str(cert),
        "key_file": str(key)}}})))
    result = trapd("check-config", path, check=False)
    assert result.returncode == 1
    line = next(l for l in result.stdout.splitlines() if "fleet.telemetry.cert_file" in l)
    assert line.split(":")[1].isdigit() and "issued to 'TRAP-B'" in line


def test_a_trap_cannot_take_another_stations_client_id(broker, trap_link):
    """A's certificate asking for client id TRAP-B: the broker names it by its
    certificate (use_username_as_clientid), so B stays connected with its session."""
    b = trap_link("TRAP-B")
    assert b.connect()
    cert, key = broker.ca.client("TRAP-A")
    thief = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="TRAP-B", clean_session=True,
                        protocol=mqtt.MQTTv311)
    thief.tls_set(ca_certs=str(broker.ca.ca), certfile=str(cert), keyfile=str(key))
    connected = threading.Event()
    thief.on_connect = lambda *args: connected.set()
    thief.connect(LOOPBACK, broker.port)
    thief.loop_start()
    try:
        assert connected.wait(10)
        time.sleep(1.0)
        assert b._connected.is_set()
        assert "Client TRAP-B already connected, closing old connection" not in broker.log_text()
        b.db.enqueue("TRAP-B", topic("TRAP-B", "heartbeat"), {"alive": True}, 1)
        assert b.drain(timeout_s=5) and b.db.outbox_depth() == 0
    finally:
        thief.disconnect()
        thief.loop_stop()


def test_a_publish_the_broker_refuses_stays_undelivered_in_the_outbox(broker, trap_link, caplog):
    link = trap_link()
    assert link.connect()
    link.db.enqueue(STATION, topic("TRAP-B", "heartbeat"), {"forged": True}, 1)   # outside its ACL
    link.db.enqueue(STATION, topic(STATION, "heartbeat"), {"own": True}, 2)
    link.drain(timeout_s=5)
    left = link.db.undelivered(10)
    assert [m.topic for m in left] == [topic("TRAP-B", "heartbeat")]
    assert link.refused == "Not authorized"
    assert sum("refused a message" in r.getMessage() for r in caplog.records) == 1
    assert link.drain(timeout_s=1) == 0      # not offered again at once
