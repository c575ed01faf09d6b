"""Remote management through a real Mosquitto: an operator's command reaches one
trap running the daemon loop, is acknowledged, and its result comes back on the
reply topic; a config.yaml with a mistake is refused with check-config's message,
a good one applied, one that stops capture rolled back; only operators may command."""

from __future__ import annotations

import base64
import json
import threading
import time

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml

from conftest import Bench, config_dict
from fleet_servers import ADMIN, CONSUMER, LOOPBACK
from trapd.daemon import Daemon
from trapd.fleet.telemetry import topic
from trapd.fleet.worker import start_fleet

STATION = "LOL-A017"


class Operator:
    """An MQTT client with `certificate`'s identity that sends commands and collects replies."""

    def __init__(self, broker, certificate: str = ADMIN) -> None:
        cert, key = broker.ca.client(certificate)
        self.replies: list[dict] = []
        self._changed = threading.Condition()
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=certificate,
                                  protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(broker.ca.ca), certfile=str(cert), keyfile=str(key))
        self.client.on_connect = lambda c, *a: c.subscribe(topic(STATION, "reply"), qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(LOOPBACK, broker.port)
        self.client.loop_start()
        assert self._ready.wait(10)

    def _on_message(self, client, userdata, message) -> None:
        with self._changed:
            self.replies.append(json.loads(message.payload))
            self._changed.notify_all()

    def send(self, command: str, **args) -> None:
        self.client.publish(topic(STATION, f"cmd/{command}"), json.dumps(args), qos=1).wait_for_publish(10)

    def result(self, command_id: str, timeout_s: float = 60) -> dict:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = [r for r in self.replies if r.get("id") == command_id and r["stage"] == "result"]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                assert left > 0, f"no result for {command_id}: {self.replies}"
                self._changed.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def running_trap(tmp_path, broker):
    """A simulated trap in the daemon's own loop (in a thread) with its fleet link to the broker."""
    cert, key = broker.ca.client(STATION)
    overrides = {"fleet": {"enabled": True, "telemetry": {
        "broker_url": broker.url, "ca_file": str(broker.ca.ca), "cert_file": str(cert),
        "key_file": str(key), "heartbeat_interval_s": 3600}}}
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config_dict(tmp_path, overrides), sort_keys=False))
    bench = Bench(tmp_path, overrides)
    daemon = Daemon(str(config_path), bench.config, bench.trap)
    stop = threading.Event()
    loop = threading.Thread(target=daemon.run, kwargs={"until": stop.is_set}, daemon=True)
    loop.start()
    worker = start_fleet(bench.config, bench.trap, clock_synced=lambda: True,
                         config_path=str(config_path), request_reload=daemon.request_reload)
    # Its session subscribes to cmd/# on the first connect; from then on the broker
    # keeps commands for it while it is away.
    assert worker.telemetry._connected.wait(20)
    yield bench, config_path
    worker.stop()
    stop.set()
    loop.join(30)
    bench.close()


def test_log_and_status_commands_are_acknowledged_and_answered(broker, running_trap):
    operator = Operator(broker)
    try:
        operator.send("log", id="c1", lines=5)
        result = operator.result("c1")
        assert result["ok"] and 1 <= len(result["result"]) <= 5
        assert any(r["id"] == "c1" and r["stage"] == "ack" for r in operator.replies)
        operator.send("status", id="c2")
        assert operator.result("c2")["ok"]
        operator.send("snapshot", id="c4")
        snapshot = operator.result("c4")["result"]
        view = cv2.imdecode(np.frombuffer(base64.b64decode(snapshot["jpeg_base64"]), np.uint8),
                            cv2.IMREAD_UNCHANGED)
        assert view.shape == (snapshot["height"], snapshot["width"]) == (240, 320)
        newest = running_trap[0].trap.latest_view[2]
        assert abs(float(view.mean()) - float(newest.mean())) < 10     # the scene, not a blank
        operator.send("reboot", id="c3")
        assert "unknown command 'reboot'" in operator.result("c3")["error"]
    finally:
        operator.close()


def test_a_config_with_a_mistake_is_refused_a_good_one_applied_one_that_stops_capture_rolled_back(
        broker, running_trap):
    bench, config_path = running_trap
    original = config_path.read_text()
    data = yaml.safe_load(original)
    operator = Operator(broker)
    try:
        data["filter"]["pixel_threshold"] = 999
        operator.send("config", id="bad", yaml=yaml.safe_dump(data, sort_keys=False))
        refused = operator.result("bad")
        assert not refused["ok"] and "filter.pixel_threshold" in refused["error"]
        assert "config.yaml:" in refused["error"]              # check-config's line number
        assert config_path.read_text() == original

        data["filter"]["pixel_threshold"] = 20
        operator.send("config", id="good", yaml=yaml.safe_dump(data, sort_keys=False), confirm_s=20)
        assert operator.result("good")["ok"]
        assert bench.trap.config.filter.pixel_threshold == 20
        applied = config_path.read_text()

        data["schedule"]["windows"] = [{"start": "20:00", "end": "21:00"}]   # camera off now
        operator.send("config", id="idle", yaml=yaml.safe_dump(data, sort_keys=False), confirm_s=3)
        rolled_back = operator.result("idle")
        assert not rolled_back["ok"] and rolled_back["error"].startswith("rolled back")
        assert config_path.read_text() == applied
        deadline = time.monotonic() + 20
        while bench.trap.config.schedule.windows and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bench.trap.config.schedule.windows == ()
    finally:
        operator.close()


@pytest.mark.parametrize("certificate", ["TRAP-B", CONSUMER, "op-not-in-the-acl"])
def test_only_an_operator_certificate_can_send_commands(broker, running_trap, certificate):
    """Commands are authorised per operator certificate: another trap, the read-only
    consumer (which could read the reply) and a certificate the ACL does not name
    are all denied, and the trap does nothing."""
    intruder = Operator(broker, certificate=certificate)
    try:
        intruder.send("log", id="x1", lines=5)
        time.sleep(2)
        assert not any(r.get("id") == "x1" for r in intruder.replies)
        assert f"Denied PUBLISH from {certificate}" in broker.log_text()
    finally:
        intruder.close()
