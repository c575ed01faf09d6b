"""Our Camtrap DP packages read by someone else's code, the way an ecologist's analysis would.

The schema validator (../shared/camtrap-dp/validate.py) says a package is well formed; this
says it is *usable*: read with readers that are not trapd's,

- `camtrapdp` (PyPI): its dataclasses take a table's row as keyword arguments, so a column
  that Camtrap DP 1.0 does not define, or one it defines that we left out, fails to load;
- `frictionless` with the standard's own table schemas (the local copies beside validate.py):
  typed rows, datetimes parsed by the schema's format, not by us;

then an effort matrix computed like camtrapR's `cameraOperation` (per deployment, per calendar
day at the station, the fraction of the day the camera was operating: deploymentStart to
deploymentEnd minus the problem periods listed in deploymentComments), and the checks an
ecologist does first: every station is there, even one without a detection; the effort is what
the trap recorded; every image belongs to a deployment and to an event (the detection it is
evidence of), and no detection falls on a day the camera was not working.

Each check is a function that returns the problems it finds; the last tests feed it damaged
copies of a real package to show it notices.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import Counter
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from camtrapdp import Deployment as CtdpDeployment
from camtrapdp import Media as CtdpMedia
from camtrapdp import Observation as CtdpObservation
from frictionless import Resource, Schema

from conftest import make_config, require_shared, trapd, write_config
from test_deployments import DAY, Station, three_days_with_a_power_loss_and_a_full_card
from trapd.deployments import HEARTBEAT_S, deployment_record
from trapd.storage import Store

FIRST, SECOND = "LOL-A017-2026-11", "LOL-A017-2027-05"   # SECOND: re-deployed, no images
TABLES = {"deployments": CtdpDeployment, "media": CtdpMedia, "observations": CtdpObservation}
# a day's effort is exact to a heartbeat at each end of each gap and of the deployment
TOLERANCE_DAYS = 2 * HEARTBEAT_S / 86400


# --- the packages: one trap, two deployments, exported (--all) and offloaded ---

@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """FIRST runs 3 days (6 h power loss, 2 h full card) with 3 PIR events on day 1 only;
    the trap is then re-deployed as SECOND, which runs 2 days and sees nothing."""
    tmp_path = tmp_path_factory.mktemp("readers")
    overrides = {"power": {"mode": "standby"}, "filter": {"enabled": False}}
    station = Station(tmp_path, {"filter": {"enabled": False}})
    three_days_with_a_power_loss_and_a_full_card(station)
    redeployed = {**overrides, "station": {"deployment_id": SECOND}}
    station.start(make_config(tmp_path, redeployed))
    station.run_for(2 * DAY)
    station.stop()
    config = write_config(tmp_path / "config.yaml", tmp_path, redeployed)
    exported = tmp_path / "export"
    trapd("export", "--camtrap-dp", exported, "--all", "--config", config)
    drive = tmp_path / "drive"
    drive.mkdir()
    trapd("offload", drive, "--config", config)
    store = Store(station.config.storage.root, 0, recover=False)
    try:
        records = {i: deployment_record(store, i) for i in (FIRST, SECOND)}
    finally:
        store.close()
    return {"export": {i: exported / i for i in (FIRST, SECOND)},
            "offload": {FIRST: drive / FIRST}, "records": records, "tmp": tmp_path}


# --- the readers ---

def local_schema(table: str) -> Schema:
    """The standard's table schema (the URL the package names, answered from the local copy),
    without its foreign keys: validate.py checks those; here the links are the checks below."""
    path = require_shared(f"camtrap-dp/{table}-table-schema.json")
    descriptor = json.loads(path.read_text())
    descriptor.pop("foreignKeys", None)
    return Schema.from_descriptor(descriptor)


def read_package(package: Path) -> dict:
    """Every table, read by camtrapdp (exact Camtrap DP 1.0 columns) and by frictionless
    (typed by the standard's schema). Raises if either reader cannot read a table."""
    descriptor = json.loads((package / "datapackage.json").read_text())
    declared = {r["name"]: r for r in descriptor["resources"]}
    tables = {}
    for table, reader in TABLES.items():
        assert table in declared, f"datapackage.json declares no {table} resource"
        assert declared[table]["schema"].endswith(f"/{table}-table-schema.json")
        objects = reader.from_csv(str(package / declared[table]["path"]))
        resource = Resource(path=declared[table]["path"], basepath=str(package),
                            schema=local_schema(table))
        rows = []
        with resource:
            for row in resource.row_stream:
                assert row.valid, f"{table} row {row.row_number}: {[e.message for e in row.errors]}"
                rows.append(row.to_dict())
        key = next(iter(reader.__dataclass_fields__))       # the table's ID column
        assert [getattr(o, key) for o in objects] == [r[key] for r in rows], table
        tables[table] = rows
    return tables


# --- effort, like camtrapR's cameraOperation ---

ITEM = re.compile(r"(?P<start>[^\s,/]+)/(?P<end>[^\s,]+) (?P<why>[a-z_]+)")


def problem_periods(deployment: dict) -> list[tuple[datetime, datetime, str]]:
    """The gaps of deploymentComments (`not capturing: <from>/<to> <why>, ...`), as camtrapR's
    Problem1_from/Problem1_to... columns would be filled from them (README)."""
    comments = deployment["deploymentComments"] or ""
    _, found, listed = comments.partition("not capturing:")
    if not found:
        return []
    listed = listed.split(";")[0]
    return [(datetime.fromisoformat(m["start"]), datetime.fromisoformat(m["end"]), m["why"])
            for m in ITEM.finditer(listed)]


def tags(deployment: dict) -> dict[str, str]:
    """deploymentTags as key:value pairs (Camtrap DP: pipe separated)."""
    pairs = [t.strip() for t in (deployment["deploymentTags"] or "").split("|") if t.strip()]
    return dict(p.split(":", 1) for p in pairs if ":" in p)


def overlap_s(a0: datetime, a1: datetime, b0: datetime, b1: datetime) -> float:
    return max(0.0, (min(a1, b1) - max(a0, b0)).total_seconds())


def camera_operation(deployment: dict) -> dict[date, float]:
    """Per calendar day (the station's local time, the offset of deploymentStart), the fraction
    of the day the camera was operating: setup and retrieval days partly, problem periods cut
    out (overlapping ones counted once), days outside the deployment absent (camtrapR: NA)."""
    start, end = deployment["deploymentStart"], deployment["deploymentEnd"]
    tz = start.tzinfo
    start, end = start.astimezone(tz), end.astimezone(tz)
    merged: list[list[datetime]] = []
    for p0, p1, _ in sorted(problem_periods(deployment)):
        p0, p1 = max(p0, start), min(p1, end)
        if p1 <= p0:
            continue
        if merged and p0 <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], p1)
        else:
            merged.append([p0, p1])
    matrix = {}
    day = start.date()
    while day <= end.date():
        d0 = datetime.combine(day, time(), tz)
        d1 = d0 + timedelta(days=1)
        up = overlap_s(start, end, d0, d1) - sum(overlap_s(p0, p1, d0, d1) for p0, p1 in merged)
        matrix[day] = up / 86400
        day += timedelta(days=1)
    return matrix


