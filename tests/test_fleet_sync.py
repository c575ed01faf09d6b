"""Image sync against a real S3 store (SeaweedFS `weed mini`) on loopback."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from botocore.exceptions import ClientError

from conftest import config_dict, make_config, trapd
from fleet_servers import ADMIN, BUCKET, PROJECT
from trapd.fleet.outbox import FleetDb
from trapd.fleet.sync import Syncer, object_key
from trapd.storage import FrameRecord, Store

NS = 1_000_000_000
MB = 1024 * 1024
STATION = "LOL-A017"       # the shipped config's station
MORNING = datetime(2026, 11, 26, 6, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self, start: datetime = MORNING) -> None:
        self.now = start

    def wall_ns(self) -> int:
        return int(self.now.timestamp() * NS)


def fleet_overrides(s3_store, tmp_path, station=STATION, **sync) -> dict:
    credentials = s3_store.credentials_file(station, tmp_path / f"s3-{station}.cred")
    return {"fleet": {"enabled": True, "project": PROJECT,
                      "sync": {"enabled": True, "endpoint_url": s3_store.endpoint, "allow_insecure": True, "bucket": BUCKET,
                               "credentials_file": str(credentials), **sync}}}


def add_images(store: Store, deployment: str, sizes: list[int], wall: datetime = MORNING) -> list:
    """One event per call holding random 'images' of these sizes; their index rows."""
    wall_ns = int(wall.timestamp() * NS)
    event = store.open_event(STATION, deployment, "pir", 0, wall_ns)
    for sequence, size in enumerate(sizes):
        name = f"{wall:%Y-%m-%d}/{STATION}_{wall:%Y%m%d_%H%M%S}_E{event.number:06d}_{sequence:02d}.jpg"
        store.add_frame(FrameRecord(event.number, sequence, sequence, wall_ns, False, 1.0, True,
                                    media_id=uuid.uuid4().hex), os.urandom(size), name)
    store.close_event(event, wall_ns)
    return [f for f in store.saved_frames(("pending",)) if f["event_number"] == event.number]


@pytest.fixture
def station(tmp_path, s3_store):
    """A station's queue, fleet db and config; a unique deployment keeps keys apart."""
    class Station:
        deployment = f"{STATION}-{uuid.uuid4().hex[:8]}"
        store = Store(tmp_path / "storage", 0)
        db = FleetDb(tmp_path / "storage")

        def config(self, **sync):
            overrides = fleet_overrides(s3_store, tmp_path, **sync)
            overrides["station"] = {"deployment_id": self.deployment}
            return make_config(tmp_path, overrides)

        def syncer(self, clock=None, client=None, **sync):
            return Syncer(self.config(**sync), self.store, self.db,
                          client or s3_store.client(STATION),
                          wall_ns=(clock or FakeClock()).wall_ns)

    s = Station()
    yield s
    s.db.close()
    s.store.close()


def stored_keys(s3_store, prefix: str) -> list[str]:
    listing = s3_store.client(ADMIN).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def prefix_of(station) -> str:
    return f"{PROJECT}/{STATION}/{station.deployment}/"


def test_keys_come_from_the_image_not_the_upload_time(station):
    frame = add_images(station.store, station.deployment, [10])[0]
    assert object_key(PROJECT, frame) == (
        f"{PROJECT}/{STATION}/{station.deployment}/2026/11/26/{frame['file'].split('/')[-1]}")


def test_synced_objects_carry_the_checksum_and_a_second_sync_uploads_nothing(station, s3_store):
    frames = add_images(station.store, station.deployment, [50_000, 60_000, 70_000])
    first = station.syncer().run_once()
    assert (first.uploaded, first.problems) == (3, [])

    admin = s3_store.client(ADMIN)
    for frame in frames:
        head = admin.head_object(Bucket=BUCKET, Key=object_key(PROJECT, frame))
        assert head["Metadata"]["sha256"] == frame["sha256"]
        assert head["ContentLength"] == frame["size_bytes"]

    second = station.syncer().run_once()
    assert (second.uploaded, second.already_there, second.bytes_sent) == (0, 0, 0)

    # Lost local state (e.g. queue.db restored from before the upload): HEAD finds them.
    station.db._run("DELETE FROM upload_state")
    third = station.syncer().run_once()
    assert (third.uploaded, third.already_there, third.bytes_sent) == (0, 3, 0)


