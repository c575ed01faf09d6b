"""The trap's health on one screen: what `trapd status` prints as its health
block, what the setup link's health() returns and the page shows, and what
picks the LED's status code.

What only the running daemon knows (day or night, power mode now) comes in a
`Now`; the rest is read from the storage root on a connection of its own,
read-only, so the setup link's thread never touches the trap's.

- days_left: images saved in the last 7 days (or since the first one, if
  sooner) per day, times their average size, against the space above the
  floor; None while no image was saved in that time.
- battery_trend_v_per_day: a least-squares line through the battery
  readings the trap already keeps, the fleet heartbeats in the telemetry
  outbox of the last 7 days; None without telemetry, with fewer than
  TREND_MIN_READINGS readings or under TREND_MIN_SPAN_S (the trap keeps no
  other battery history).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from trapd.config import Config
from trapd.sensors import SensorReadings
from trapd.status_led import status_code
from trapd.storage import DB_NAME, MB, NOT_OFFLOADED, ON_CARD

NS = 1_000_000_000
DAY_NS = 86400 * NS
RATE_DAYS = 7
TREND_MIN_READINGS = 3
TREND_MIN_SPAN_S = 6 * 3600
LAST_EVENTS = 5


@dataclass(frozen=True)
class Now:
    """The trap's state now, from the daemon (or, from `trapd status`, as config and sun say)."""

    wall_ns: int
    clock_synced: bool | None
    readings: SensorReadings
    degraded: dict              # state -> {"why": ..., ...} (trapd/health.py)
    night: bool
    power_mode: str             # streaming | standby | idle


def health_summary(config: Config, root: str | Path, now: Now) -> dict:
    root = Path(root)
    with _read_only(root / DB_NAME) as db:
        start_ns, end_ns, end_kind = _deployment_row(db, config.station.deployment_id)
        free_mb = shutil.disk_usage(root).free // MB
        battery_v = now.readings.battery_voltage_v
        low_v = config.power.battery_low_v
        summary = {
            "station_id": config.station.station_id,
            "deployment_id": config.station.deployment_id,
            "deployment_start": start_ns and _iso(start_ns, config),
            "deployment_end": end_ns and _iso(end_ns, config),     # set by a pickup
            "deployment_end_kind": end_kind,
            "clock_synced": now.clock_synced,
            "trap_wall_ns": now.wall_ns,
            "free_mb": free_mb,
            "days_left": _days_left(db, now.wall_ns, free_mb - config.storage.min_free_mb),
            "battery_v": battery_v,
            "battery_trend_v_per_day": _battery_trend(db, now.wall_ns) if config.fleet.enabled else None,
            "cpu_temperature_c": now.readings.cpu_temperature_c,
            "ambient_temperature_c": now.readings.ambient_temperature_c,
            "images_not_offloaded": _count_frames(db, NOT_OFFLOADED),
            "images_not_synced": _not_synced(db) if config.fleet.enabled and config.fleet.sync.enabled else None,
            "fleet_link": _fleet_link(db, config, now.wall_ns),
            "degraded": {state: about.get("why") for state, about in now.degraded.items()},
            "day_night": "night" if now.night else "day",
            "power_mode": now.power_mode,
            "last_events": _last_events(db, config),
        }
    battery_low = battery_v is not None and low_v is not None and battery_v < low_v
    summary["led_status"] = status_code(now.degraded, battery_low, now.clock_synced)
    return summary


