"""Telemetry over MQTT: status (retained birth + last will), heartbeat, event, cmd.

MQTT 5 (a refused publish comes back with its reason and stays queued).
Topics (`trapd/v1/<station>/...`):
- `status`    retained; {"online": true, ...} on every connect, and the broker
              publishes the last will {"online": false} when the trap vanishes;
- `heartbeat` battery, temperatures, free space, queue depth, last event,
              clock-sync state, firmware version;
- `event`     one summary per event (no image);
- `cmd/#`     subscribed: `cmd/status` queues a heartbeat at once.

Payloads are JSON with `"schema": 1` and a `msg_id`. Heartbeats and events go
through the outbox (outbox.py): published QoS 1, at most `max_inflight`
unacknowledged, a row marked delivered only on its PUBACK. Guarantee:
at-least-once delivery to the broker, each message carrying a unique
`msg_id` so consumers drop redeliveries (exactly-once processing).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from trapd.config import TelemetryConfig
from trapd.fleet.outbox import FleetDb
from trapd.fleet.secrets import FleetError, check_private, require_identity, require_synchronised_clock
from trapd.timekeeping import kernel_clock_synchronised

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
QOS = 1
NS = 1_000_000_000
# The broker keeps this trap's session (its cmd/# subscription, QoS 1 messages
# for it) this long while it is away: a week of a dead modem.
SESSION_EXPIRY_S = 7 * 86400
# After the broker refused a message, the outbox is offered again this much later.
REFUSED_RETRY_S = 300


def topic(station_id: str, leaf: str) -> str:
    return f"trapd/v1/{station_id}/{leaf}"


def iso_utc(wall_ns: int) -> str:
    return datetime.fromtimestamp(wall_ns / NS, timezone.utc).isoformat(timespec="seconds")


def status_payload(station_id: str, online: bool, firmware: str, wall_ns: int | None = None) -> str:
    body = {"schema": SCHEMA_VERSION, "station": station_id, "online": online, "firmware": firmware}
    if wall_ns is not None:
        body["time"] = iso_utc(wall_ns)
    return json.dumps(body, separators=(",", ":"))


def heartbeat_payload(station_id: str, firmware: str, wall_ns: int, store_status: dict,
                      queue_depth: int, readings=None, clock_synced: bool | None = None,
                      sync: dict | None = None) -> dict:
    last = store_status.get("last_event") or {}
    return {
        "schema": SCHEMA_VERSION, "type": "heartbeat", "station": station_id,
        "time": iso_utc(wall_ns), "firmware": firmware,
        "battery_v": getattr(readings, "battery_voltage_v", None),
        "cpu_temperature_c": getattr(readings, "cpu_temperature_c", None),
        "ambient_temperature_c": getattr(readings, "ambient_temperature_c", None),
        "free_mb": store_status.get("free_mb"), "queue_depth": queue_depth,
        "last_event": last.get("event_id"), "clock_synced": clock_synced,
        # Faults the trap is outliving (trapd/health.py): state -> why; {} = healthy.
        "degraded": {state: about.get("why") for state, about
                     in (store_status.get("degraded") or {}).items()},
        # Image sync: paused (why) or None, failed attempts in a row, images set aside.
        "sync": sync,
    }


def event_payload(station_id: str, wall_ns: int, report) -> dict:
    return {
        "schema": SCHEMA_VERSION, "type": "event", "station": station_id,
        "time": iso_utc(wall_ns), "event_id": report.event_id, "trigger": report.trigger,
        "frames": len(report.frames), "kept": sum(f.kept for f in report.frames),
        "saved": sum(f.file is not None for f in report.frames), "note": report.note,
    }


class Telemetry:
    """One MQTT session per trap; `drain()` empties the outbox while the link is up."""

    def __init__(self, station_id: str, config: TelemetryConfig, db: FleetDb, firmware: str,
                 wall_ns: Callable[[], int] = time.time_ns,
                 clock_synced: Callable[[], bool | None] = kernel_clock_synchronised,
                 on_command: Callable[[str, bytes], None] | None = None) -> None:
        if not config.broker_url:
            raise FleetError("fleet.telemetry.broker_url is not set")
        self.station_id = station_id
        self.config = config
        self.db = db
        self.firmware = firmware
        self.wall_ns = wall_ns
        self.clock_synced = clock_synced
        self.on_command = on_command
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._lock = threading.Condition()
        self._pending: dict[int, int] = {}     # mid -> outbox seq
        self._early_acks: dict[int, object] = {}   # PUBACKs that beat the mid bookkeeping
        self._link_down_logged = False
        # Why the broker refused the last message it refused (MQTT 5 PUBACK reason), or None.
        self.refused: str | None = None
        self._refused: dict[int, str] = {}     # outbox seq -> why the broker refused it
        self._refused_at = 0.0

    # -- connection ---------------------------------------------------------
    def _new_client(self) -> mqtt.Client:
        url = urlsplit(self.config.broker_url)
        # MQTT 5: a publish the broker refuses (not authorised, quota) is answered
        # with its reason; MQTT 3.1.1 acknowledges it like any other (mosquitto#547).
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.station_id,
                             protocol=mqtt.MQTTv5)
        if url.scheme == "mqtts":
            require_synchronised_clock(self.clock_synced, "MQTT over TLS")
            key_file = check_private(self.config.key_file)
            require_identity(self.config.cert_file, self.station_id)
            client.tls_set(ca_certs=self.config.ca_file, certfile=self.config.cert_file,
                           keyfile=str(key_file))
        client.will_set(topic(self.station_id, "status"),
                        status_payload(self.station_id, False, self.firmware), qos=QOS, retain=True)
        client.max_inflight_messages_set(self.config.max_inflight)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def connect(self, timeout_s: float = 10.0) -> bool:
        """True once connected; False (logged once per outage) if the broker is unreachable."""
        if self._connected.is_set():
            return True
        if self._client is None:
            self._client = self._new_client()
            url = urlsplit(self.config.broker_url)
            session = Properties(PacketTypes.CONNECT)
            session.SessionExpiryInterval = SESSION_EXPIRY_S
            try:
                self._client.connect(url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883),
                                     keepalive=60, clean_start=False, properties=session)
            except (OSError, ValueError) as exc:
                self._client = None
                self._link_down(f"{exc}")
                return False
            self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self._link_down("no CONNACK")
            return False
        return True

    def _link_down(self, why: str) -> None:
        if not self._link_down_logged:
            log.warning("telemetry: broker %s unreachable (%s); messages stay queued",
                        self.config.broker_url, why)
            self._link_down_logged = True

    def close(self) -> None:
        """Clean disconnect (the broker does not send the will)."""
        if self._client is not None:
            if self._connected.is_set():
                self._client.publish(topic(self.station_id, "status"),
                                     status_payload(self.station_id, False, self.firmware,
                                                    self.wall_ns()), qos=QOS, retain=True)
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self._connected.clear()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("telemetry: broker refused the connection: %s", reason_code)
            return
        log.info("telemetry: connected to %s", self.config.broker_url)
        self._link_down_logged = False
        client.publish(topic(self.station_id, "status"),
                       status_payload(self.station_id, True, self.firmware, self.wall_ns()),
                       qos=QOS, retain=True)
        client.subscribe(topic(self.station_id, "cmd/#"), qos=QOS)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            seq = self._pending.pop(mid, None)
            if seq is None:
                self._early_acks[mid] = reason_code
            else:
                self._acknowledged(seq, reason_code)
            self._lock.notify_all()

    def _acknowledged(self, seq: int, reason_code) -> None:
        """Delivered only if the broker accepted it; a refusal leaves it in the outbox."""
        if not reason_code.is_failure:
            self.db.mark_delivered(seq, self.wall_ns())
            self._refused.pop(seq, None)
            if self.refused and not self._refused:
                log.warning("telemetry: the broker accepts the refused messages now")
                self.refused = None
            return
        why = str(reason_code)
        if why not in self._refused.values():
            log.error("telemetry: the broker refused a message (%s); it stays in the outbox and "
                      "is offered again after %d s", why, REFUSED_RETRY_S)
        self._refused[seq] = why
        self.refused = why
        self._refused_at = time.monotonic()

    def _on_message(self, client, userdata, message) -> None:
        command = message.topic.rsplit("/cmd/", 1)[-1]
        log.info("telemetry: command %s", command)
        if self.on_command:
            self.on_command(command, message.payload)

    # -- draining -------------------------------------------------------------
    def drain(self, timeout_s: float = 10.0) -> int:
        """Publish queued messages, at most max_inflight unacknowledged; wait
        for their PUBACKs. Returns how many were acknowledged."""
        if not self.connect(timeout_s):
            return 0
        if self.refused and time.monotonic() - self._refused_at < REFUSED_RETRY_S:
            return 0   # not every tick: the refusal stands until something changes
        acked = 0
        deadline = time.monotonic() + timeout_s
        last_seq = 0
        while time.monotonic() < deadline and self._connected.is_set():
            in_paho = set(self._pending.values())
            batch = [m for m in self.db.undelivered(self.config.max_inflight, last_seq)
                     if m.seq not in in_paho]
            if not batch and not self._pending:
                break
            for message in batch:
                if not self._wait_for_room(deadline):
                    break
                info = self._client.publish(message.topic, message.payload, qos=QOS,
                                            retain=message.retain)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                last_seq = message.seq
                with self._lock:
                    if info.mid in self._early_acks:
                        self._acknowledged(message.seq, self._early_acks.pop(info.mid))
                    else:
                        self._pending[info.mid] = message.seq
                acked += 1
            if not batch:
                self._wait_for_room(deadline, until_empty=True)
        self._wait_for_room(deadline, until_empty=True)
        return acked - len(self._pending)

    def _wait_for_room(self, deadline: float, until_empty: bool = False) -> bool:
        limit = 0 if until_empty else self.config.max_inflight - 1
        with self._lock:
            while len(self._pending) > limit:
                left = deadline - time.monotonic()
                if left <= 0 or not self._connected.is_set():
                    return False
                self._lock.wait(min(left, 0.5))
        return True
