"""`trapd sim` on the default scenario, then the operator commands and the
real readers (exiftool, SQLite) on what it stored."""

import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import simplejpeg

from conftest import require_tool
from trapd.config import DEFAULT_CONFIG_PATH, load_config

TRAPD = [sys.executable, "-m", "trapd.cli"]


def trapd(*args, check=True):
    result = subprocess.run(TRAPD + list(args), capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def sim_run(sim_queue):
    return sim_queue("default")   # shared with the data-out tests (conftest)


def test_the_default_scenario_stores_every_animal_pass_and_drops_most_wind(sim_run):
    summary = sim_run["report"]["summary"]
    assert summary["animal_passes"] >= 3
    assert summary["animal_passes_stored"] == summary["animal_passes"]
    assert summary["animal_events_lost"] == 0
    assert summary["animal_frames_kept"] >= 0.8 * summary["animal_frames"]
    assert summary["empty_frames_dropped"] > 0.6 * summary["empty_frames"]
    wind_only = [e for e in sim_run["report"]["events"]
                 if all(f["truth"] == "empty" for f in e["frames"])]
    assert len(wind_only) >= 2, "the scenario's false triggers should make events"


def test_the_sim_prints_a_line_per_event_and_the_summary(sim_run):
    out = sim_run["stdout"]
    assert out.count("event ") == len(sim_run["report"]["events"])
    assert "animal frames kept" in out and "empty frames dropped" in out
    assert str(sim_run["storage"]) in out


def test_the_report_has_the_documented_shape(sim_run):
    report = sim_run["report"]
    event = report["events"][0]
    assert {"event_id", "trigger", "pir_edge_ns", "frames"} <= event.keys()
    frame = event["frames"][0]
    assert {"sensor_timestamp_ns", "score", "kept", "truth", "file"} <= frame.keys()
    assert {"animal_frames", "animal_frames_kept", "empty_frames", "empty_frames_dropped",
            "animal_events", "animal_events_lost"} <= report["summary"].keys()
    for e in report["events"]:
        post = [f for f in e["frames"] if not f["pre_trigger"]]
        pre = [f for f in e["frames"] if f["pre_trigger"]]
        assert all(f["sensor_timestamp_ns"] >= e["pir_edge_ns"] for f in post)
        assert all(f["sensor_timestamp_ns"] < e["pir_edge_ns"] for f in pre)


def test_verify_passes_and_status_counts_what_was_stored(sim_run):
    storage = str(sim_run["storage"])
    assert "every indexed image is complete" in trapd("verify", "--storage", storage).stdout
    status = json.loads(trapd("status", "--json", "--storage", storage).stdout)
    assert status["frames"]["pending"] == sim_run["report"]["summary"]["images_stored"]
    assert sum(status["events"].values()) == len(sim_run["report"]["events"])
    assert status["events"] == {"closed": len(sim_run["report"]["events"])}


def test_the_index_matches_the_files(sim_run):
    db = sqlite3.connect(sim_run["storage"] / "queue.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = db.execute("SELECT file FROM frames WHERE file IS NOT NULL").fetchall()
    assert len(rows) == sim_run["report"]["summary"]["images_stored"]
    for (file,) in rows:
        simplejpeg.decode_jpeg((sim_run["storage"] / file).read_bytes())


def test_exiftool_reads_capture_time_station_gps_and_trap_fields(sim_run):
    exiftool = require_tool("exiftool")
    config = load_config(DEFAULT_CONFIG_PATH)
    db = sqlite3.connect(sim_run["storage"] / "queue.db")
    file, wall_ns, sequence, score, event_id = db.execute(
        "SELECT f.file, f.capture_wall_ns, f.sequence, f.score, e.event_id FROM frames f"
        " JOIN events e ON e.number = f.event_number WHERE f.file IS NOT NULL"
        " ORDER BY f.id LIMIT 1 OFFSET 3").fetchone()
    tags = json.loads(subprocess.run(
        [exiftool, "-j", "-n", "-G1", "-a", str(sim_run["storage"] / file)],
        capture_output=True, text=True, check=True).stdout)[0]
    tz = timezone(timedelta(hours=10))
    taken = datetime.fromtimestamp(wall_ns // 1000 / 1e6, tz)
    assert tags["ExifIFD:DateTimeOriginal"] == taken.strftime("%Y:%m:%d %H:%M:%S")
    assert str(tags["ExifIFD:SubSecTimeOriginal"]).zfill(3) == f"{taken.microsecond // 1000:03d}"
    assert tags["ExifIFD:OffsetTimeOriginal"] == "+10:00"
    assert tags["XMP-trap:StationID"] == config.station.station_id
    assert tags["XMP-trap:DeploymentID"] == config.station.deployment_id
    assert tags["XMP-trap:EventID"] == event_id
    assert tags["XMP-trap:EventSequence"] == sequence
    assert tags["XMP-trap:TriggerSource"] == "pir"
    assert tags["XMP-trap:CaptureMethod"] == "activityDetection"
    assert abs(float(tags["XMP-trap:MotionScore"]) - score) < 1e-4
    assert abs(tags["Composite:GPSLatitude"] - config.station.location.latitude) < 1e-5
    assert abs(tags["Composite:GPSLongitude"] - config.station.location.longitude) < 1e-5
    assert tags["IFD0:Make"] and tags["IFD0:Model"]
