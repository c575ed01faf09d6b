"""Setup and pickup photos (issue 15, point 3): `trapd snapshot --setup` / `--pickup` take a
photo tagged like the trap's, stored in the card's queue, and exported with Camtrap DP's
cameraSetupType `setup` (observations) and no captureMethod (media: it was neither
activityDetection nor timeLapse), never counted as a detection."""

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import camtrap_validator, trapd, write_config
from trapd.cli import EXIT_HARDWARE, main
from trapd.storage import FrameRecord, Store

SETUP_TRIGGERS = ("setup", "pickup")


def validate(package):
    result = subprocess.run([sys.executable, str(camtrap_validator()), str(package),
                             "--strict", "--check-media"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def table(package, name):
    with open(package / f"{name}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def xmp_trigger(row):
    return json.loads(row["exifData"])["XMP-trap"].get("TriggerSource")


def detections(observations):
    """What an analysis counts: observations that are not camera setup or calibration."""
    return [o for o in observations if not o["cameraSetupType"]]


def test_setup_and_pickup_photos_are_camera_setup_observations_never_detections(tmp_path):
    config = write_config(tmp_path / "config.yaml", tmp_path)
    storage, package = tmp_path / "storage", tmp_path / "package"
    out = trapd("snapshot", "--setup", "--sim", "--config", config).stdout
    assert "setup photo stored in the queue as event" in out
    trapd("sim", "default", "--config", config, "--storage", storage)
    trapd("snapshot", "--pickup", "--sim", "--config", config)
    trapd("export", "--camtrap-dp", package, "--config", config)
    validate(package)

    with sqlite3.connect(storage / "queue.db") as db:
        triggers = dict(db.execute("SELECT number, trigger FROM events"))
        events_with_images = {n for (n,) in db.execute(
            "SELECT DISTINCT event_number FROM frames WHERE file IS NOT NULL")}
    assert triggers[min(triggers)] == "setup" and triggers[max(triggers)] == "pickup"
    trap_events = {n for n in events_with_images if triggers[n] not in SETUP_TRIGGERS}
    assert trap_events, "the sim saved no images"

    media, observations = table(package, "media"), table(package, "observations")
    marked = [m for m in media if xmp_trigger(m) in SETUP_TRIGGERS]
    assert [xmp_trigger(m) for m in marked] == ["setup", "pickup"]
    for m in marked:        # neither value of the captureMethod vocabulary applies
        assert m["captureMethod"] == ""
    assert {m["captureMethod"] for m in media if m not in marked} == {"activityDetection"}

    setup_rows = [o for o in observations if o["cameraSetupType"]]
    assert len(setup_rows) == 2
    for row, m in zip(setup_rows, marked):
        assert row["cameraSetupType"] == "setup"
        assert row["observationLevel"] == "event"
        assert row["observationType"] == "unclassified"     # nobody has looked at it yet
        assert row["eventStart"] == row["eventEnd"] == m["timestamp"]
        assert row["observationTags"] == f"cameraSetupAction:{xmp_trigger(m)}"
    assert [o["observationTags"] for o in setup_rows] == ["cameraSetupAction:setup",
                                                          "cameraSetupAction:pickup"]
    # Detections: exactly the trap's events with images, none of them a setup photo.
    found = detections(observations)
    assert len(found) == len(trap_events)
    assert all(o["observationType"] == "unclassified" for o in found)
    setup_event_ids = {o["eventID"] for o in setup_rows}
    assert not setup_event_ids & {o["eventID"] for o in found}
    # A reader linking media to events by time (camtrapdp) finds each setup photo in its
    # own setup event only.
    for m in marked:
        covering = [o for o in observations if o["eventStart"] <= m["timestamp"] <= o["eventEnd"]]
        assert [o["cameraSetupType"] for o in covering] == ["setup"]

    descriptor = json.loads((package / "datapackage.json").read_text())
    assert descriptor["project"]["captureMethod"] == ["activityDetection"]


def test_a_setup_photo_is_tagged_like_the_traps_photos(tmp_path):
    config = write_config(tmp_path / "config.yaml", tmp_path)
    trapd("snapshot", "--setup", "--sim", "--config", config)
    (photo,) = (tmp_path / "storage" / "images").rglob("*.jpg")
    store = Store(tmp_path / "storage", 0, recover=False)
    try:
        (frame,) = store.saved_frames(("pending",))
        assert frame["trigger"] == "setup" and frame["event_images"] == 1
        assert frame["sha256"] and frame["media_id"]
    finally:
        store.close()
    from trapd.recovery import read_photo
    record = read_photo(photo, str(photo.relative_to(tmp_path / "storage")))
    assert record.trigger == "setup" and record.media_id == frame["media_id"]
    assert record.event_number == 1 and record.sequence == 1


def test_a_setup_photo_beside_a_running_daemon_leaves_its_files_alone(tmp_path):
    """The queue is shared: the daemon's event in flight, its temporary file and its file
    names are untouched, and the photo gets an event number (and name) of its own."""
    config = write_config(tmp_path / "config.yaml", tmp_path)
    daemon = Store(tmp_path / "storage", 0)              # as the daemon opens it (recovers)
    try:
        event = daemon.open_event("LOL-A017", "LOL-A017-2026-11", "pir", 1, 1_700_000_000 * 10**9)
        folder = tmp_path / "storage" / "images" / "2023-11-15"
        folder.mkdir(parents=True)
        in_flight = folder / f"LOL-A017_20231115_081320_E{event.number:06d}_01.jpg.tmp"
        in_flight.write_bytes(b"being written")
        trapd("snapshot", "--setup", "--sim", "--config", config)
        assert in_flight.read_bytes() == b"being written"   # no start-up recovery ran
        saved = daemon.add_frame(FrameRecord(event.number, 1, 1, 1_700_000_000 * 10**9, False,
                                             0.5, True, "ab" * 16), b"\xff\xd8daemon\xff\xd9",
                                 f"2023-11-15/LOL-A017_20231115_081320_E{event.number:06d}_01.jpg")
        assert saved is not None
        states = dict(daemon.index.execute("SELECT number, state FROM events"))
        assert states[event.number] == "open"                # not marked interrupted
    finally:
        daemon.close()
    names = sorted(p.name for p in (tmp_path / "storage" / "images").rglob("*.jpg"))
    assert len(names) == 2 and f"E{event.number:06d}_01.jpg" in names[0] + names[1]
    assert any(f"E{event.number + 1:06d}_01.jpg" in n for n in names)


def test_a_busy_camera_fails_with_one_line_naming_the_daemon(tmp_path, capsys, monkeypatch):
    from trapd.camera import Camera

    def busy(self):
        raise RuntimeError("Failed to acquire camera: Device or resource busy")
    monkeypatch.setattr(Camera, "_open_once", busy)
    config = write_config(tmp_path / "config.yaml", tmp_path)
    assert main(["snapshot", "--setup", "--sim", "--config", str(config)]) == EXIT_HARDWARE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "busy" in err and "systemctl stop trapd" in err
    assert not (tmp_path / "storage" / "queue.db").exists()   # nothing recorded


def test_setup_with_a_path_is_refused(tmp_path, capsys):
    config = write_config(tmp_path / "config.yaml", tmp_path)
    assert main(["snapshot", "--setup", "--sim", "--config", str(config),
                 str(tmp_path / "x.jpg")]) == 1
    assert "give no PATH" in capsys.readouterr().err
    assert not Path(tmp_path / "x.jpg").exists()
