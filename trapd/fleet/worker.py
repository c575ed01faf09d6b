"""The background drainer: heartbeats, outbox draining and image sync in one
thread beside the capture loop.

The capture thread only ever calls `on_event`, which is one local INSERT into
the outbox; all network work (connect, publish, upload) happens here, on its
own SQLite connections, so a stalled link never delays a capture.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from trapd.config import Config
from trapd.fleet.outbox import FleetDb
from trapd.fleet.pacing import SyncPacing
from trapd.fleet.secrets import FleetError
from trapd.fleet.telemetry import Telemetry, event_payload, heartbeat_payload, topic
from trapd.storage import Store
from trapd.timekeeping import kernel_clock_synchronised

log = logging.getLogger(__name__)

FIRMWARE_VERSION = "0.1.0"
TICK_S = 1.0


class FleetWorker:
    def __init__(self, config: Config, storage_root: str, syncer=None, telemetry: Telemetry | None = None,
                 readings: Callable[[], object] = lambda: None,
                 wall_ns: Callable[[], int] = time.time_ns,
                 clock_synced: Callable[[], bool | None] = kernel_clock_synchronised,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.station_id = config.station.station_id
        self.db = FleetDb(storage_root)
        self.store = Store(storage_root, config.storage.min_free_mb, recover=False)
        self.syncer = syncer
        self.make_syncer: Callable[[], object] | None = None
        self.telemetry = telemetry
        self.readings = readings
        self.wall_ns = wall_ns
        self.clock_synced = clock_synced
        self.monotonic = monotonic
        self.commands = None        # a CommandRunner, when the broker may send commands
        self.pacing = SyncPacing(config.fleet.sync.interval_s)
        self._next_heartbeat = self._next_sync = 0.0
        self._problems_said: set[str] = set()
        self._stop = threading.Event()
        self._heartbeat_now = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trapd-fleet", daemon=True)

    # -- called from the capture thread: local writes only -------------------
    def on_event(self, report) -> None:
        self.db.enqueue(self.station_id, topic(self.station_id, "event"),
                        event_payload(self.station_id, self.wall_ns(), report), self.wall_ns())

    def on_command(self, command: str, payload: bytes) -> None:
        """From the MQTT thread (trapd/fleet/commands.py)."""
        if self.commands:
            self.commands.submit(command, payload)
        elif command == "status":
            self._heartbeat_now.set()

    def sync_soon(self) -> None:
        self._next_sync = 0.0

    def queue_heartbeat(self) -> str:
        payload = heartbeat_payload(self.station_id, FIRMWARE_VERSION, self.wall_ns(),
                                    self.store.status(), self._queue_depth(), self.readings(),
                                    self.clock_synced(), self.sync_state())
        # A message the broker refused (MQTT 5 reason) stays queued: say so.
        payload["telemetry_refused"] = self.telemetry.refused if self.telemetry else None
        payload["deployment"] = self.config.station.deployment_id
        return self.db.enqueue(self.station_id, topic(self.station_id, "heartbeat"), payload,
                               self.wall_ns())

    def _queue_depth(self) -> int:
        """Images on the card not yet verified in the object store."""
        from trapd.storage import ON_CARD
        return self.db.unsynced_count(ON_CARD)

    # -- the thread ------------------------------------------------------------
    def start(self) -> "FleetWorker":
        self._thread.start()
        return self

    def settle(self, timeout_s: float) -> dict:
        """Wait (real time) until every queued message is delivered and every
        image synced, or `timeout_s`; then stop. What is left, for a report."""
        from trapd.storage import ON_CARD
        deadline = time.monotonic() + timeout_s
        self._heartbeat_now.set()
        while time.monotonic() < deadline and (self.db.outbox_depth() or (
                self.make_syncer and self.db.unsynced_count(ON_CARD) - self.db.set_aside_count() > 0)):
            self._stop.wait(0.2)
        left = {"messages_undelivered": self.db.outbox_depth(),
                "images_not_synced": self.db.unsynced_count(ON_CARD),
                "images_set_aside": self.db.set_aside_count(), "sync_paused": self.pacing.paused}
        self.stop()
        return left

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.commands:
            self.commands.close()
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("fleet: a transfer is still in progress; it resumes at the next start")
            return
        if self.telemetry:
            self.telemetry.close()
        self.db.close()
        self.store.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.telemetry:
                self._guarded(self._telemetry_step)
            if self.commands:
                self._guarded(self.commands.run_pending)
            if self.syncer or self.make_syncer:
                self._guarded(self._sync_step)
            self._stop.wait(TICK_S)

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run one step; the link must never take the trap down."""
        try:
            step()
        except FleetError as exc:          # e.g. clock not yet synchronised: said once
            if str(exc) not in self._problems_said:
                log.error("fleet: %s", exc)
                self._problems_said.add(str(exc))
        except Exception:
            log.exception("fleet: drainer error; retrying")

    def _telemetry_step(self) -> None:
        now = self.monotonic()
        if now >= self._next_heartbeat or self._heartbeat_now.is_set():
            self._heartbeat_now.clear()
            self.queue_heartbeat()
            self._next_heartbeat = now + self.config.fleet.telemetry.heartbeat_interval_s
        self.telemetry.drain(timeout_s=5.0)

    def _sync_step(self) -> None:
        now = self.monotonic()
        if now < self._next_sync:
            return
        # Due again after interval_s whatever happens below (a key file that cannot be
        # read, an error nobody expected): never a retry on every tick.
        self._next_sync = now + self.config.fleet.sync.interval_s
        if self.syncer is None:
            self.syncer = self.make_syncer()
        try:
            result = self.syncer.run_once()
        except (FleetError, OSError, ValueError, RuntimeError) as exc:
            self._next_sync = self.pacing.after_error(exc, self.monotonic())
            return
        self._next_sync = self.pacing.after_run(result, self.monotonic())

    def sync_state(self) -> dict:
        """For the heartbeat: paused (and why) or not, images set aside."""
        return {"paused": self.pacing.paused, "failed_attempts": self.pacing.failures,
                "set_aside": self.db.set_aside_count()}


