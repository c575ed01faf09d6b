"""Deployments as records, and when the trap could capture: the trapping effort.

Capture-recapture and occupancy models divide detections by the days each camera
really worked (camtrapR's `cameraOperation`, camtraptor's `get_cam_op`). So a
deployment's start and end come from the trap, never from its images: **start**
is when the daemon first armed with this deployment id, **end** is the pickup
(`trapd deployment end`) or, until then, the last time the trap was known
running (flagged as such). In between, the daemon writes a heartbeat at most
every HEARTBEAT_S (and at once on a change) into *runs*: periods in one state,
`capturing` or why not (`camera_unavailable`, `storage_full`, `storage_link`,
`outside_schedule`). Time covered by no run is time the daemon was not running
(a power loss, a reboot, a stop). The effort is the sum of the capturing runs,
exact to one heartbeat interval.

Both live in queue.db (tables `deployments` and `runs`). An index rebuilt from
the photos after damage has neither: the photos' tags carry no heartbeats.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3

from trapd.config import Config
from trapd.health import CAMERA_UNAVAILABLE, STORAGE_FULL, STORAGE_LINK

HEARTBEAT_S = 60.0
NS = 1_000_000_000
CAPTURING = "capturing"
OUTSIDE_SCHEDULE = "outside_schedule"
NOT_RUNNING = "not_running"
# Health states that stop the trap from capturing, most telling first.
BLOCKING_STATES = (CAMERA_UNAVAILABLE, STORAGE_FULL, STORAGE_LINK)
PICKUP = "pickup"
REDEPLOYED = "redeployed"

SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    deployment_id TEXT PRIMARY KEY,
    station_id TEXT NOT NULL,
    latitude REAL, longitude REAL, elevation_m REAL, uncertainty_m INTEGER,
    camera_height_m REAL, camera_heading_deg INTEGER, camera_tilt_deg INTEGER,
    camera_id TEXT, camera_model TEXT,
    start_wall_ns INTEGER NOT NULL,
    end_wall_ns INTEGER,
    end_kind TEXT
);
CREATE TABLE IF NOT EXISTS clock_steps (
    id INTEGER PRIMARY KEY,
    deployment_id TEXT NOT NULL,
    after_wall_ns INTEGER NOT NULL,
    step_ns INTEGER NOT NULL,
    source TEXT NOT NULL,
    confirmed_by TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    deployment_id TEXT NOT NULL,
    state TEXT NOT NULL,
    from_wall_ns INTEGER NOT NULL,
    to_wall_ns INTEGER NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class Period:
    from_ns: int
    to_ns: int
    why: str

    @property
    def seconds(self) -> float:
        return (self.to_ns - self.from_ns) / NS


@dataclasses.dataclass(frozen=True)
class Deployment:
    deployment_id: str
    station_id: str
    location: dict
    camera: dict                     # mount: camera_height_m, camera_heading_deg, camera_tilt_deg
    camera_id: str | None
    camera_model: str | None
    start_ns: int
    end_ns: int
    end_kind: str | None             # pickup, redeployed, or None: open (end = last known running)
    runs: tuple[Period, ...]
    clock_steps: tuple[dict, ...] = ()   # the wall clock set by a person (clock_steps table)

    @property
    def gaps(self) -> list[Period]:
        """Every period of the deployment in which the trap could not capture."""
        gaps, at = [], self.start_ns
        for run in self.runs:
            if run.from_ns > at:
                gaps.append(Period(at, run.from_ns, NOT_RUNNING))
            if run.why != CAPTURING:
                gaps.append(Period(max(at, run.from_ns), run.to_ns, run.why))
            at = max(at, run.to_ns)
        if self.end_ns > at:
            gaps.append(Period(at, self.end_ns, NOT_RUNNING))
        return [g for g in _merged(gaps) if g.to_ns > g.from_ns]

    @property
    def effort_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS - sum(g.seconds for g in self.gaps)


def _create_tables(db: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _merged(gaps: list[Period]) -> list[Period]:
    merged: list[Period] = []
    for gap in gaps:
        if merged and merged[-1].why == gap.why and gap.from_ns <= merged[-1].to_ns:
            merged[-1] = Period(merged[-1].from_ns, max(merged[-1].to_ns, gap.to_ns), gap.why)
        else:
            merged.append(gap)
    return merged


def capture_state(trap) -> str:
    """What the trap can do now: capture, or the reason it cannot."""
    for state in BLOCKING_STATES:
        if trap.store.health.is_set(state):
            return state
    if trap.operating.mode() == "idle":
        return OUTSIDE_SCHEDULE
    return CAPTURING


class OperationLog:
    """The daemon's record of its deployment and its runs, written through the store
    (so a full card costs heartbeats, never the trap)."""

    def __init__(self, store, clock, interval_s: float = HEARTBEAT_S) -> None:
        self._store = store
        self._clock = clock
        self._interval_ns = int(interval_s * NS)
        self._run_id: int | None = None
        self._state: str | None = None
        self._written_ns = 0
        self._deployment_id: str | None = None
        store.write_index(_create_tables)

    def arm(self, config: Config, camera_id: str = "", camera_model: str = "") -> None:
        """The daemon starts (or reloads) with this deployment: record it if new,
        end any other deployment still open on this card (it was re-deployed).
        `camera_id`/`camera_model` as the photos' EXIF gives them (serial, Make-Model)."""
        now = self._clock.wall_ns()
        station = config.station
        self._deployment_id = station.deployment_id

        def record(db: sqlite3.Connection) -> None:
            for other, in db.execute(
                    "SELECT deployment_id FROM deployments WHERE end_kind IS NULL "
                    "AND deployment_id != ?", (station.deployment_id,)).fetchall():
                last = db.execute("SELECT MAX(to_wall_ns) FROM runs WHERE deployment_id = ?",
                                  (other,)).fetchone()[0]
                db.execute("UPDATE deployments SET end_wall_ns = ?, end_kind = ? "
                           "WHERE deployment_id = ?", (last or now, REDEPLOYED, other))
            loc, cam = station.location, station.camera
            db.execute(
                "INSERT OR IGNORE INTO deployments (deployment_id, station_id, latitude, "
                "longitude, elevation_m, uncertainty_m, camera_height_m, camera_heading_deg, "
                "camera_tilt_deg, start_wall_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (station.deployment_id, station.station_id, loc.latitude, loc.longitude,
                 loc.elevation_m, loc.uncertainty_m, cam.height_m, cam.heading_deg,
                 cam.tilt_deg, now))
            if camera_model:        # known once the camera opened
                db.execute("UPDATE deployments SET camera_id = ?, camera_model = ? "
                           "WHERE deployment_id = ?",
                           (camera_id, camera_model, station.deployment_id))

        self._store.write_index(record)
        self._state = None          # a new run from now

    def beat(self, state: str) -> None:
        """Note the trap's state now: a new run on a change, else at most one write
        per heartbeat interval extending the current run."""
        now = self._clock.wall_ns()
        if self._deployment_id is None:
            return
        stepped_back = now < self._written_ns     # the wall clock was set back: a new run
        if state == self._state and 0 <= now - self._written_ns < self._interval_ns:
            return
        if state == self._state and self._run_id is not None and not stepped_back:
            run_id = self._run_id
            self._store.write_index(lambda db: db.execute(
                "UPDATE runs SET to_wall_ns = ? WHERE id = ?", (now, run_id)))
        else:
            self._run_id = self._store.write_index(lambda db: self._new_run(db, state, now))
            self._state = state
        self._written_ns = now

    def _new_run(self, db: sqlite3.Connection, state: str, now: int) -> int:
        if self._run_id is not None and now >= self._written_ns:   # ends where the next starts
            db.execute("UPDATE runs SET to_wall_ns = ? WHERE id = ?", (now, self._run_id))
        return db.execute(
            "INSERT INTO runs (deployment_id, state, from_wall_ns, to_wall_ns) "
            "VALUES (?, ?, ?, ?)", (self._deployment_id, state, now, now)).lastrowid

    def clock_step(self, after_wall_ns: int, step_ns: int, source: str, confirmed_by: str) -> None:
        """The wall clock was set by `step_ns` (e.g. from the setup page, confirmed by
        a person): recorded, and the current run ends where the old time stood, so
        no run spans the step (the effort stays honest)."""
        before = after_wall_ns - step_ns
        run_id, deployment_id = self._run_id, self._deployment_id

        def record(db: sqlite3.Connection) -> None:
            if run_id is not None:
                db.execute("UPDATE runs SET to_wall_ns = MAX(to_wall_ns, ?) WHERE id = ?",
                           (before, run_id))
            db.execute("INSERT INTO clock_steps (deployment_id, after_wall_ns, step_ns, source, "
                       "confirmed_by) VALUES (?, ?, ?, ?, ?)",
                       (deployment_id or "", after_wall_ns, step_ns, source, confirmed_by))

        self._store.write_index(record)
        self._state = None          # a new run from the new time
        self._run_id = None

    def close(self) -> None:
        """The daemon stops: the current run lasts until now."""
        if self._state is not None:
            self._written_ns = 0
            self.beat(self._state)


