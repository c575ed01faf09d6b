"""The daemon's wiring: a simulated trap with fleet enabled reports its event to the
real broker and its images to the real store, from the background thread."""

from __future__ import annotations

import time
import uuid

from fleet_servers import ADMIN, BUCKET, PROJECT
from test_fleet_telemetry import Subscriber
from trapd.fleet.sync import object_key
from trapd.fleet.worker import start_fleet
from trapd.storage import PENDING

STATION = "LOL-A017"


def wait_until(predicate, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_an_event_reaches_the_broker_and_its_images_the_store(bench, broker, s3_store, tmp_path):
    cert, key = broker.ca.client(STATION)
    deployment = f"{STATION}-{uuid.uuid4().hex[:8]}"
    fleet = {"enabled": True, "project": PROJECT,
             "telemetry": {"broker_url": broker.url, "ca_file": str(broker.ca.ca),
                           "cert_file": str(cert), "key_file": str(key)},
             "sync": {"enabled": True, "endpoint_url": s3_store.endpoint, "allow_insecure": True, "bucket": BUCKET,
                      "credentials_file": str(s3_store.credentials_file(STATION, tmp_path / "s3.cred"))}}
    b = bench(overrides={"fleet": fleet, "filter": {"enabled": False},
                         "station": {"deployment_id": deployment}})
    consumer = Subscriber(broker, f"trapd/v1/{STATION}/#")
    worker = start_fleet(b.config, b.trap, clock_synced=lambda: True)
    try:
        b.pir_pulse_at(1.0)
        b.run_for(10)
        event_id = b.events[0].event_id
        assert consumer.wait_for(lambda ms: any(p.get("event_id") == event_id for _, p, _ in ms))
        heartbeat = next(p for _, p, _ in consumer.messages if p.get("type") == "heartbeat")
        assert {"schema", "msg_id", "station", "time", "firmware", "battery_v",
                "cpu_temperature_c", "ambient_temperature_c", "free_mb", "queue_depth",
                "last_event", "clock_synced", "sync", "telemetry_refused"} <= set(heartbeat)
        assert heartbeat["station"] == STATION and heartbeat["free_mb"] > 0
        assert any(p.get("online") is True for t, p, _ in consumer.messages if t.endswith("/status"))

        frames = worker.store.saved_frames((PENDING,))
        keys = [object_key(PROJECT, f) for f in frames]
        admin = s3_store.client(ADMIN)
        listed = lambda: sorted(o["Key"] for o in admin.list_objects_v2(  # noqa: E731
            Bucket=BUCKET, Prefix=f"{PROJECT}/{STATION}/{deployment}/").get("Contents", []))
        assert wait_until(lambda: listed() == sorted(keys))
        assert wait_until(lambda: worker.db.verified_media() == {f["media_id"] for f in frames})
    finally:
        worker.stop()
        consumer.close()