def test_a_different_object_under_the_key_is_never_overwritten(station, s3_store):
    frame = add_images(station.store, station.deployment, [20_000])[0]
    key = object_key(PROJECT, frame)
    s3_store.client(ADMIN).put_object(Bucket=BUCKET, Key=key, Body=b"someone else's bytes")
    result = station.syncer().run_once()
    assert result.uploaded == 0 and "not overwritten" in result.problems[0]
    assert s3_store.client(ADMIN).get_object(Bucket=BUCKET, Key=key)["Body"].read() == \
        b"someone else's bytes"
    assert frame["media_id"] not in station.db.verified_media()


def test_a_write_into_another_stations_prefix_is_denied(station, s3_store):
    with pytest.raises(ClientError, match="AccessDenied"):
        s3_store.client(STATION).put_object(Bucket=BUCKET, Key=f"{PROJECT}/TRAP-B/x.jpg", Body=b"x")
    # A trap configured with another station's keys uploads nothing and marks nothing.
    add_images(station.store, station.deployment, [10_000])
    result = station.syncer(client=s3_store.client("TRAP-B")).run_once()
    assert result.uploaded == 0 and result.store_problem
    assert result.stopped.startswith("the store refused this station's credentials for bucket")
    assert station.db.verified_media() == set()


KILLED_SYNC = """
import os, signal, sys
from trapd.config import load_config
from trapd.fleet.outbox import FleetDb
from trapd.fleet.sync import Syncer, s3_client
from trapd.storage import Store
config = load_config(sys.argv[1])
store = Store(config.storage.root, 0, recover=False)
def die(part):
    if part == 2:
        os.kill(os.getpid(), signal.SIGKILL)   # power cut between part 2 and part 3
Syncer(config, store, FleetDb(config.storage.root), s3_client(config), after_part=die).run_once()
"""


def test_an_upload_killed_between_parts_resumes_and_the_checksum_matches(station, s3_store,
                                                                       tmp_path):
    frame = add_images(station.store, station.deployment, [17 * MB])[0]   # parts 5+5+5+2 MB
    sync = {"multipart_threshold_mb": 5, "part_size_mb": 5}
    config_file = tmp_path / "config.yaml"
    overrides = fleet_overrides(s3_store, tmp_path, **sync)
    overrides["station"] = {"deployment_id": station.deployment}
    config_file.write_text(yaml.safe_dump(config_dict(tmp_path, overrides)))

    killed = subprocess.run([sys.executable, "-c", KILLED_SYNC, str(config_file)], timeout=120)
    assert killed.returncode == -9
    saved = station.db.upload_row(frame["media_id"])
    assert saved["upload_id"] and saved["verified_ns"] is None
    key = object_key(PROJECT, frame)
    assert stored_keys(s3_store, key) == []            # not visible until completed

    sent_parts = []
    resumed = station.syncer(**sync)
    resumed.after_part = sent_parts.append
    result = resumed.run_once()
    assert (result.uploaded, result.problems) == (1, [])
    assert sent_parts == [3, 4]                        # parts 1 and 2 came from ListParts
    body = s3_store.client(ADMIN).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == frame["sha256"]


def test_the_daily_byte_budget_holds_under_a_fake_clock(station, s3_store):
    add_images(station.store, station.deployment, [100_000] * 5)
    clock = FakeClock()
    budget_mb = 250_000 / MB                            # room for two images a day
    per_day = []
    for day in range(4):
        result = station.syncer(clock, daily_budget_mb=budget_mb).run_once()
        again = station.syncer(clock, daily_budget_mb=budget_mb).run_once()   # same day: nothing
        per_day.append(result.uploaded + again.uploaded)
        assert station.db.bytes_sent(clock.now.astimezone(
            timezone(timedelta(hours=10))).date().isoformat()) <= 250_000
        clock.now += timedelta(days=1)
    assert per_day == [2, 2, 1, 0]
    assert len(stored_keys(s3_store, prefix_of(station))) == 5


