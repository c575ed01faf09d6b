"""No copy that leaves the card says more about where it was taken than
`station.location.publish` allows when it is made: offloaded, exported and
synced copies (read by exiftool) and the package files beside them, for photos
taken under the same setting and for photos taken under `exact` before the
station was switched (trapd/published_copy.py re-tags the copies)."""

import hashlib
import json
import sqlite3
import subprocess
import sys
import uuid

import pytest
import yaml

from conftest import camtrap_validator, copy_queue, make_config, require_tool, trapd
from trapd.config import DEFAULT_CONFIG_PATH, load_config
from trapd.fleet.outbox import FleetDb
from trapd.storage import Store

SHIPPED = load_config(DEFAULT_CONFIG_PATH).station.location   # 43.1056 N, 131.4569 E, 320 m
# What the exact position looks like written out in a package's text files.
EXACT_TEXT = [b"43.105", b"131.456", b"131.457", b"elevation:", b"43 deg 6"]
# With omit, not even the 0.1 degree cell may appear.
CELL_TEXT = [b"43.1", b"131.5", b"131.4"]
PACKAGE_FILES = ("datapackage.json", "deployments.csv", "media.csv", "observations.csv")
CASES = [(publish, taken) for publish in ("rounded", "omit") for taken in (publish, "exact")]


def card(sim_queue, tmp_path, publish, taken):
    """A private copy of a sim's queue whose photos were tagged under `taken`,
    and a config file saying `publish` now."""
    if taken == "exact":
        sim = sim_queue("default")
        assert SHIPPED.publish == "exact"
    else:   # the same runs as test_location_privacy.py's
        sim = sim_queue("unsynced-clock", {"station": {"location": {"publish": taken}}})
    settings = yaml.safe_load(sim["config"].read_text())
    settings["station"]["location"]["publish"] = publish
    config = tmp_path / f"config-{publish}.yaml"
    config.write_text(yaml.safe_dump(settings))
    return copy_queue(sim["storage"], tmp_path / "card"), config