def detection_history(tables: dict, deployment: dict) -> dict[date, int]:
    """Events (detections) per calendar day at the station, by eventStart; a technician's
    setup or pickup photo (cameraSetupType set) is not a detection (camtraptor drops them)."""
    tz = deployment["deploymentStart"].tzinfo
    days = Counter(o["eventStart"].astimezone(tz).date() for o in tables["observations"]
                   if o["deploymentID"] == deployment["deploymentID"]
                   and not o.get("cameraSetupType"))
    return {day: days.get(day, 0) for day in camera_operation(deployment)} | dict(days)


# --- the checks: each returns what an ecologist would complain about ---

def package_problems(package: Path) -> list[str]:
    try:
        tables = read_package(package)
    except (TypeError, AssertionError, KeyError, ValueError) as error:
        return [f"unreadable: {type(error).__name__}: {error}"]
    problems = []
    deployments = {d["deploymentID"]: d for d in tables["deployments"]}
    temporal = json.loads((package / "datapackage.json").read_text()).get("temporal", {})
    for d in deployments.values():      # the package's time span covers its deployments
        tz = d["deploymentStart"].tzinfo
        span = (d["deploymentStart"].date().isoformat(),
                d["deploymentEnd"].astimezone(tz).date().isoformat())
        if not (temporal.get("start", "~") <= span[0] and span[1] <= temporal.get("end", "")):
            problems.append(f"datapackage.json temporal {temporal} does not cover "
                            f"{d['deploymentID']} {span[0]}..{span[1]}")
    if not deployments:
        problems.append("no deployment in deployments.csv")
    for d in deployments.values():
        matrix = camera_operation(d)
        effort = sum(matrix.values())
        span = (d["deploymentEnd"] - d["deploymentStart"]).total_seconds() / 86400
        lost = sum((p1 - p0).total_seconds() for p0, p1, _ in problem_periods(d)) / 86400
        if abs(effort - (span - lost)) > 1e-6:
            problems.append(f"{d['deploymentID']}: effort {effort:.4f} d is not the span "
                            f"{span:.4f} d minus gaps {lost:.4f} d (overlapping or outside gaps)")
        stated = tags(d)
        if "operatingDays" not in stated:
            problems.append(f"{d['deploymentID']}: no operatingDays tag")
        elif abs(float(stated["operatingDays"]) - effort) > 0.0001:
            problems.append(f"{d['deploymentID']}: operatingDays:{stated['operatingDays']} but "
                            f"cameraOperation gives {effort:.4f} d")
        if int(stated.get("gaps", -1)) != len(problem_periods(d)):
            problems.append(f"{d['deploymentID']}: gaps:{stated.get('gaps')} but "
                            f"{len(problem_periods(d))} problem periods in the comments")
        for day, n in detection_history(tables, d).items():
            if n and not matrix.get(day):
                problems.append(f"{d['deploymentID']}: {n} detections on {day}, a day the "
                                "camera was not operating")
    events = {}
    for o in tables["observations"]:
        if o["deploymentID"] not in deployments:
            problems.append(f"observation {o['observationID']}: deployment {o['deploymentID']} "
                            "not in deployments.csv")
        events.setdefault((o["deploymentID"], o["eventID"]), o)
    with_media = set()
    for m in tables["media"]:
        if m["deploymentID"] not in deployments:
            problems.append(f"media {m['mediaID']}: deployment {m['deploymentID']} "
                            "not in deployments.csv")
        inside = [key for key, o in events.items() if key[0] == m["deploymentID"]
                  and o["eventStart"] <= m["timestamp"] <= o["eventEnd"]]
        if not inside:
            problems.append(f"media {m['mediaID']} ({m['timestamp']}): in no event")
        with_media.update(inside)
    for key in events.keys() - with_media:
        problems.append(f"event {key[1]}: a detection with no image")
    return problems


