"""Every stored sim image, read the way ecologists' tools read it: exiftool
(camtrapR, Timelapse's ExifTool mode), PIL (MegaDetector), `exiftool -validate`.
Values are checked against the index and the scenario, not just presence."""

import json
import sqlite3
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from PIL import ExifTags, Image

from conftest import exiftool_tags, require_tool
from trapd.config import DEFAULT_CONFIG_PATH, load_config
from trapd.daemon import read_serial_number
from trapd.moon import moon_phase

AEST = timezone(timedelta(hours=10))


@pytest.fixture(scope="module")
def images(sim_queue):
    """Three saved images from different events, with what the index knows of them."""
    storage = sim_queue("default")["storage"]
    db = sqlite3.connect(storage / "queue.db")
    db.row_factory = sqlite3.Row
    rows = db.execute(
        "SELECT f.*, e.event_id, e.trigger, e.number AS event_no FROM frames f"
        " JOIN events e ON e.number = f.event_number WHERE f.file IS NOT NULL"
        " GROUP BY f.event_number ORDER BY f.event_number LIMIT 3").fetchall()
    assert len(rows) == 3
    return storage, rows


def test_every_point_1_field_has_the_expected_value(images):
    storage, rows = images
    config = load_config(DEFAULT_CONFIG_PATH)
    for row in rows:
        tags = exiftool_tags(storage / row["file"])
        frame_meta = json.loads(row["metadata"])
        # sequence number (no "of m": the burst may still be extended when a
        # frame is saved; the true total goes into exports), event number, trigger
        assert "XMP-trap:EventLength" not in tags
        assert tags["XMP-trap:Sequence"] == row["sequence"]
        assert f"{row['event_id']} {row['sequence']} pir" in tags["IFD0:ImageDescription"]
        assert tags["XMP-trap:EventSequence"] == row["sequence"]
        assert tags["XMP-trap:EventNumber"] == row["event_no"]
        assert tags["XMP-trap:TriggerSource"] == row["trigger"] == "pir"
        # temperatures from the scenario's sensor files: air probe in EXIF, CPU in XMP
        assert tags["ExifIFD:AmbientTemperature"] == 12.5
        assert tags["XMP-trap:CPUTemperature"] == 47.5
        # moon phase: 26 Nov 2026 is two days after the full moon of 24 Nov
        assert tags["XMP-trap:MoonPhase"] == moon_phase(row["capture_wall_ns"]).name == "Full"
        # no battery ADC configured: no made-up voltage
        assert "XMP-trap:BatteryVoltage" not in tags
        # station label and serial number
        assert tags["XMP-trap:StationID"] == config.station.station_id
        assert tags["IFD0:ImageDescription"].startswith(config.station.station_id + " ")
        assert tags["ExifIFD:SerialNumber"] == read_serial_number()
        # exposure and ISO from the frame's own metadata
        assert tags["ExifIFD:ExposureTime"] == pytest.approx(frame_meta["ExposureTime"] / 1e6)
        assert tags["ExifIFD:ISO"] == round(
            frame_meta["AnalogueGain"] * frame_meta["DigitalGain"] * 100)
        # the default scenario's clock is synchronised
        assert tags["XMP-trap:ClockSynchronised"] is True
        taken = datetime.fromtimestamp(row["capture_wall_ns"] // 1000 / 1e6, AEST)
        assert tags["ExifIFD:DateTimeOriginal"] == taken.strftime("%Y:%m:%d %H:%M:%S")


def test_exiftool_validate_reports_no_errors(images):
    exiftool = require_tool("exiftool")
    storage, rows = images
    for row in rows:
        out = subprocess.run([exiftool, "-validate", "-error", "-warning", "-a", "-G1", "-j",
                              str(storage / row["file"])],
                             capture_output=True, text=True, check=True).stdout
        tags = json.loads(out)[0]
        assert "ExifTool:Error" not in tags
        assert "Error" not in str(tags["ExifTool:Validate"]), tags["ExifTool:Validate"]


def test_pil_reads_what_megadetector_reads(images):
    storage, rows = images
    row = rows[0]
    taken = datetime.fromtimestamp(row["capture_wall_ns"] // 1000 / 1e6, AEST)
    with Image.open(storage / row["file"]) as image:
        exif = image.getexif()
        named = {ExifTags.TAGS.get(k, k): v for k, v in exif.items()}
        named.update({ExifTags.TAGS.get(k, k): v
                      for k, v in exif.get_ifd(ExifTags.IFD.Exif).items()})
    assert named["Make"] == "trapd"
    assert named["Model"].startswith("Raspberry Pi ")
    assert named["DateTimeOriginal"] == taken.strftime("%Y:%m:%d %H:%M:%S")