def start_fleet(config: Config, trap,
                clock_synced: Callable[[], bool | None] = kernel_clock_synchronised,
                config_path: str | None = None,
                request_reload: Callable[[], None] | None = None) -> FleetWorker:
    """Build telemetry and sync from config.fleet, hook the trap's events, start the thread.
    `config_path` and `request_reload` (SIGHUP's): the `config` command may change the file."""
    from trapd.fleet.commands import CommandRunner
    from trapd.fleet.sync import Syncer, s3_client

    root = str(trap.store.root)
    worker = FleetWorker(config, root, readings=lambda: trap.sensors.read(),
                         clock_synced=clock_synced)
    if config.fleet.telemetry.broker_url:
        worker.telemetry = Telemetry(config.station.station_id, config.fleet.telemetry, worker.db,
                                     FIRMWARE_VERSION, clock_synced=clock_synced,
                                     on_command=worker.on_command)
        worker.commands = CommandRunner(worker, trap, config_path, request_reload)
    if config.fleet.sync.enabled:
        # Built in the thread: a bad key file or an unsynchronised clock is logged, never fatal.
        worker.make_syncer = lambda: Syncer(
            config, worker.store, worker.db, s3_client(config, clock_synced),
            battery_v=lambda: trap.sensors.read().battery_voltage_v)
    attach(worker, trap)
    return worker.start()


def attach(worker: FleetWorker, trap) -> None:
    """Queue an event summary for every finished event (after the trap's own callback)."""
    previous = trap.on_event

    def on_event(report) -> None:
        if previous:
            previous(report)
        worker.on_event(report)

    trap.on_event = on_event