# --- the tests ---

def test_both_readers_read_every_package_and_find_every_deployment(packages):
    for route, found in (("export", packages["export"]), ("offload", packages["offload"])):
        for deployment_id, package in found.items():
            tables = read_package(package)
            assert [d["deploymentID"] for d in tables["deployments"]] == [deployment_id], route
    first, second = (read_package(packages["export"][i]) for i in (FIRST, SECOND))
    # the zero-detection station is there, with no media and no observation
    assert second["media"] == [] and second["observations"] == []
    assert len(first["observations"]) == 3 and len(first["media"]) >= 3
    # offload and export say the same about the deployment
    offloaded = read_package(packages["offload"][FIRST])
    assert offloaded["deployments"] == first["deployments"]


def test_packages_pass_the_ecologists_checks(packages):
    for route in ("export", "offload"):
        for deployment_id, package in packages[route].items():
            assert package_problems(package) == [], f"{route} {deployment_id}"


def test_effort_per_day_is_the_recorded_operating_time_minus_the_gaps(packages):
    local = {}
    for deployment_id, package in packages["export"].items():
        [deployment] = read_package(package)["deployments"]
        matrix = camera_operation(deployment)
        record = packages["records"][deployment_id]
        # the package gives the effort the trap recorded (its heartbeats), within a heartbeat
        assert abs(sum(matrix.values()) - record.effort_s / 86400) <= TOLERANCE_DAYS
        local[deployment_id] = matrix
    # FIRST: armed 10:00 on 2 Nov (UTC+10); power lost 10:00-16:00 on 3 Nov; card full
    # 04:00-06:00 on 4 Nov; re-deployed 10:00 on 5 Nov -> 14 h, 18 h, 22 h, 10 h
    expected = {date(2026, 11, 2): 14 / 24, date(2026, 11, 3): 18 / 24,
                date(2026, 11, 4): 22 / 24, date(2026, 11, 5): 10 / 24}
    assert local[FIRST].keys() == expected.keys()
    for day, fraction in expected.items():
        assert abs(local[FIRST][day] - fraction) <= TOLERANCE_DAYS, day
    assert abs(sum(local[FIRST].values()) - (3 - 8 / 24)) <= TOLERANCE_DAYS
    # SECOND: 2 days from 10:00 on 5 Nov, no gap
    expected = {date(2026, 11, 5): 14 / 24, date(2026, 11, 6): 1.0, date(2026, 11, 7): 10 / 24}
    assert local[SECOND].keys() == expected.keys()
    for day, fraction in expected.items():
        assert abs(local[SECOND][day] - fraction) <= TOLERANCE_DAYS, day