def clock_steps(store) -> list[dict]:
    """The recorded wall-clock steps, oldest first."""
    try:
        rows = store.index.execute("SELECT deployment_id, after_wall_ns, step_ns, source, "
                                   "confirmed_by FROM clock_steps ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return []
    keys = ("deployment_id", "after_wall_ns", "step_ns", "source", "confirmed_by")
    return [dict(zip(keys, row)) for row in rows]


def end_deployment(store, deployment_id: str, wall_ns: int) -> bool:
    """The technician picked the trap up: the deployment ends now. False if unknown."""
    return bool(store.write_index(lambda db: db.execute(
        "UPDATE deployments SET end_wall_ns = ?, end_kind = ? WHERE deployment_id = ?",
        (wall_ns, PICKUP, deployment_id)).rowcount))


def deployment_record(store, deployment_id: str) -> Deployment | None:
    """The deployment as recorded, with its runs; None if this card never ran it."""
    db = store.index
    query = db.cursor()
    query.row_factory = sqlite3.Row
    try:
        record = query.execute("SELECT * FROM deployments WHERE deployment_id = ?",
                               (deployment_id,)).fetchone()
    except sqlite3.OperationalError:    # an index from before deployments were recorded
        return None
    if record is None:
        return None
    runs = tuple(Period(f, t, s) for s, f, t in db.execute(
        "SELECT state, from_wall_ns, to_wall_ns FROM runs WHERE deployment_id = ? "
        "ORDER BY from_wall_ns, id", (deployment_id,)))
    end = record["end_wall_ns"] or max([r.to_ns for r in runs], default=record["start_wall_ns"])
    steps = tuple(s for s in clock_steps(store) if s["deployment_id"] == deployment_id)
    return Deployment(
        deployment_id, record["station_id"],
        {k: record[k] for k in ("latitude", "longitude", "elevation_m", "uncertainty_m")},
        {k: record[k] for k in ("camera_height_m", "camera_heading_deg", "camera_tilt_deg")},
        record["camera_id"], record["camera_model"], record["start_wall_ns"], end,
        record["end_kind"], runs, steps)


def recorded_deployments(store) -> list[str]:
    try:
        return [r[0] for r in store.index.execute(
            "SELECT deployment_id FROM deployments ORDER BY start_wall_ns")]
    except sqlite3.OperationalError:
        return []


def gaps_text(deployment: Deployment, tz: dt.tzinfo, shift_ns: int = 0) -> str:
    """The gaps as a script can parse them: `from/to why` (ISO 8601), `, ` apart."""
    def iso(ns: int) -> str:
        return dt.datetime.fromtimestamp((ns + shift_ns) / NS, tz).isoformat(timespec="seconds")
    return ", ".join(f"{iso(g.from_ns)}/{iso(g.to_ns)} {g.why}" for g in deployment.gaps)


def as_deployed(config: Config, deployment: Deployment) -> Config:
    """`config` with the station as it was for `deployment` (its id, position and mount,
    as recorded), for exporting a deployment other than the current one. How much of
    the position leaves the card is still today's `publish`."""
    station = config.station
    location = dataclasses.replace(station.location, **{
        k: v for k, v in deployment.location.items() if v is not None or k == "elevation_m"})
    camera = dataclasses.replace(station.camera, height_m=deployment.camera["camera_height_m"],
                                 heading_deg=deployment.camera["camera_heading_deg"],
                                 tilt_deg=deployment.camera["camera_tilt_deg"])
    return dataclasses.replace(config, station=dataclasses.replace(
        station, deployment_id=deployment.deployment_id, station_id=deployment.station_id,
        location=location, camera=camera))
