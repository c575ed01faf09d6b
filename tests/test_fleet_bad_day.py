"""Image sync on a bad day, against a real S3 store (SeaweedFS) on loopback: the
store unreachable, the bucket missing, the clock skewed, a damaged image on the
card. Each is named in one line, none is a traceback, a damaged image never
blocks the others, and a store that stays down is retried with back-off, its
log a line per change of state."""

from __future__ import annotations

import datetime as dt
import logging

import botocore.auth
import yaml

from conftest import config_dict, trapd
from fleet_servers import free_port
from test_fleet_sync import FakeClock, add_images, fleet_overrides, station  # noqa: F401 (fixture)
from trapd.fleet.sync import Syncer, s3_client
from trapd.fleet.worker import FleetWorker
from trapd.storage import ON_CARD

DEAD_ENDPOINT = f"http://127.0.0.1:{free_port()}"   # nothing listens there


def real_client_syncer(station, **sync):
    """A syncer whose S3 client is built from the config, as the trap builds it."""
    config = station.config(**sync)
    return Syncer(config, station.store, station.db, s3_client(config), wall_ns=FakeClock().wall_ns)


class VirtualSeconds:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_unreachable_store_stops_the_run_with_one_line(station):
    add_images(station.store, station.deployment, [10_000, 10_000])
    result = real_client_syncer(station, endpoint_url=DEAD_ENDPOINT).run_once()
    assert result.store_problem and result.uploaded == 0
    assert result.stopped.startswith(f"store unreachable at {DEAD_ENDPOINT} (EndpointConnectionError")
    assert station.db.verified_media() == set()


def test_trapd_sync_with_the_store_down_says_so_without_a_traceback(station, s3_store, tmp_path):
    add_images(station.store, station.deployment, [10_000])
    config_file = tmp_path / "config.yaml"
    overrides = fleet_overrides(s3_store, tmp_path, endpoint_url=DEAD_ENDPOINT)
    overrides["station"] = {"deployment_id": station.deployment}
    config_file.write_text(yaml.safe_dump(config_dict(tmp_path, overrides)))
    run = trapd("sync", "--config", config_file, check=False)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr + run.stdout
    assert f"stopped: store unreachable at {DEAD_ENDPOINT}" in run.stdout


def test_a_missing_bucket_is_named(station):
    add_images(station.store, station.deployment, [10_000])
    result = station.syncer(bucket="no-such-bucket").run_once()
    # SeaweedFS does not tell a key without rights that a bucket is missing (AccessDenied,
    # not NoSuchBucket): the line names the bucket and both possibilities.
    assert "bucket no-such-bucket" in result.stopped and "exists" in result.stopped


def test_a_clock_two_days_off_is_named_as_the_clock(station, monkeypatch):
    add_images(station.store, station.deployment, [10_000])
    skewed = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(days=2)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: skewed)
    result = station.syncer().run_once()
    assert result.store_problem and "clock" in result.stopped
    assert "credentials" not in result.stopped


def test_a_damaged_image_is_set_aside_and_the_others_are_synced(station):
    frames = add_images(station.store, station.deployment, [10_000, 10_000, 10_000])
    damaged = station.store.root / frames[1]["file"]
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    missing = add_images(station.store, station.deployment, [10_000])[0]
    (station.store.root / missing["file"]).unlink()

    first = station.syncer().run_once()
    assert (first.uploaded, first.skipped, first.stopped) == (2, 2, None)
    assert any("damaged" in p for p in first.problems)
    assert any("cannot read it from the card" in p for p in first.problems)
    second = station.syncer().run_once()
    assert (second.uploaded, second.skipped, second.problems) == (0, 0, [])   # not tried again
    assert station.db.set_aside_count() == 2


def test_a_store_that_stays_down_is_retried_with_back_off_and_logged_once(station, caplog):
    add_images(station.store, station.deployment, [10_000])
    config = station.config(endpoint_url=DEAD_ENDPOINT, interval_s=10)
    clock = VirtualSeconds()
    worker = FleetWorker(config, str(station.store.root), monotonic=clock)
    attempts, current = [], [real_client_syncer(station, endpoint_url=DEAD_ENDPOINT, interval_s=10)]

    class Counting:
        def run_once(self):
            attempts.append(clock.now)
            return current[0].run_once()

    worker.syncer = Counting()
    caplog.set_level(logging.INFO, logger="trapd")
    try:
        for second in range(61):          # a tick a second, as the worker's thread does
            clock.now = float(second)
            worker._sync_step()
        lines = [r for r in caplog.records if r.name.startswith("trapd.fleet")]
        assert len(attempts) == 3         # at 0 s, ~10 s, ~30 s (10 s doubling, +-20 %)
        assert len(lines) == 1 and "sync paused: store unreachable" in lines[0].getMessage()
        assert worker.sync_state()["paused"].startswith("store unreachable")

        current[0] = station.syncer()      # the store is back
        clock.now = 200.0
        worker._sync_step()
        resumed = [r.getMessage() for r in caplog.records if "resumed" in r.getMessage()]
        assert len(resumed) == 1 and "after 3 failed attempt(s)" in resumed[0]
        assert worker.sync_state()["paused"] is None
        assert worker.db.unsynced_count(ON_CARD) == 0
    finally:
        worker.db.close()
        worker.store.close()


def test_store_answers_that_stop_the_run_are_each_named():
    from botocore.exceptions import ClientError

    from trapd.fleet.sync import run_stopper

    def answer(code, status=400):
        return ClientError({"Error": {"Code": code, "Message": "m"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
    endpoint, bucket = "https://store.example", "camtrap-raw"
    said = {code: run_stopper(answer(code, status), endpoint, bucket) for code, status in
            [("NoSuchBucket", 404), ("RequestTimeTooSkewed", 403), ("InvalidAccessKeyId", 403),
             ("SignatureDoesNotMatch", 403), ("XMinioStorageFull", 507), ("SlowDown", 503),
             ("KeyConflict", 409)]}
    assert said["NoSuchBucket"] == "bucket camtrap-raw does not exist at https://store.example"
    assert "clock" in said["RequestTimeTooSkewed"]
    assert "access key" in said["InvalidAccessKeyId"] and "secret key" in said["SignatureDoesNotMatch"]
    assert "failing or full" in said["XMinioStorageFull"] and "failing or full" in said["SlowDown"]
    assert said["KeyConflict"] is None          # this image only: the run goes on
