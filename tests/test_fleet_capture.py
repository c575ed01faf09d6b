"""The fleet link never delays a capture: PIR events while an upload is stalled."""

from __future__ import annotations

import json
import threading

from botocore.exceptions import ClientError

from trapd.fleet.sync import Syncer
from trapd.fleet.worker import FleetWorker, attach


class StalledStore:
    """An S3 client whose upload hangs (a modem that stopped mid-transfer) until released."""

    def __init__(self) -> None:
        self.uploading = threading.Event()
        self.release = threading.Event()

    def head_object(self, **kwargs):
        raise ClientError({"Error": {"Code": "404"}}, "HeadObject")

    def put_object(self, **kwargs):
        self.uploading.set()
        self.release.wait(60)
        raise ClientError({"Error": {"Code": "RequestTimeout"}}, "PutObject")

    create_multipart_upload = put_object


FLEET = {"fleet": {"enabled": True, "sync": {"enabled": True, "credentials_file": "/unused",
                                              "interval_s": 10}},
         "filter": {"enabled": False}}   # keep every frame: each event saves images


def test_pir_events_are_captured_while_an_upload_is_stalled(bench):
    b = bench(overrides=FLEET)
    b.pir_pulse_at(1.0)
    b.run_for(10)                                   # one image on the card to upload
    assert b.trap.store.status()["frames"]["pending"] > 0

    store = StalledStore()
    worker = FleetWorker(b.config, str(b.trap.store.root))
    worker.syncer = Syncer(b.config, worker.store, worker.db, store)
    attach(worker, b.trap)
    worker.start()
    try:
        assert store.uploading.wait(30), "the background sync never started an upload"
        for delay in (1.0, 15.0, 30.0):
            b.pir_pulse_at(delay)
        b.run_for(45)
        assert store.uploading.is_set() and not store.release.is_set()   # still stalled
        captured = b.events[1:]
        assert len(captured) == 3
        assert all(any(f.file for f in event.frames) for event in captured)
        queued = [json.loads(m.payload) for m in worker.db.undelivered(100)]
        assert [m["event_id"] for m in queued] == [e.event_id for e in captured]
    finally:
        store.release.set()
        worker.stop()


def test_an_unsynchronised_clock_stops_the_link_not_the_trap(bench, tmp_path, caplog):
    from trapd.fleet.worker import start_fleet
    secret = tmp_path / "secret"
    secret.write_text("aws_access_key_id = a\naws_secret_access_key = b\n")
    secret.chmod(0o600)
    fleet = {"enabled": True,
             "telemetry": {"broker_url": "mqtts://127.0.0.1:9", "ca_file": str(secret),
                           "cert_file": str(secret), "key_file": str(secret)},
             "sync": {"enabled": True, "endpoint_url": "https://127.0.0.1:9",
                      "credentials_file": str(secret)}}
    b = bench(overrides={"fleet": fleet, "filter": {"enabled": False}})
    worker = start_fleet(b.config, b.trap, clock_synced=lambda: False)
    try:
        b.pir_pulse_at(1.0)
        b.run_for(10)
        assert len(b.events) == 1 and any(f.file for f in b.events[0].frames)
        worker._stop.wait(2.5)                      # a few drainer ticks
        assert worker.db.outbox_depth() >= 1        # the event summary waits in the outbox
    finally:
        worker.stop()
    refusals = [r.getMessage() for r in caplog.records if "not synchronised" in r.getMessage()]
    assert any("MQTT over TLS not started" in m for m in refusals)
    assert any("S3 over TLS not started" in m for m in refusals)
    assert len(refusals) == len(set(refusals))      # each said once, not every tick