def test_newest_event_goes_first(station, s3_store):
    add_images(station.store, station.deployment, [100_000])
    newest = add_images(station.store, station.deployment, [100_000],
                        wall=MORNING + timedelta(hours=1))[0]
    station.syncer(daily_budget_mb=150_000 / MB).run_once()
    assert stored_keys(s3_store, prefix_of(station)) == [object_key(PROJECT, newest)]


def test_trapd_sync_command_uploads_then_finds_nothing_to_do(station, s3_store, tmp_path):
    add_images(station.store, station.deployment, [30_000, 30_000])
    config_file = tmp_path / "config.yaml"
    overrides = fleet_overrides(s3_store, tmp_path)
    overrides["station"] = {"deployment_id": station.deployment}
    config_file.write_text(yaml.safe_dump(config_dict(tmp_path, overrides)))
    first = trapd("sync", "--config", config_file)
    assert "2 images uploaded and verified" in first.stdout
    second = trapd("sync", "--config", config_file)
    assert "0 images uploaded and verified" in second.stdout


def test_credentials_readable_by_others_are_refused(station, s3_store, tmp_path):
    config_file = tmp_path / "config.yaml"
    overrides = fleet_overrides(s3_store, tmp_path)
    config_file.write_text(yaml.safe_dump(config_dict(tmp_path, overrides)))
    os.chmod(overrides["fleet"]["sync"]["credentials_file"], 0o644)
    add_images(station.store, station.deployment, [10])
    result = trapd("sync", "--config", config_file, check=False)
    assert result.returncode != 0 and "chmod 600" in result.stderr
    assert "secret-" not in result.stdout + result.stderr


# --- unit tests with a stub client (no store) ---------------------------------

class RefusingClient:
    def __getattr__(self, name):
        raise AssertionError(f"no S3 call expected, got {name}")


def test_outside_the_time_windows_nothing_is_sent(station):
    add_images(station.store, station.deployment, [10])
    # 06:00 UTC is 16:00 at +10:00; the window is the night tariff.
    result = station.syncer(client=RefusingClient(), windows=["22:00-06:00"]).run_once()
    assert result.stopped.startswith("outside the sync windows")


def test_low_battery_stops_the_sync(station):
    add_images(station.store, station.deployment, [10])
    syncer = station.syncer(client=RefusingClient(), min_battery_v=11.8)
    syncer.battery_v = lambda: 11.2
    assert syncer.run_once().stopped == "battery 11.20 V below 11.8 V"


def test_a_station_cannot_list_another_stations_prefix_nor_its_own(station, s3_store):
    add_images(station.store, station.deployment, [10_000])
    assert station.syncer().run_once().uploaded == 1       # sync needs no listing
    for who, prefix in (("TRAP-B", prefix_of(station)), (STATION, prefix_of(station))):
        with pytest.raises(ClientError, match="AccessDenied"):
            s3_store.client(who).list_objects_v2(Bucket=BUCKET, Prefix=prefix)


def test_overwriting_or_deleting_a_synced_image_leaves_it_in_the_store(station, s3_store):
    """A stolen trap's key cannot erase its history: the bucket is versioned."""
    frame = add_images(station.store, station.deployment, [30_000])[0]
    assert station.syncer().run_once().uploaded == 1
    key, thief = object_key(PROJECT, frame), s3_store.client(STATION)
    thief.put_object(Bucket=BUCKET, Key=key, Body=b"forged")
    thief.delete_object(Bucket=BUCKET, Key=key)
    admin = s3_store.client(ADMIN)
    versions = admin.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    bodies = [admin.get_object(Bucket=BUCKET, Key=key, VersionId=v["VersionId"])["Body"].read()
              for v in versions]
    assert frame["sha256"] in {hashlib.sha256(b).hexdigest() for b in bodies}
