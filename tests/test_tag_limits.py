"""Whatever a station's or capture's texts hold (any length, any Unicode,
control characters, XML-special characters), tagging keeps the frame: a
decodable JPEG whose event id, sequence and capture time exiftool reads back,
with optional texts cleaned, cut or left out, and one warning per problem,
not one per frame (issue 13 point 8: a 34 KB station.owner passed
check-config, then every kept frame raised and the daemon restart-looped)."""

import dataclasses
import json
import logging
import subprocess
import xml.etree.ElementTree as ET

import pytest
import simplejpeg

from conftest import require_tool
from test_metadata import CAPTURE, STATION, XMP_NAMESPACE, encode_frame
from trapd import metadata
from trapd.metadata import build_exif, build_xmp, tag_jpeg

OWNER_34_KB = "Lolworth Wildlife Lab, " * 1500          # 34,500 characters
LICENSE_100_KB = "CC-BY-4.0 with attribution " * 3704   # 100,008 characters
ID_TAGS = {"XMP-trap:EventID": CAPTURE.event_id, "XMP-trap:EventSequence": 2,
           "XMP-trap:EventNumber": 123, "XMP-trap:MediaID": CAPTURE.media_id,
           "XMP-trap:CaptureTime": "2025:06:14 11:14:05.250400000Z",
           "ExifIFD:DateTimeOriginal": "2025:06:14 21:14:05", "ExifIFD:SubSecTimeOriginal": 250,
           "ExifIFD:OffsetTimeOriginal": "+10:00"}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test starts with nothing warned about yet."""
    monkeypatch.setattr(metadata, "_warn_once", metadata._WarnOnce())


def tag_frames(station=STATION, capture=CAPTURE, frames=3) -> list[bytes]:
    """`frames` frames of one event tagged the way the trap tags them."""
    return [tag_jpeg(encode_frame(), build_exif(station, c), build_xmp(station, c))
            for c in (dataclasses.replace(capture, sequence=n) for n in range(1, frames + 1))]


def read_tags(tmp_path, jpeg: bytes) -> dict:
    """What `exiftool -j -G1 -n` reads from `jpeg`, after checking it decodes."""
    assert simplejpeg.decode_jpeg(jpeg).shape == (48, 64, 3)
    path = tmp_path / "capture.jpg"
    path.write_bytes(jpeg)
    out = subprocess.run([require_tool("exiftool"), "-j", "-G1", "-n", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)[0]


def warnings(caplog, about: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "trapd.metadata" and r.levelno == logging.WARNING
            and about in r.getMessage()]


def assert_identity(tags: dict, sequence: int = 2) -> None:
    assert {key: tags.get(key) for key in ID_TAGS} == ID_TAGS | {"XMP-trap:EventSequence": sequence}


@pytest.mark.parametrize("field, text, tag", [
    ("owner", OWNER_34_KB, "IFD0:Artist"),
    ("license", LICENSE_100_KB, "IFD0:Copyright"),
    ("owner", "🦘" * 9000, "ExifIFD:OwnerName"),  # 36 KB of 4-byte characters: cut between them
])
def test_a_huge_owner_or_licence_is_cut_and_the_frames_keep_their_identity(
        tmp_path, caplog, field, text, tag):
    station = dataclasses.replace(STATION, **{field: text})
    jpegs = tag_frames(station)
    for sequence, jpeg in enumerate(jpegs, 1):
        tags = read_tags(tmp_path, jpeg)
        assert_identity(tags, sequence)
        assert tags[tag].endswith(text[:253] + "...")
        assert len(jpeg) < 10_000  # 34-100 KB of text became a few hundred bytes
    assert warnings(caplog, f"station.{field}") == [
        f"station.{field} is {len(text)} characters; the images carry its first 253"]


def test_control_xml_special_and_unencodable_characters_are_stored_cleaned(tmp_path, caplog):
    hostile = "A & B <c> ]]> \x00NUL\ttab\x1bESC\x7f\x85 🦘𝔘 \ud800lone"
    cleaned = "A & B <c> ]]>  NUL tab ESC   🦘𝔘 \ufffdlone"
    station = dataclasses.replace(
        STATION, owner=hostile, license="CC-BY-4.0\x01]]>", serial_number="SN\x00🦘",
        station_id="ST\x01]]><&1", deployment_id="D&<x>\ud83e1", camera_model="imx\x00477")
    jpegs = tag_frames(station)
    packet = ET.fromstring(build_xmp(station, CAPTURE))  # well-formed XML
    assert packet.find(f".//{{{XMP_NAMESPACE}}}StationID").text == "ST ]]><&1"
    tags = read_tags(tmp_path, jpegs[-1])
    assert_identity(tags, 3)
    assert tags["IFD0:Artist"] == tags["ExifIFD:OwnerName"] == cleaned
    assert tags["IFD0:Copyright"] == f"(c) 2025 {cleaned}, CC-BY-4.0 ]]>"
    assert tags["ExifIFD:SerialNumber"] == "SN 🦘"
    assert tags["IFD0:Model"] == "Raspberry Pi imx 477"
    assert tags["XMP-trap:StationID"] == "ST ]]><&1"
    assert tags["XMP-trap:DeploymentID"] == "D&<x>\ufffd1"
    assert tags["IFD0:ImageDescription"].startswith("ST ]]><&1 LOL-A017-E000123 3 of 3")
    for field in ("owner", "license", "serial_number", "station_id", "deployment_id"):
        assert len(warnings(caplog, f"station.{field} contains control characters")) == 1, field


def test_values_exif_cannot_hold_are_left_out_and_the_rest_kept(tmp_path, caplog):
    station = dataclasses.replace(STATION, uncertainty_m=10**12)
    capture = dataclasses.replace(CAPTURE, exposure_time_us=2**40, temperature_c=float("nan"),
                                  analogue_gain=float("inf"))
    tags = read_tags(tmp_path, tag_frames(station, capture)[1])
    assert_identity(tags)
    for missing in ("GPS:GPSHPositioningError", "ExifIFD:ExposureTime", "ExifIFD:ISO",
                    "ExifIFD:AmbientTemperature"):
        assert missing not in tags
    assert tags["Composite:GPSLatitude"] == pytest.approx(STATION.latitude, abs=1e-5)
    assert tags["IFD0:Artist"] == STATION.owner
    assert len(warnings(caplog, "station position uncertainty 1000000000000")) == 1
    assert len(warnings(caplog, "EXIF ExposureTime cannot hold")) == 1


def test_ids_too_long_for_any_xmp_give_a_frame_without_xmp_not_a_lost_frame(tmp_path, caplog):
    capture = dataclasses.replace(CAPTURE, event_id="E" * 70_000)
    jpegs = tag_frames(capture=capture)
    tags = read_tags(tmp_path, jpegs[0])
    assert not [key for key in tags if key.startswith("XMP")]
    # EXIF keeps the capture time; the tags repeating the event id made way
    assert (tags["ExifIFD:DateTimeOriginal"], tags["ExifIFD:SubSecTimeOriginal"]) == (
        "2025:06:14 21:14:05", 250)
    assert "IFD0:ImageDescription" not in tags and "ExifIFD:UserComment" not in tags
    assert tags["IFD0:Artist"] == STATION.owner
    assert len(warnings(caplog, "images are saved without XMP")) == 1
    assert warnings(caplog, "EXIF too big") == [
        "EXIF too big for one JPEG segment; left out: UserComment, ImageDescription"]


def test_tag_jpeg_leaves_out_a_payload_too_big_for_its_segment(tmp_path, caplog):
    exif = build_exif(STATION, CAPTURE)
    jpegs = [tag_jpeg(encode_frame(), exif, b" " * 65502) for _ in range(3)]
    tags = read_tags(tmp_path, jpegs[0])
    assert tags["ExifIFD:DateTimeOriginal"] == "2025:06:14 21:14:05"
    assert not [key for key in tags if key.startswith("XMP")]
    assert warnings(caplog, "XMP payload") == [
        "XMP payload is 65502 bytes, more than one JPEG segment holds (65501); "
        "images are saved without it"]


def test_a_trap_with_a_34_kb_owner_and_100_kb_licence_saves_every_kept_frame(bench, caplog):
    b = bench({"burst": {"frames": 3, "interval_s": 0.5, "pre_trigger_frames": 1},
               "filter": {"enabled": False}})
    # Config rules may refuse such texts; the tagger must cope whatever it is given.
    b.trap.station = dataclasses.replace(b.trap.station, owner=OWNER_34_KB, license=LICENSE_100_KB)
    b.run_for(1)
    b.pir_pulse_at(0.2)
    b.pir_pulse_at(6.0)
    b.run_for(12)
    saved = [(event, n, frame) for event in b.events for n, frame in enumerate(event.frames, 1)]
    assert len(b.events) == 2 and len(saved) >= 6 and all(frame.file for _, _, frame in saved)
    exiftool = require_tool("exiftool")
    out = subprocess.run([exiftool, "-j", "-G1", "-n",
                          *(b.trap.store.root / frame.file for _, _, frame in saved)],
                         check=True, capture_output=True, text=True).stdout
    for tags, (event, sequence, frame) in zip(json.loads(out), saved, strict=True):
        assert frame.file.endswith(f"_{sequence:02d}.jpg")
        assert tags["XMP-trap:EventID"] == event.event_id
        assert tags["XMP-trap:EventSequence"] == sequence
        assert tags["ExifIFD:DateTimeOriginal"]
        assert tags["IFD0:Artist"] == OWNER_34_KB[:253] + "..."
    assert len(warnings(caplog, "station.owner is 34500 characters")) == 1
    assert len(warnings(caplog, "station.license is 100008 characters")) == 1