def summary_lines(s: dict) -> list[str]:
    """The health block as `trapd status` prints it."""
    def show(value, unit="", none="n/a"):
        return none if value is None else f"{value:g}{unit}"

    synced = {True: "synchronised", False: "NOT synchronised", None: "sync unknown"}[s["clock_synced"]]
    trap_time = dt.datetime.fromtimestamp(s["trap_wall_ns"] / NS, dt.timezone.utc)
    lines = [
        f"health: {s['led_status']} (LED code)",
        f"  station {s['station_id']}, deployment {s['deployment_id']} from "
        f"{s['deployment_start'] or 'not recorded on this card'}"
        + (f", ended ({s['deployment_end_kind']}) {s['deployment_end']}"
           if s.get("deployment_end_kind") else ""),
        f"  clock: {trap_time:%Y-%m-%d %H:%M:%S} UTC, {synced}",
        f"  space: {s['free_mb']} MB free, "
        + ("days left: unknown (no images in the last 7 days)" if s["days_left"] is None
           else f"about {s['days_left']:g} days left at the last 7 days' rate"),
        f"  battery: {show(s['battery_v'], ' V')}, trend "
        f"{show(s['battery_trend_v_per_day'], ' V/day', 'unknown')}",
        f"  temperatures: CPU {show(s['cpu_temperature_c'], ' °C')}, "
        f"ambient {show(s['ambient_temperature_c'], ' °C')}",
        f"  images not offloaded: {s['images_not_offloaded']}, not synced: "
        f"{show(s['images_not_synced'], none='(no sync)')}; fleet link: {s['fleet_link']}",
        f"  now: {s['day_night']}, {s['power_mode']}",
    ]
    lines += [f"  DEGRADED {state}: {why}" for state, why in s["degraded"].items()]
    for e in s["last_events"]:
        lines.append(f"  event {e['event_id']} {e['time']} {e['trigger']}: {e['kept']} kept, "
                     f"{len(e['files'])} file(s)")
    return lines