def test_detection_history_has_the_detections_on_day_one_and_zeros_after(packages):
    histories = {}
    for deployment_id, package in packages["export"].items():
        tables = read_package(package)
        [deployment] = tables["deployments"]
        histories[deployment_id] = detection_history(tables, deployment)
    assert histories[FIRST] == {date(2026, 11, 2): 3, date(2026, 11, 3): 0,
                                date(2026, 11, 4): 0, date(2026, 11, 5): 0}
    assert histories[SECOND] == {date(2026, 11, 5): 0, date(2026, 11, 6): 0,
                                 date(2026, 11, 7): 0}


# --- the checks notice a damaged package ---

def damaged(packages, deployment_id: str, name: str, table: str, change) -> Path:
    """A copy of an exported package with `change(rows)` applied to one table's rows."""
    copy = packages["tmp"] / "damaged" / name
    shutil.copytree(packages["export"][deployment_id], copy)
    path = copy / f"{table}.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    fields, rows = change(fields, rows)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return copy


def one_problem_like(problems: list[str], pattern: str) -> bool:
    return bool(problems) and all(re.search(pattern, p) for p in problems)


def test_a_missing_deployment_row_is_noticed(packages):
    gone = damaged(packages, FIRST, "no-deployment", "deployments", lambda f, r: (f, []))
    problems = package_problems(gone)
    assert problems and all("not in deployments.csv" in p or p == "no deployment in "
                            "deployments.csv" for p in problems), problems
    empty = damaged(packages, SECOND, "no-empty-deployment", "deployments", lambda f, r: (f, []))
    assert package_problems(empty) == ["no deployment in deployments.csv"]


def test_an_image_outside_every_event_is_noticed(packages):
    def move_last(fields, rows):
        rows[-1]["timestamp"] = "2026-11-02T13:00:00+10:00"   # an hour before the first event
        return fields, rows
    problems = package_problems(damaged(packages, FIRST, "stray-image", "media", move_last))
    assert len(problems) == 1 and "in no event" in problems[0], problems

    def drop_images_of_last_event(fields, rows):
        last = rows[-1]["timestamp"][:16]
        return fields, [r for r in rows if r["timestamp"][:16] != last]
    problems = package_problems(damaged(packages, FIRST, "event-without-image", "media",
                                        drop_images_of_last_event))
    assert len(problems) == 1 and "a detection with no image" in problems[0], problems


def test_an_unlisted_gap_or_a_wrong_effort_tag_is_noticed(packages):
    def forget_a_gap(fields, rows):
        rows[0]["deploymentComments"] = rows[0]["deploymentComments"].split(", ")[0]
        return fields, rows
    problems = package_problems(damaged(packages, FIRST, "forgotten-gap", "deployments",
                                        forget_a_gap))
    assert any("operatingDays" in p for p in problems), problems
    assert any("gaps:2 but 1 problem periods" in p for p in problems), problems

    def full_days(fields, rows):
        rows[0]["deploymentTags"] = re.sub(r"operatingDays:[0-9.]+", "operatingDays:3",
                                           rows[0]["deploymentTags"])
        return fields, rows
    problems = package_problems(damaged(packages, FIRST, "full-days", "deployments", full_days))
    assert len(problems) == 1 and "operatingDays:3 but" in problems[0], problems


def test_a_package_time_span_short_of_the_deployment_is_noticed(packages):
    copy = damaged(packages, SECOND, "short-temporal", "media", lambda f, r: (f, r))
    descriptor = json.loads((copy / "datapackage.json").read_text())
    descriptor["temporal"]["end"] = "2026-11-06"        # the deployment runs to the 7th
    (copy / "datapackage.json").write_text(json.dumps(descriptor))
    problems = package_problems(copy)
    assert one_problem_like(problems, "temporal .* does not cover"), problems


def test_a_column_the_standard_does_not_have_is_noticed(packages):
    def rename(fields, rows):
        fields = ["start" if f == "deploymentStart" else f for f in fields]
        return fields, [{("start" if k == "deploymentStart" else k): v for k, v in r.items()}
                        for r in rows]
    problems = package_problems(damaged(packages, SECOND, "renamed", "deployments", rename))
    assert one_problem_like(problems, "unreadable: TypeError"), problems


def test_one_camera_is_one_camera_in_every_deployment(packages):
    """A re-deployed trap is the same camera: a detection-probability covariate by camera
    model (or a join on cameraID) must not split it in two because one station saw nothing."""
    cameras = set()
    for package in packages["export"].values():
        [deployment] = read_package(package)["deployments"]
        cameras.add((deployment["cameraID"], deployment["cameraModel"]))
    assert len(cameras) == 1, cameras
