"""`trapd status`: the card's queue, the station now and the setup page's health
block; and `open_store`, how every command that reads the queue opens it (as a
second reader beside a running daemon: no start-up recovery)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from trapd.cli_deployment import deployment_status
from trapd.errors import StorageError

EXIT_OK = 0


def open_store(args, config=None):
    from trapd.config import load_config
    from trapd.storage import Store

    storage = (config or load_config(args.config)).storage
    root = args.storage or storage.root
    if not (Path(root) / "queue.db").exists():
        raise StorageError(f"no image queue at {root} (nothing recorded yet, or wrong --storage)")
    return Store(root, storage.min_free_mb, recover=False)


def status_command(args) -> int:
    from trapd.config import load_config
    config = load_config(args.config)
    store = open_store(args, config)
    try:
        status = store.status()
        status["deployment"] = deployment_status(store, config)
    finally:
        store.close()
    status.update(_station_now(config))
    status["health"] = _health(config, status["root"], status["sensors"])
    if args.json:
        print(json.dumps(status, indent=1))
        return EXIT_OK
    print(f"queue at {status['root']}")
    print(f"  events: {_counts(status['events'])}")
    print(f"  frames: {_counts(status['frames'])}")
    if status["deployment"]:
        d = status["deployment"]
        state = f"ended {d['end']} ({d['ended']})" if d["ended"] else \
            f"open, last known running {d['end']}"
        print(f"  deployment: {d['deployment_id']} from {d['start']}, {state}; "
              f"{d['effort_days']} days operating, {d['gaps']} gaps")
    if status["last_event"]:
        print(f"  last event: {status['last_event']['event_id']} ({status['last_event']['trigger']})")
    floor_note = " BELOW FLOOR: not saving" if status["below_floor"] else ""
    print(f"  free space: {status['free_mb']} MB (floor {status['min_free_mb']} MB){floor_note}")
    for state, about in status["degraded"].items():
        print(f"  DEGRADED {state}: {about['why']}")
    if status["repairs"]:
        print(f"  last repair: {status['repairs'][-1]['what']}")
    print(f"  sensors: {_readings_text(status['sensors'])}")
    print(f"  schedule: {status['schedule']}")
    from trapd.health_summary import summary_lines
    print("\n".join(summary_lines(status["health"])))
    return EXIT_OK


def _health(config, root: str, readings: dict) -> dict:
    """The health block the setup page shows (trapd/health_summary.py)."""
    from trapd.health_summary import health_summary, now_from_files
    from trapd.sensors import SensorReadings
    from trapd.timekeeping import kernel_clock_synchronised
    now = now_from_files(config, root, time.time_ns(), kernel_clock_synchronised(),
                         SensorReadings(**readings))
    return health_summary(config, root, now)


def _station_now(config) -> dict:
    """Sensor readings and the schedule window, read now (None: sensor absent or unreadable)."""
    import dataclasses

    from trapd.daemon import sensors_from
    from trapd.schedule import Schedule

    sensors = sensors_from(config)
    try:
        readings = dataclasses.asdict(sensors.read())
    finally:
        sensors.close()
    where = config.station.location
    schedule = Schedule(config.schedule.windows, where.latitude, where.longitude, config.time.tz)
    window = schedule.window_at(time.time_ns())
    if not config.schedule.windows:
        text = f"always operating ({config.power.mode})"
    elif window is None:
        text = "idle (outside every window)"
    else:
        text = f"in window {window.start}-{window.end} ({window.mode or config.power.mode})"
    return {"sensors": readings, "schedule": text,
            "night_now": schedule.is_night(time.time_ns())}


def _readings_text(readings: dict) -> str:
    def show(value, unit):
        return "n/a" if value is None else f"{value:g} {unit}"
    return (f"CPU {show(readings['cpu_temperature_c'], '°C')}, "
            f"ambient {show(readings['ambient_temperature_c'], '°C')}, "
            f"battery {show(readings['battery_voltage_v'], 'V')}")


def _counts(by_state: dict) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(by_state.items())) or "none"
