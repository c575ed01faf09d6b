"""A deployment's start, end and gaps come from the trap's own record (heartbeats), not from
its images: the trapping effort an ecologist divides by."""

import json
from datetime import datetime, timezone

from gpiozero.pins.mock import MockFactory

from conftest import NS, copy_queue, make_config, trapd
from hw_sim.picamera2 import CameraRig
from hw_sim.scenario import Conditions, Scenario
from hw_sim.scene import Scene
from trapd.clock import VirtualClock
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
        hardware = Hardware(self.rig.picamera2_class, self.factory, self.clock)
        self.daemon = Daemon(None, self.config, build_trap(self.config, hardware))

    def run_for(self, ns):
        end = self.clock.monotonic_ns() + ns
        self.daemon.run(until=lambda: self.clock.monotonic_ns() >= end)

    def stop(self):
        close_trap(self.daemon.trap)
        self.factory.close()

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


def test_start_end_and_gaps_come_from_the_trap_not_from_images(tmp_path):
    station = Station(tmp_path)
    start_ns = station.clock.wall_ns()
    station.start()
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
