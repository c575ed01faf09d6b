"""A deployment's start, end and gaps come from the trap's own record (heartbeats), not from
its images: the trapping effort an ecologist divides by."""

import csv
import errno
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from conftest import NS, camtrap_validator, copy_queue, make_config, trapd, write_config
from hw_sim.picamera2 import CameraRig
from hw_sim.pir import PirOutputPin
from hw_sim.scenario import Conditions, Scenario
from hw_sim.scene import Scene
from trapd.clock import VirtualClock
from trapd.config import DEFAULT_CONFIG_PATH
from trapd.config_edit import ConfigEditError, set_values
from trapd.daemon import Daemon, Hardware, build_trap, close_trap
from trapd.deployments import (CAPTURING, HEARTBEAT_S, NOT_RUNNING, deployment_record,
                               end_deployment)
from trapd.health import STORAGE_FULL
from trapd.storage import Store

HOUR = 3600 * NS
DAY = 24 * HOUR


class Station:
    """A trap in standby (camera off while idle) on simulated hardware, run by the daemon
    loop in virtual time; `power_loss` drops it with no goodbye, `start` boots it again."""

    def __init__(self, tmp_path, overrides=None):
        self.config = make_config(tmp_path, {"power": {"mode": "standby"}, **(overrides or {})})
        start = datetime(2026, 11, 2, tzinfo=timezone.utc)
        self.clock = VirtualClock(start_wall_ns=int(start.timestamp() * NS))
        scenario = Scenario(name="deployment", duration_s=5 * 86400, seed=5, start_time=start,
                            conditions=(Conditions(0, "day", 0.0),))
        self.rig = CameraRig(Scene(scenario, self.clock.monotonic_ns()), self.clock)
        self.daemon = None

    def start(self, config=None):
        self.config = config or self.config
        self.factory = MockFactory()
        self.pin = self.factory.pin(self.config.hardware.pir_pin, pin_class=PirOutputPin)
        hardware = Hardware(self.rig.picamera2_class, self.factory, self.clock)
        self.daemon = Daemon(None, self.config, build_trap(self.config, hardware))

    def run_for(self, ns):
        end = self.clock.monotonic_ns() + ns
        self.daemon.run(until=lambda: self.clock.monotonic_ns() >= end)

    def stop(self):
        close_trap(self.daemon.trap)
        self.factory.close()

    def pir_pulses(self, count, every_ns):
        now = self.clock.monotonic_ns()
        for i in range(1, count + 1):
            self.clock.call_at(now + i * every_ns, self.pin.drive_high)
            self.clock.call_at(now + i * every_ns + NS // 2, self.pin.drive_low)

    def power_loss(self, ns):
        """The power goes: nothing is written on the way down; it comes back `ns` later."""
        self.daemon.operation.close = lambda: None
        self.stop()
        self.clock.advance_to(self.clock.monotonic_ns() + ns)

    def record(self):
        store = Store(self.config.storage.root, 0, recover=False)
        try:
            return deployment_record(store, self.config.station.deployment_id)
        finally:
            store.close()


def three_days_with_a_power_loss_and_a_full_card(station):
    """Day 1 with a few PIR events; then 6 h without power, 12 h, 2 h of a full card, the
    rest to 3 days. Returns the wall time the daemon first ran."""
    start_ns = station.clock.wall_ns()
    station.start()
    station.pir_pulses(3, 4 * HOUR)
    station.run_for(1 * DAY)
    station.power_loss(6 * HOUR)
    station.start()
    station.run_for(12 * HOUR)
    health = station.daemon.trap.store.health
    health.set(STORAGE_FULL, "test: the card filled up")
    station.run_for(2 * HOUR)
    health.clear(STORAGE_FULL, "test: room again")
    station.run_for(DAY * 3 - station.clock.wall_ns() + start_ns)
    station.stop()
    return start_ns


def test_start_end_and_gaps_come_from_the_trap_not_from_images(tmp_path):
    station = Station(tmp_path)
    start_ns = three_days_with_a_power_loss_and_a_full_card(station)
    record = station.record()
    assert record.start_ns == start_ns
    assert abs(record.end_ns - (start_ns + 3 * DAY)) <= HEARTBEAT_S * NS
    assert record.end_kind is None          # not picked up: the last time known running
    gaps = {g.why: g for g in record.gaps}
    assert [g.why for g in record.gaps] == [NOT_RUNNING, STORAGE_FULL]
    assert abs(gaps[NOT_RUNNING].seconds - 6 * 3600) <= HEARTBEAT_S
    assert abs(gaps[STORAGE_FULL].seconds - 2 * 3600) <= HEARTBEAT_S
    assert abs(record.effort_s - (3 * 86400 - 8 * 3600)) <= 2 * HEARTBEAT_S
    assert all(run.why in (CAPTURING, STORAGE_FULL) for run in record.runs)


def test_a_pickup_ends_the_deployment_and_a_new_id_ends_the_old_one(tmp_path):
    station = Station(tmp_path)
    station.start()
    station.run_for(HOUR)
    first = station.config.station.deployment_id
    redeployed = make_config(tmp_path, {"power": {"mode": "standby"},
                                        "station": {"deployment_id": "LOL-A017-2027-05"}})
    station.stop()
    station.start(redeployed)
    station.run_for(HOUR)
    picked_up_ns = station.clock.wall_ns()
    assert end_deployment(station.daemon.trap.store, "LOL-A017-2027-05", picked_up_ns)
    station.stop()
    store = Store(station.config.storage.root, 0, recover=False)
    try:
        old, new = deployment_record(store, first), deployment_record(store, "LOL-A017-2027-05")
    finally:
        store.close()
    assert old.end_kind == "redeployed" and old.end_ns <= new.start_ns
    assert new.end_kind == "pickup" and new.end_ns == picked_up_ns


def test_status_shows_the_open_deployment_and_deployment_end_closes_it(sim_queue, tmp_path):
    run = sim_queue()
    storage = copy_queue(run["storage"], tmp_path / "storage")
    status = trapd("status", "--config", run["config"], "--storage", storage).stdout
    deployment_id = make_config(tmp_path).station.deployment_id
    assert f"deployment: {deployment_id} from " in status and ", open, last known running" in status
    ended = trapd("deployment", "end", "--config", run["config"], "--storage", storage)
    assert f"deployment {deployment_id} ended now" in ended.stdout
    status = trapd("status", "--config", run["config"], "--storage", storage, "--json").stdout
    assert json.loads(status)["deployment"]["ended"] == "pickup"
    config = write_config(tmp_path / "config.yaml", tmp_path, {"storage": {"root": str(storage)}})
    checked = trapd("check-config", config).stdout
    assert f"deployment {deployment_id}: ENDED (pickup) on this card" in checked


def package_tables(package):
    def rows(name):
        with open(package / f"{name}.csv", newline="") as f:
            return list(csv.DictReader(f))
    return rows("deployments"), rows("media")


def validate(package):
    result = subprocess.run([sys.executable, str(camtrap_validator()), str(package),
                             "--strict", "--check-media"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def effort_from_package(deployment: dict) -> float:
    """Operating days as an analysis script would compute them from the package: the
    deployment's span minus the `from/to why` gaps its comments list (README)."""
    start = datetime.fromisoformat(deployment["deploymentStart"])
    end = datetime.fromisoformat(deployment["deploymentEnd"])
    gaps = re.findall(r"(\S+)/(\S+) [a-z_]+", deployment["deploymentComments"])
    lost = sum((datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
               for a, b in gaps)
    return ((end - start).total_seconds() - lost) / 86400


def test_the_package_spans_the_whole_deployment_with_its_gaps_and_effort(tmp_path):
    station = Station(tmp_path, {"filter": {"enabled": False}})
    start_ns = three_days_with_a_power_loss_and_a_full_card(station)
    config = write_config(tmp_path / "config.yaml", tmp_path,
                          {"power": {"mode": "standby"}, "filter": {"enabled": False}})
    package = tmp_path / "package"
    trapd("export", "--camtrap-dp", package, "--config", config)
    validate(package)
    [deployment], media = package_tables(package)
    assert media and all(m["timestamp"][:10] == media[0]["timestamp"][:10] for m in media)
    tz = station.config.time.tz
    start = datetime.fromisoformat(deployment["deploymentStart"])
    end = datetime.fromisoformat(deployment["deploymentEnd"])
    assert start == datetime.fromtimestamp(start_ns // NS, tz)
    assert abs((end - start).total_seconds() - 3 * 86400) <= HEARTBEAT_S
    assert "not_running" in deployment["deploymentComments"]
    assert "storage_full" in deployment["deploymentComments"]
    assert abs(effort_from_package(deployment) - (3 - 8 / 24)) <= HEARTBEAT_S / 86400 * 2
    # --since changes which images, never the deployment
    later = tmp_path / "later"
    trapd("export", "--camtrap-dp", later, "--config", config, "--since",
          media[-1]["timestamp"])
    [again], _ = package_tables(later)
    assert (again["deploymentStart"], again["deploymentEnd"]) == (
        deployment["deploymentStart"], deployment["deploymentEnd"])


def test_a_deployment_with_no_images_exports_as_a_valid_package(tmp_path):
    station = Station(tmp_path)
    station.start()
    station.run_for(2 * DAY)
    station.stop()
    config = write_config(tmp_path / "config.yaml", tmp_path, {"power": {"mode": "standby"}})
    package = tmp_path / "empty"
    result = trapd("export", "--camtrap-dp", package, "--config", config)
    assert "0 images, 0 events" in result.stdout
    validate(package)
    [deployment], media = package_tables(package)
    assert media == []
    assert abs(effort_from_package(deployment) - 2) <= HEARTBEAT_S / 86400


REDEPLOYED = {"power": {"mode": "standby"}, "filter": {"enabled": False},
              "station": {"deployment_id": "LOL-A017-2027-05"}}


def redeployed_station(tmp_path, events_after: int) -> Station:
    """3 h of the shipped deployment with one event, then 3 h re-deployed as
    LOL-A017-2027-05 with `events_after` events."""
    station = Station(tmp_path, {"filter": {"enabled": False}})
    station.start()
    station.pir_pulses(1, HOUR)
    station.run_for(3 * HOUR)
    station.stop()
    station.start(make_config(tmp_path, REDEPLOYED))
    station.pir_pulses(events_after, HOUR)
    station.run_for(3 * HOUR)
    station.stop()
    return station


def test_export_all_writes_every_deployment_on_the_card(tmp_path):
    redeployed_station(tmp_path, events_after=0)
    config = write_config(tmp_path / "config.yaml", tmp_path,
                          {"station": {"deployment_id": "LOL-A017-2027-05"}})
    out = tmp_path / "all"
    trapd("export", "--camtrap-dp", out, "--all", "--config", config)
    first, second = out / "LOL-A017-2026-11", out / "LOL-A017-2027-05"
    for package in (first, second):
        validate(package)
    assert len(package_tables(first)[1]) > 0 and package_tables(second)[1] == []
    assert package_tables(first)[0][0]["deploymentEnd"] <= package_tables(second)[0][0][
        "deploymentStart"]


def test_offload_after_a_redeployment_writes_a_valid_package_for_each_deployment(tmp_path):
    redeployed_station(tmp_path, events_after=1)
    config = write_config(tmp_path / "config.yaml", tmp_path, REDEPLOYED)
    drive = tmp_path / "drive"
    drive.mkdir()
    result = trapd("offload", drive, "--config", config)
    for deployment_id in ("LOL-A017-2026-11", "LOL-A017-2027-05"):
        package = drive / deployment_id
        validate(package)
        [deployment], media = package_tables(package)
        assert deployment["deploymentID"] == deployment_id
        on_drive = sorted(p.name for p in (package / "media").iterdir())
        assert on_drive == sorted(m["fileName"] for m in media) and on_drive, deployment_id
    assert "not written" not in result.stdout + result.stderr


def test_deployment_start_writes_the_new_id_and_position_into_the_config_keeping_comments(
        tmp_path):
    station = Station(tmp_path)
    station.start()
    station.run_for(HOUR)
    station.stop()
    config = write_config(tmp_path / "config.yaml", tmp_path, {"power": {"mode": "standby"}})
    shipped = DEFAULT_CONFIG_PATH.read_text()
    config.write_text(shipped.replace("root: ", f"root: {tmp_path / 'storage'}  # was: ", 1))
    before = config.read_text()
    refused = trapd("deployment", "start", "LOL-A017-2026-11", "--config", config, check=False)
    assert refused.returncode != 0 and "already ran on this card" in refused.stderr
    bad = trapd("deployment", "start", "LOL A017", "--config", config, check=False)
    assert bad.returncode != 0 and "config.yaml:25: station.deployment_id" in bad.stderr
    assert config.read_text() == before                      # nothing written on a mistake
    trapd("deployment", "start", "LOL-A017-2027-05", "--latitude", "43.2", "--longitude",
          "131.6", "--config", config)
    after = config.read_text()
    assert (tmp_path / "config.yaml.previous").read_text() == before
    assert [l for l in after.splitlines() if l.lstrip().startswith("#")] == \
        [l for l in before.splitlines() if l.lstrip().startswith("#")]
    checked = trapd("check-config", config).stdout
    assert "deployment LOL-A017-2027-05: new on this card" in checked
    assert "location 43.2, 131.6" in checked


def test_deployment_start_on_a_card_that_cannot_take_the_file_changes_nothing(
        tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text(DEFAULT_CONFIG_PATH.read_text())
    before = config.read_text()

    def full_card(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_card)
    with pytest.raises(ConfigEditError) as refused:
        set_values(config, {"station.deployment_id": "LOL-A017-2027-05"})
    assert "No space left on device; it is unchanged" in str(refused.value)
    assert config.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "config.yaml.previous"]