def exiftool_tags(images) -> list[dict]:
    exiftool = require_tool("exiftool")
    out = subprocess.run([exiftool, "-n", "-j", "-a", "-G1", "-all", "-validate",
                          *map(str, images)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def assert_copies_publish(images, publish):
    images = sorted(images)
    assert images
    for tags in exiftool_tags(images):
        where = tags["SourceFile"]
        assert tags["ExifTool:Validate"] == "0 0 0", (where, tags.get("ExifTool:Warning"))
        gps = {k: v for k, v in tags.items() if "GPS" in k}
        assert not [k for k in gps if "Altitude" in k], (where, gps)
        if publish == "omit":
            assert gps == {}, (where, gps)
            continue
        assert tags["GPS:GPSLatitude"] == pytest.approx(43.1), (where, gps)
        assert tags["GPS:GPSLongitude"] == pytest.approx(131.5), (where, gps)
        # the uncertainty covers the 0.1 degree cell, as deployments.csv says
        assert tags["GPS:GPSHPositioningError"] > 5_000, (where, gps)


def assert_package_publishes(package, publish):
    giveaways = EXACT_TEXT + (CELL_TEXT if publish == "omit" else [])
    for name in PACKAGE_FILES:
        data = (package / name).read_bytes()
        assert not [g for g in giveaways if g in data], (package / name, publish)


def images_in(directory):
    return [p for p in directory.rglob("*.jpg")]


@pytest.mark.parametrize("publish,taken", CASES)
def test_offloaded_and_exported_copies_and_packages_hold_no_more_than_publish(
        sim_queue, tmp_path, publish, taken):
    storage, config = card(sim_queue, tmp_path, publish, taken)
    originals = {p.name: p.read_bytes() for p in images_in(storage / "images")}
    drive = tmp_path / "drive"
    drive.mkdir()
    trapd("offload", drive, "--storage", storage, "--config", config)
    [package] = [p.parent for p in drive.glob("*/datapackage.json")]
    assert_copies_publish(images_in(drive), publish)
    assert_package_publishes(package, publish)

    exported = tmp_path / "export"
    trapd("export", "--camtrap-dp", exported, "--storage", storage, "--config", config)
    assert_copies_publish(images_in(exported), publish)
    assert_package_publishes(exported, publish)

    for directory in (package, exported):
        subprocess.run([sys.executable, str(camtrap_validator()), str(directory), "--strict",
                        "--check-media"], check=True, capture_output=True)
    # the card's originals are as they were taken
    assert {p.name: p.read_bytes() for p in images_in(storage / "images")} == originals


def test_photos_taken_exact_and_offloaded_rounded_are_freed_only_after_verified_copies(
        sim_queue, tmp_path):
    """--free with re-tagged copies: the copy is checked against its own recorded
    hash, and the card file against its index hash, before the card file goes."""
    storage, config = card(sim_queue, tmp_path, "rounded", "exact")
    drive = tmp_path / "drive"
    drive.mkdir()
    first = trapd("offload", drive, "--storage", storage, "--config", config)
    assert "re-tagged" in first.stdout
    db = sqlite3.connect(storage / "queue.db")
    rows = db.execute("SELECT file, sha256, offload_path, offload_sha256 FROM frames"
                      " WHERE file IS NOT NULL ORDER BY id").fetchall()
    db.close()
    for file, card_sha, offload_path, copy_sha in rows:
        copy = (drive / offload_path).read_bytes()
        assert copy_sha and copy_sha != card_sha
        assert hashlib.sha256(copy).hexdigest() == copy_sha

    # one card file altered after its copy was made: not freed
    altered = storage / rows[1][0]
    altered.write_bytes(altered.read_bytes() + b"\0")
    # one copy damaged on the drive: not freed
    damaged = drive / rows[2][2]
    damaged.write_bytes(damaged.read_bytes()[:-1])
    result = trapd("offload", drive, "--storage", storage, "--config", config, "--free",
                   check=False)
    assert result.returncode == 1, result.stdout
    assert "no longer matches its index checksum" in result.stdout
    assert "missing or differs" in result.stdout
    assert sorted(p.name for p in images_in(storage / "images")) == \
        sorted([altered.name, damaged.name])
    assert f"{len(rows) - 2} freed from the card" in result.stdout


@pytest.mark.parametrize("publish,taken", CASES)
def test_synced_copies_hold_no_more_than_publish(sim_queue, s3_store, tmp_path, publish, taken):
    from fleet_servers import ADMIN, BUCKET, PROJECT
    from trapd.fleet.sync import Syncer

    storage, config_file = card(sim_queue, tmp_path, publish, taken)
    deployment = f"privacy-{uuid.uuid4().hex[:8]}"   # object keys apart from other tests'
    db = sqlite3.connect(storage / "queue.db")
    db.execute("UPDATE events SET deployment_id = ?", (deployment,))
    db.commit()
    db.close()
    station = yaml.safe_load(config_file.read_text())["station"]["station_id"]
    config = make_config(tmp_path, {
        "station": {"location": {"publish": publish}},
        "storage": {"root": str(storage)},
        "fleet": {"enabled": True, "project": PROJECT, "sync": {
            "enabled": True, "endpoint_url": s3_store.endpoint, "allow_insecure": True, "bucket": BUCKET,
            "credentials_file": str(s3_store.credentials_file(station, tmp_path / "s3.cred"))}}})
    store = Store(storage, 0, recover=False)
    fleet = FleetDb(storage)
    try:
        result = Syncer(config, store, fleet, s3_store.client(station)).run_once()
    finally:
        fleet.close()
        store.close()
    assert result.problems == [] and result.uploaded == len(images_in(storage / "images"))
    admin = s3_store.client(ADMIN)
    prefix = f"{PROJECT}/{station}/{deployment}/"
    keys = [o["Key"] for o in admin.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    downloaded = tmp_path / "synced"
    downloaded.mkdir()
    for key in keys:
        body = admin.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        head = admin.head_object(Bucket=BUCKET, Key=key)
        assert head["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()  # its own hash
        (downloaded / key.rsplit("/", 1)[1]).write_bytes(body)
    assert_copies_publish(images_in(downloaded), publish)