class _read_only:
    """A read-only connection to queue.db (None-safe: no index yet reads as empty)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection | None:
        if self._path.exists():
            self._db = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=5)
        return self._db

    def __exit__(self, *_) -> None:
        if self._db is not None:
            self._db.close()


def _query(db, sql: str, args=()) -> list:
    if db is None:
        return []
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:      # a table this card never had (no fleet, old index)
        return []


def _iso(wall_ns: int, config: Config) -> str:
    return dt.datetime.fromtimestamp(wall_ns / NS, config.time.tz).isoformat(timespec="seconds")


def _deployment_row(db, deployment_id: str) -> tuple[int | None, int | None, str | None]:
    """Its start, and its end and end_kind once it ended (pickup, redeployed)."""
    rows = _query(db, "SELECT start_wall_ns, end_wall_ns, end_kind FROM deployments "
                      "WHERE deployment_id = ?", (deployment_id,))
    return rows[0] if rows else (None, None, None)


def _days_left(db, now_ns: int, usable_mb: float) -> float | None:
    since = now_ns - RATE_DAYS * DAY_NS
    rows = _query(db, "SELECT COUNT(*), MIN(capture_wall_ns), AVG(size_bytes) FROM frames "
                      "WHERE file IS NOT NULL AND capture_wall_ns >= ?", (since,))
    count, first, average = rows[0] if rows else (0, None, None)
    if not count:
        return None
    days = max((now_ns - first) / DAY_NS, 1 / 24)     # at least an hour: no rate from one burst alone
    per_day_mb = count / days * average / MB
    return round(max(usable_mb, 0) / per_day_mb, 1)


def _battery_trend(db, now_ns: int) -> float | None:
    readings = []
    for created, payload in _query(db, "SELECT created_ns, payload FROM telemetry_outbox "
                                       "WHERE topic LIKE '%/heartbeat' AND created_ns >= ?",
                                   (now_ns - RATE_DAYS * DAY_NS,)):
        volts = json.loads(payload).get("battery_v")
        if volts is not None:
            readings.append((created / DAY_NS, volts))
    if len(readings) < TREND_MIN_READINGS:
        return None
    days = [d for d, _ in readings]
    if (max(days) - min(days)) * 86400 < TREND_MIN_SPAN_S:
        return None
    mean_d = sum(days) / len(days)
    mean_v = sum(v for _, v in readings) / len(readings)
    slope = (sum((d - mean_d) * (v - mean_v) for d, v in readings)
             / sum((d - mean_d) ** 2 for d in days))
    return round(slope, 3)


def _count_frames(db, states: tuple[str, ...]) -> int:
    marks = ",".join("?" * len(states))
    rows = _query(db, f"SELECT COUNT(*) FROM frames WHERE file IS NOT NULL AND state IN ({marks})",
                  states)
    return rows[0][0] if rows else 0


def _not_synced(db) -> int:
    marks = ",".join("?" * len(ON_CARD))
    rows = _query(db, "SELECT COUNT(*) FROM frames f LEFT JOIN upload_state u ON u.media_id = "
                      f"f.media_id WHERE f.file IS NOT NULL AND f.state IN ({marks}) "
                      "AND u.verified_ns IS NULL", ON_CARD)
    return rows[0][0] if rows else _count_frames(db, ON_CARD)


def _fleet_link(db, config: Config, now_ns: int) -> str:
    """Judged by what got through: a message the broker acknowledged (or an
    image the store verified) within two heartbeat (sync) intervals."""
    fleet = config.fleet
    if not fleet.enabled:
        return "off"
    delivered = _query(db, "SELECT MAX(delivered_ns) FROM telemetry_outbox")
    verified = _query(db, "SELECT MAX(verified_ns) FROM upload_state")
    last = max([r[0][0] for r in (delivered, verified) if r and r[0][0]], default=None)
    within_s = 2 * max(fleet.telemetry.heartbeat_interval_s if fleet.telemetry.broker_url else 0,
                       fleet.sync.interval_s if fleet.sync.enabled else 0)
    if last is None:
        return "down: nothing delivered yet"
    if now_ns - last <= within_s * NS:
        return "connected"
    return f"down: nothing delivered since {_iso(last, config)}"


def _last_events(db, config: Config) -> list[dict]:
    events = []
    for number, event_id, trigger, wall_ns in _query(
            db, "SELECT number, event_id, trigger, trigger_wall_ns FROM events "
                "ORDER BY number DESC LIMIT ?", (LAST_EVENTS,)):
        frames = _query(db, "SELECT kept, file FROM frames WHERE event_number = ? ORDER BY sequence",
                        (number,))
        events.append({"event_id": event_id, "time": _iso(wall_ns, config), "trigger": trigger,
                       "kept": sum(k for k, _ in frames),
                       "files": [f for _, f in frames if f is not None]})
    return events


def now_from_trap(trap) -> Now:
    """The running trap's state (from the setup link's thread: reads only)."""
    return Now(trap.clock.wall_ns(), trap.clock.is_synchronised(), trap.sensors.read(),
               trap.store.health.snapshot()["degraded"], trap.operating.day_night.night,
               trap.operating.current_mode())


def now_from_files(config: Config, root: str | Path, wall_ns: int, clock_synced: bool | None,
                   readings: SensorReadings) -> Now:
    """For `trapd status` (another process): degraded states as the daemon
    last wrote them, day or night by the sun, the power mode by the schedule."""
    from trapd.health import read_health
    from trapd.schedule import Schedule

    where = config.station.location
    schedule = Schedule(config.schedule.windows, where.latitude, where.longitude, config.time.tz)
    window = schedule.window_at(wall_ns)
    mode = "idle" if window is None else (window.mode or config.power.mode)
    return Now(wall_ns, clock_synced, readings, read_health(root)["degraded"],
               schedule.is_night(wall_ns), mode)


def led_status(trap, config: Config) -> str:
    """The LED's status code now (cheap: no index queries; from the trap's thread or a pin's)."""
    volts, low_v = trap.operating.last_battery_v, config.power.battery_low_v
    return status_code(trap.store.health.snapshot()["degraded"],
                       volts is not None and low_v is not None and volts < low_v,
                       trap.clock.is_synchronised())
