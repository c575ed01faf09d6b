"""The tag stage, checked the way users meet it: tagged JPEGs read back with
exiftool (as camtrapR and Timelapse do), PIL (as MegaDetector does) and
simplejpeg. exiftool tests skip when it is missing, unless
TRAPD_REQUIRE_TOOLS=1 (CI), where a missing exiftool fails them."""

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import simplejpeg
from PIL import ExifTags, Image

from trapd.metadata import (
    MAKE,
    SOFTWARE,
    XMP_NAMESPACE,
    CaptureInfo,
    StationInfo,
    build_exif,
    build_xmp,
    local_time,
    tag_jpeg,
)

UTC = dt.timezone.utc
AEST = dt.timezone(dt.timedelta(hours=10))
NEWFOUNDLAND = dt.timezone(-dt.timedelta(hours=3, minutes=30))


def utc_ns(*ymdhms: int, fraction_ns: int = 0) -> int:
    return int(dt.datetime(*ymdhms, tzinfo=UTC).timestamp()) * 10**9 + fraction_ns


STATION = StationInfo(
    station_id="LOL-A017", deployment_id="LOL-A017-20250610",
    latitude=-33.865143, longitude=151.2099, elevation_m=34.5, uncertainty_m=10,
    heading_deg=225, owner="Lolworth Wildlife Lab", license="CC-BY-4.0",
    serial_number="10000000a1b2c3d4", camera_model="imx477", utc_offset=AEST,
)
CAPTURE = CaptureInfo(
    wall_time_ns=utc_ns(2025, 6, 14, 11, 14, 5, fraction_ns=250_400_000),
    media_id="2354a18e00da53afaf7a8199471f1b8a", event_id="LOL-A017-E000123",
    event_number=123, sequence=2, event_length=3, capture_method="activityDetection",
    trigger_source="pir", motion_score=0.82, width=64, height=48,
    exposure_time_us=16667, analogue_gain=8.0, digital_gain=1.0, temperature_c=14.5,
)


def encode_frame() -> bytes:
    gradient = np.linspace(0, 255, 64, dtype=np.uint8)
    pixels = np.stack([np.tile(gradient, (48, 1))] * 3, axis=-1)
    return simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=85)


def tagged(station=STATION, capture=CAPTURE) -> bytes:
    return tag_jpeg(encode_frame(), build_exif(station, capture), build_xmp(station, capture))


@pytest.fixture(scope="session")
def exiftool():
    path = shutil.which("exiftool")
    if path is None:
        if os.environ.get("TRAPD_REQUIRE_TOOLS") == "1":
            pytest.fail("exiftool not found and TRAPD_REQUIRE_TOOLS=1")
        pytest.skip("exiftool not installed (apt install libimage-exiftool-perl)")
    return path


@pytest.fixture
def read_tags(exiftool, tmp_path):
    """Tag a frame, write it, return what `exiftool -j -G1 -n` reads."""
    def read(station=STATION, capture=CAPTURE) -> dict:
        path = tmp_path / "capture.jpg"
        path.write_bytes(tagged(station, capture))
        out = subprocess.run([exiftool, "-j", "-G1", "-n", str(path)],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)[0]
    return read


# --------------------------------------------------------------- capture time
@pytest.mark.parametrize("wall_time_ns, tz, date, subsec, offset", [
    (utc_ns(2025, 6, 14, 11, 14, 5, fraction_ns=250_400_000), AEST,
     "2025:06:14 21:14:05", "250", "+10:00"),
    # a hair before midnight on New Year's Eve: must not round into next year
    (utc_ns(2026, 1, 1, 3, 29, 59, fraction_ns=999_999_999), NEWFOUNDLAND,
     "2025:12:31 23:59:59", "999", "-03:30"),
    (utc_ns(2025, 3, 1, 0, 0, 0, fraction_ns=7_000_000), UTC,
     "2025:03:01 00:00:00", "007", "+00:00"),
])
def test_capture_time_round_trips(read_tags, wall_time_ns, tz, date, subsec, offset):
    tags = read_tags(dataclasses.replace(STATION, utc_offset=tz),
                     dataclasses.replace(CAPTURE, wall_time_ns=wall_time_ns))
    for when, sub, off in [("ExifIFD:DateTimeOriginal", "ExifIFD:SubSecTimeOriginal",
                            "ExifIFD:OffsetTimeOriginal"),
                           ("ExifIFD:CreateDate", "ExifIFD:SubSecTimeDigitized",
                            "ExifIFD:OffsetTimeDigitized"),
                           ("IFD0:ModifyDate", "ExifIFD:SubSecTime", "ExifIFD:OffsetTime")]:
        assert (tags[when], str(tags[sub]).zfill(3), tags[off]) == (date, subsec, offset)
    assert tags["Composite:SubSecDateTimeOriginal"] == f"{date}.{subsec}{offset}"


