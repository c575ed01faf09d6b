"""`trapd sim` honours fleet.enabled: the simulated trap reports to a real
broker (Mosquitto) and uploads to a real store (SeaweedFS) named in its config,
so an engineer can watch it without writing code."""

from __future__ import annotations

import uuid

import yaml

from conftest import config_dict, trapd
from fleet_servers import ADMIN, BUCKET, PROJECT
from test_fleet_telemetry import Subscriber

STATION = "LOL-A017"


def test_trapd_sim_with_fleet_enabled_reports_every_event_and_syncs_every_image(
        broker, s3_store, tmp_path):
    cert, key = broker.ca.client(STATION)
    deployment = f"{STATION}-{uuid.uuid4().hex[:8]}"
    fleet = {"enabled": True, "project": PROJECT,
             "telemetry": {"broker_url": broker.url, "ca_file": str(broker.ca.ca),
                           "cert_file": str(cert), "key_file": str(key)},
             "sync": {"enabled": True, "endpoint_url": s3_store.endpoint, "allow_insecure": True,
                      "bucket": BUCKET, "interval_s": 10,
                      "credentials_file": str(s3_store.credentials_file(STATION, tmp_path / "s3.cred"))}}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config_dict(tmp_path, {
        "fleet": fleet, "station": {"deployment_id": deployment}})))
    consumer = Subscriber(broker, f"trapd/v1/{STATION}/#")
    try:
        run = trapd("sim", "default", "--config", config_file, "--report", tmp_path / "report.json")
        report = yaml.safe_load((tmp_path / "report.json").read_text())
        assert report["fleet"] == {"messages_undelivered": 0, "images_not_synced": 0,
                                   "images_set_aside": 0, "sync_paused": None}
        assert "fleet: 0 message(s) not delivered, 0 image(s) not synced" in run.stdout
        events = {e["event_id"] for e in report["events"]}
        assert consumer.wait_for(lambda ms: events <= {p.get("event_id") for _, p, _ in ms})
        stored = [f["file"] for e in report["events"] for f in e["frames"] if f["file"]]
        listing = s3_store.client(ADMIN).list_objects_v2(
            Bucket=BUCKET, Prefix=f"{PROJECT}/{STATION}/{deployment}/")
        assert len(listing.get("Contents", [])) == len(stored) > 0
    finally:
        consumer.close()