def test_local_time_floors_to_the_microsecond():
    t = local_time(utc_ns(2025, 6, 14, 13, 59, 59, fraction_ns=999_999_999), AEST)
    assert t == dt.datetime(2025, 6, 14, 23, 59, 59, 999_999, tzinfo=AEST)
    assert t.utcoffset() == dt.timedelta(hours=10)


# ------------------------------------------------------------ identity, EXIF
def test_camera_owner_and_capture_identity(read_tags):
    tags = read_tags()
    assert tags["IFD0:Make"] == MAKE == "trapd"
    assert tags["IFD0:Model"] == "Raspberry Pi imx477"
    assert tags["IFD0:Software"] == SOFTWARE
    assert tags["ExifIFD:SerialNumber"] == "10000000a1b2c3d4"
    assert tags["ExifIFD:OwnerName"] == tags["IFD0:Artist"] == "Lolworth Wildlife Lab"
    assert tags["IFD0:Copyright"] == "(c) 2025 Lolworth Wildlife Lab, CC-BY-4.0"
    assert tags["IFD0:ImageDescription"] == "LOL-A017 LOL-A017-E000123 2 of 3 pir"
    assert tags["ExifIFD:ImageUniqueID"] == CAPTURE.media_id
    assert (tags["ExifIFD:ExifImageWidth"], tags["ExifIFD:ExifImageHeight"]) == (64, 48)


def test_user_comment(read_tags):
    assert read_tags()["ExifIFD:UserComment"] == (
        "station=LOL-A017;deployment=LOL-A017-20250610;event=LOL-A017-E000123;"
        "seq=2/3;trigger=pir;motion=0.82")


def test_exposure_iso_and_temperature(read_tags):
    tags = read_tags(capture=dataclasses.replace(
        CAPTURE, analogue_gain=1.15, digital_gain=1.0, temperature_c=-3.5))
    assert tags["ExifIFD:ExposureTime"] == pytest.approx(0.016667)
    assert tags["ExifIFD:ISO"] == 115  # not 114: 1.15 * 100 is 114.999...
    assert tags["ExifIFD:AmbientTemperature"] == -3.5


def test_unknown_sensor_values_are_left_out(read_tags):
    tags = read_tags(capture=dataclasses.replace(
        CAPTURE, exposure_time_us=None, analogue_gain=None, temperature_c=None))
    for missing in ("ExifIFD:ExposureTime", "ExifIFD:ISO", "ExifIFD:AmbientTemperature"):
        assert missing not in tags


# ---------------------------------------------------------------------- GPS
@pytest.mark.parametrize("lat, lon", [
    (-33.865143, 151.2099),    # south, east
    (52.52001, -13.40495),     # north, west
    (-0.99999999, -179.9999999),  # seconds round up to a whole minute/degree
])
def test_gps_position(read_tags, lat, lon):
    tags = read_tags(dataclasses.replace(STATION, latitude=lat, longitude=lon))
    assert tags["Composite:GPSLatitude"] == pytest.approx(lat, abs=1e-5)
    assert tags["Composite:GPSLongitude"] == pytest.approx(lon, abs=1e-5)
    assert tags["GPS:GPSMapDatum"] == "WGS-84"
    assert tags["GPS:GPSVersionID"] == "2 3 0 0"


def test_gps_altitude_uncertainty_and_heading(read_tags):
    tags = read_tags(dataclasses.replace(STATION, elevation_m=-12.25))
    assert tags["Composite:GPSAltitude"] == -12.25
    assert tags["GPS:GPSHPositioningError"] == 10
    assert (tags["GPS:GPSImgDirection"], tags["GPS:GPSImgDirectionRef"]) == (225, "T")


def test_no_gps_without_a_position(read_tags):
    tags = read_tags(dataclasses.replace(STATION, latitude=None, longitude=None))
    assert not [key for key in tags if key.startswith("GPS:")]


# ---------------------------------------------------------------------- XMP
def test_xmp_trap_fields(read_tags):
    tags = read_tags()
    assert {k: v for k, v in tags.items() if k.startswith("XMP-trap:")} == {
        "XMP-trap:StationID": "LOL-A017",
        "XMP-trap:DeploymentID": "LOL-A017-20250610",
        "XMP-trap:MediaID": CAPTURE.media_id,
        "XMP-trap:EventID": "LOL-A017-E000123",
        "XMP-trap:EventSequence": 2,
        "XMP-trap:EventLength": 3,
        "XMP-trap:CaptureMethod": "activityDetection",
        "XMP-trap:TriggerSource": "pir",
        "XMP-trap:MotionScore": 0.82,
        "XMP-trap:EventNumber": 123,
        "XMP-trap:Sequence": "2 of 3",
        "XMP-trap:CaptureTime": "2025:06:14 11:14:05.250400000Z",
        "XMP-trap:AmbientTemperature": 14.5,
    }


def test_moon_cpu_temperature_battery_and_clock_state_go_into_xmp_and_user_comment(read_tags):
    capture = dataclasses.replace(CAPTURE, cpu_temperature_c=51.2, battery_voltage_v=12.4,
                                  moon_phase="Waxing Gibbous", clock_synchronised=False)
    tags = read_tags(capture=capture)
    assert tags["XMP-trap:MoonPhase"] == "Waxing Gibbous"
    assert tags["XMP-trap:CPUTemperature"] == 51.2
    assert tags["XMP-trap:BatteryVoltage"] == 12.4
    assert tags["XMP-trap:ClockSynchronised"] is False
    assert tags["ExifIFD:AmbientTemperature"] == 14.5      # the probe, never the CPU
    assert tags["ExifIFD:UserComment"].endswith(";moon=Waxing Gibbous;clock=unsynced")


def test_xmp_packet_uses_the_project_namespace():
    packet = build_xmp(STATION, CAPTURE).decode("utf-8")
    assert packet.startswith('<?xpacket begin="\ufeff"')
    assert packet.endswith('<?xpacket end="w"?>')
    assert f'xmlns:trap="{XMP_NAMESPACE}"' in packet


def test_motion_score_omitted_when_unknown(read_tags):
    tags = read_tags(capture=dataclasses.replace(
        CAPTURE, motion_score=None, capture_method="timeLapse", trigger_source="timer"))
    assert "XMP-trap:MotionScore" not in tags
    assert tags["XMP-trap:TriggerSource"] == "timer"
    assert tags["ExifIFD:UserComment"].endswith(";trigger=timer;motion=")


def test_xml_special_and_non_ascii_text_survive(read_tags):
    station = dataclasses.replace(STATION, station_id="A&B <North>", owner="Zoë & Ōtake Lab")
    packet = ET.fromstring(build_xmp(station, CAPTURE))  # well-formed XML, not just readable
    assert packet.find(f".//{{{XMP_NAMESPACE}}}StationID").text == "A&B <North>"
    tags = read_tags(station)
    assert tags["XMP-trap:StationID"] == "A&B <North>"
    assert tags["IFD0:Artist"] == tags["ExifIFD:OwnerName"] == "Zoë & Ōtake Lab"
    assert tags["IFD0:ImageDescription"].startswith("A&B <North> ")
    assert tags["ExifIFD:UserComment"].startswith("station=A&B <North>;")


# ------------------------------------------------------ file-level checks
def test_exiftool_validate_reports_no_errors(exiftool, tmp_path):
    path = tmp_path / "capture.jpg"
    path.write_bytes(tagged())
    out = subprocess.run([exiftool, "-validate", "-warning", "-error", "-a", "-s", str(path)],
                         check=True, capture_output=True, text=True).stdout
    errors = [line for line in out.splitlines()
              if line.startswith("Error") or (line.startswith("Validate") and "Error" in line)]
    assert errors == [], out


def test_pil_reads_date_time_original(tmp_path):
    path = tmp_path / "capture.jpg"
    path.write_bytes(tagged())
    with Image.open(path) as image:
        exif_ifd = image.getexif().get_ifd(ExifTags.IFD.Exif)
        legacy = image._getexif()  # what MegaDetector's read_exif calls
    assert exif_ifd[ExifTags.Base.DateTimeOriginal] == "2025:06:14 21:14:05"
    assert legacy[ExifTags.Base.DateTimeOriginal] == "2025:06:14 21:14:05"
    assert legacy[ExifTags.Base.Model] == "Raspberry Pi imx477"


def test_tagged_image_still_decodes_the_same():
    plain = encode_frame()
    assert np.array_equal(simplejpeg.decode_jpeg(tagged()), simplejpeg.decode_jpeg(plain))


def test_segment_order():
    data = tagged()
    assert data[:4] == b"\xff\xd8\xff\xe1" and data[6:12] == b"Exif\x00\x00"
    xmp_at = 4 + int.from_bytes(data[4:6], "big")
    assert data[xmp_at:xmp_at + 2] == b"\xff\xe1"
    assert data[xmp_at + 4:].startswith(b"http://ns.adobe.com/xap/1.0/\x00")


# ------------------------------------------------------------ tag_jpeg errors
@pytest.mark.parametrize("not_jpeg", [b"", b"\x89PNG\r\n\x1a\n" + bytes(64), b"\xff\xd8"])
def test_rejects_non_jpeg(not_jpeg):
    with pytest.raises(ValueError):
        tag_jpeg(not_jpeg, build_exif(STATION, CAPTURE), build_xmp(STATION, CAPTURE))


def test_rejects_already_tagged_jpeg():
    with pytest.raises(ValueError, match="APP1"):
        tag_jpeg(tagged(), build_exif(STATION, CAPTURE), build_xmp(STATION, CAPTURE))


def test_rejects_exif_without_header():
    with pytest.raises(ValueError, match="Exif"):
        tag_jpeg(encode_frame(), build_exif(STATION, CAPTURE)[6:], build_xmp(STATION, CAPTURE))
