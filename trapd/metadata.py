"""The "tag" stage: EXIF and XMP for one capture, spliced into its JPEG.

Pure functions, no I/O. `build_exif` and `build_xmp` turn a station and a
capture into metadata bytes; `tag_jpeg` inserts them into an encoded JPEG:

    SOI, APP1 "Exif", APP1 XMP, <the encoder's own segments>, ...

What goes where follows the data-standards research note, §3-4: the standard EXIF tags
camera-trap tools read (DateTimeOriginal above all), GPS for the station, and
the trap's own fields (event, sequence, trigger) in XMP under XMP_NAMESPACE,
repeated as a flat ASCII UserComment and ImageDescription for EXIF-only readers.

Times: every date field comes from one `local_time`, floored to the
microsecond, so seconds and milliseconds always agree (never "...:59.1000").
EXIF text is written as UTF-8, which exiftool and PIL read back unchanged.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
from dataclasses import dataclass
from xml.sax.saxutils import escape

import piexif
import piexif.helper

XMP_NAMESPACE = "https://trapd.org/ns/trap/1.0/"  # owned by the project; never change
XMP_PREFIX = "trap"
MAKE = "trapd"


def package_version() -> str:
    try:
        return importlib.metadata.version("trapd")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


SOFTWARE = f"trapd {package_version()}"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_SOI = b"\xff\xd8"
_APP1 = 0xE1
_SOS = 0xDA
_EXIF_HEADER = b"Exif\x00\x00"
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_MAX_SEGMENT_PAYLOAD = 0xFFFF - 2  # the length field counts itself
_MAX_XMP_BYTES = 65502  # packets must be shorter; an APP1 holds 65504 after the header
_MAX_ISO = 0xFFFF  # ISOSpeedRatings is a SHORT


@dataclass(frozen=True)
class StationInfo:
    station_id: str
    deployment_id: str
    latitude: float | None
    longitude: float | None
    elevation_m: float | None
    uncertainty_m: int | None
    heading_deg: int | None
    owner: str
    license: str
    serial_number: str
    camera_model: str  # sensor model, e.g. "imx477"
    utc_offset: dt.timezone


@dataclass(frozen=True)
class CaptureInfo:
    wall_time_ns: int  # capture time (UTC ns since the epoch), not save time
    media_id: str  # 32 hex digits
    event_id: str
    event_number: int
    sequence: int  # 1-based position in the event
    event_length: int  # frames in the event so far
    capture_method: str  # "activityDetection" | "timeLapse"
    trigger_source: str  # "pir" | "timer" | "manual"
    motion_score: float | None
    width: int
    height: int
    exposure_time_us: int | None
    analogue_gain: float | None
    digital_gain: float | None
    lux: float | None = None
    temperature_c: float | None = None  # ambient (air) temperature, from a probe
    cpu_temperature_c: float | None = None
    battery_voltage_v: float | None = None
    moon_phase: str | None = None  # trapd.moon.PHASE_NAMES
    clock_synchronised: bool | None = None  # None = unknown
    pre_trigger: bool | None = None  # held from before the edge (None = not recorded)
    sensor_timestamp_ns: int | None = None  # the camera's SensorTimestamp (monotonic)

    @property
    def sequence_text(self) -> str:
        """Reconyx-style "n of m"."""
        return f"{self.sequence} of {self.event_length}"


def local_time(wall_time_ns: int, tz: dt.tzinfo) -> dt.datetime:
    """Aware datetime in `tz`, floored to the microsecond (never rounded up)."""
    return (_EPOCH + dt.timedelta(microseconds=wall_time_ns // 1000)).astimezone(tz)


# ------------------------------------------------------------------ EXIF
def build_exif(station: StationInfo, capture: CaptureInfo) -> bytes:
    """The EXIF APP1 payload (b"Exif\\0\\0" + TIFF) for one capture."""
    taken = local_time(capture.wall_time_ns, station.utc_offset)
    ifds = {"0th": _image_ifd(station, capture, taken),
            "Exif": _exif_ifd(station, capture, taken)}
    gps = gps_ifd(station)
    if gps:
        ifds["GPS"] = gps
    return piexif.dump(ifds)


def _image_ifd(station: StationInfo, capture: CaptureInfo, taken: dt.datetime) -> dict:
    return {
        piexif.ImageIFD.Make: _text(MAKE),
        piexif.ImageIFD.Model: _text(f"Raspberry Pi {station.camera_model}"),
        piexif.ImageIFD.Software: _text(SOFTWARE),
        piexif.ImageIFD.DateTime: _exif_datetime(taken),
        piexif.ImageIFD.ImageDescription: _text(
            f"{station.station_id} {capture.event_id} "
            f"{capture.sequence_text} {capture.trigger_source}"),
        piexif.ImageIFD.Artist: _text(station.owner),
        piexif.ImageIFD.Copyright: _text(f"(c) {taken.year} {station.owner}, {station.license}"),
        piexif.ImageIFD.Orientation: 1,
        piexif.ImageIFD.XResolution: (72, 1),
        piexif.ImageIFD.YResolution: (72, 1),
        piexif.ImageIFD.ResolutionUnit: 2,  # inches
        piexif.ImageIFD.YCbCrPositioning: 1,  # centered
    }


def _exif_ifd(station: StationInfo, capture: CaptureInfo, taken: dt.datetime) -> dict:
    when, subsec, offset = _exif_datetime(taken), _exif_subsec(taken), _exif_offset(taken)
    return {
        piexif.ExifIFD.ExifVersion: b"0232",
        piexif.ExifIFD.ComponentsConfiguration: b"\x01\x02\x03\x00",  # YCbCr
        piexif.ExifIFD.FlashpixVersion: b"0100",
        piexif.ExifIFD.ColorSpace: 1,  # sRGB
        piexif.ExifIFD.PixelXDimension: capture.width,
        piexif.ExifIFD.PixelYDimension: capture.height,
        piexif.ExifIFD.DateTimeOriginal: when,
        piexif.ExifIFD.SubSecTimeOriginal: subsec,
        piexif.ExifIFD.OffsetTimeOriginal: offset,
        piexif.ExifIFD.DateTimeDigitized: when,
        piexif.ExifIFD.SubSecTimeDigitized: subsec,
        piexif.ExifIFD.OffsetTimeDigitized: offset,
        piexif.ExifIFD.SubSecTime: subsec,  # with OffsetTime: completes DateTime
        piexif.ExifIFD.OffsetTime: offset,
        piexif.ExifIFD.BodySerialNumber: _text(station.serial_number),
        piexif.ExifIFD.CameraOwnerName: _text(station.owner),
        piexif.ExifIFD.ImageUniqueID: _text(capture.media_id),
        piexif.ExifIFD.UserComment: _user_comment(station, capture),
        **_sensor_tags(capture),
    }


def _sensor_tags(capture: CaptureInfo) -> dict:
    """Exposure, ISO and temperature, each only when the camera reported it."""
    tags = {}
    if capture.exposure_time_us is not None:
        tags[piexif.ExifIFD.ExposureTime] = (capture.exposure_time_us, 1_000_000)
    if capture.analogue_gain is not None and capture.digital_gain is not None:
        iso = round(capture.analogue_gain * capture.digital_gain * 100)
        tags[piexif.ExifIFD.ISOSpeedRatings] = min(iso, _MAX_ISO)
    if capture.temperature_c is not None:
        tags[piexif.ExifIFD.Temperature] = (round(capture.temperature_c * 10), 10)
    return tags


def gps_ifd(station: StationInfo) -> dict:
    """GPS tags for the station; empty when its position is unknown."""
    if station.latitude is None or station.longitude is None:
        return {}
    gps = {
        piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
        piexif.GPSIFD.GPSLatitudeRef: "N" if station.latitude >= 0 else "S",
        piexif.GPSIFD.GPSLatitude: _dms(station.latitude),
        piexif.GPSIFD.GPSLongitudeRef: "E" if station.longitude >= 0 else "W",
        piexif.GPSIFD.GPSLongitude: _dms(station.longitude),
        piexif.GPSIFD.GPSMapDatum: "WGS-84",
    }
    if station.elevation_m is not None:
        gps[piexif.GPSIFD.GPSAltitudeRef] = 0 if station.elevation_m >= 0 else 1
        gps[piexif.GPSIFD.GPSAltitude] = (round(abs(station.elevation_m) * 100), 100)
    if station.uncertainty_m is not None:
        gps[piexif.GPSIFD.GPSHPositioningError] = (station.uncertainty_m, 1)
    if station.heading_deg is not None:
        gps[piexif.GPSIFD.GPSImgDirectionRef] = "T"  # true north
        gps[piexif.GPSIFD.GPSImgDirection] = (station.heading_deg, 1)
    return gps


def _dms(degrees: float) -> tuple:
    """|degrees| as EXIF rationals (d, m, s/10000), split after rounding so
    seconds never come out as 60."""
    total = round(abs(degrees) * 3600 * 10_000)
    whole_degrees, rest = divmod(total, 3600 * 10_000)
    minutes, seconds = divmod(rest, 60 * 10_000)
    return ((whole_degrees, 1), (minutes, 1), (seconds, 10_000))


def utc_iso_ns(wall_time_ns: int) -> str:
    """ISO 8601 UTC with all nine digits of the nanoseconds."""
    seconds, nanos = divmod(wall_time_ns, 1_000_000_000)
    return f"{_EPOCH + dt.timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def _exif_datetime(t: dt.datetime) -> str:
    return t.strftime("%Y:%m:%d %H:%M:%S")


def _exif_subsec(t: dt.datetime) -> str:
    return f"{t.microsecond // 1000:03d}"


def _exif_offset(t: dt.datetime) -> str:
    offset = t.utcoffset()
    sign = "-" if offset < dt.timedelta(0) else "+"
    hours, minutes = divmod(abs(offset) // dt.timedelta(minutes=1), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def _user_comment(station: StationInfo, capture: CaptureInfo) -> bytes:
    pairs = [
        ("station", station.station_id),
        ("deployment", station.deployment_id),
        ("event", capture.event_id),
        ("seq", f"{capture.sequence}/{capture.event_length}"),
        ("trigger", capture.trigger_source),
        ("motion", _score(capture.motion_score)),
    ]
    if capture.moon_phase is not None:
        pairs.append(("moon", capture.moon_phase))
    if capture.clock_synchronised is not None:
        pairs.append(("clock", "synced" if capture.clock_synchronised else "unsynced"))
    comment = ";".join(f"{key}={value}" for key, value in pairs)
    encoding = "ascii" if comment.isascii() else "unicode"
    return piexif.helper.UserComment.dump(comment, encoding)


def _text(value: str) -> bytes:
    """EXIF ASCII tag value; UTF-8 so non-Latin names survive (piexif would
    otherwise encode str as Latin-1, or fail)."""
    return value.encode("utf-8")


def _score(motion_score: float | None) -> str:
    return "" if motion_score is None else str(motion_score)


# ------------------------------------------------------------------- XMP
_XMP_OPEN = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
    ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
    f'  <rdf:Description rdf:about="" xmlns:{XMP_PREFIX}="{XMP_NAMESPACE}">\n'
)
_XMP_CLOSE = (
    "  </rdf:Description>\n"
    " </rdf:RDF>\n"
    "</x:xmpmeta>\n"
    '<?xpacket end="w"?>'
)


def build_xmp(station: StationInfo, capture: CaptureInfo) -> bytes:
    """A complete UTF-8 XMP packet with the trap's fields."""
    body = "".join(f"   <{XMP_PREFIX}:{name}>{escape(value)}</{XMP_PREFIX}:{name}>\n"
                   for name, value in _xmp_fields(station, capture).items())
    return (_XMP_OPEN + body + _XMP_CLOSE).encode("utf-8")


def _xmp_fields(station: StationInfo, capture: CaptureInfo) -> dict[str, str]:
    fields = {
        "StationID": station.station_id,
        "DeploymentID": station.deployment_id,
        "MediaID": capture.media_id,
        "EventID": capture.event_id,
        "EventSequence": str(capture.sequence),
        "EventLength": str(capture.event_length),
        "CaptureMethod": capture.capture_method,
        "TriggerSource": capture.trigger_source,
    }
    if capture.motion_score is not None:
        fields["MotionScore"] = _score(capture.motion_score)
    fields["EventNumber"] = str(capture.event_number)
    fields["Sequence"] = capture.sequence_text
    # Exact values for rebuilding a damaged index from the photos (EXIF keeps milliseconds).
    fields["CaptureTime"] = utc_iso_ns(capture.wall_time_ns)
    if capture.sensor_timestamp_ns is not None:
        fields["SensorTimestamp"] = str(capture.sensor_timestamp_ns)
    if capture.pre_trigger is not None:
        fields["PreTrigger"] = "True" if capture.pre_trigger else "False"
    optional = {
        "MoonPhase": capture.moon_phase,
        "AmbientTemperature": capture.temperature_c,
        "CPUTemperature": capture.cpu_temperature_c,
        "BatteryVoltage": capture.battery_voltage_v,
    }
    fields.update({name: str(value) for name, value in optional.items() if value is not None})
    if capture.clock_synchronised is not None:
        fields["ClockSynchronised"] = "True" if capture.clock_synchronised else "False"
    return fields


# ------------------------------------------------------------------ JPEG
def tag_jpeg(jpeg: bytes, exif: bytes, xmp: bytes) -> bytes:
    """`jpeg` with an EXIF APP1 right after SOI, then an XMP APP1.

    Raises ValueError if `jpeg` is not an untagged JPEG (no SOI, or an APP1
    already present), if `exif` lacks its "Exif\\0\\0" header, or if either
    payload does not fit one segment.
    """
    if not jpeg.startswith(_SOI):
        raise ValueError("not a JPEG: missing SOI marker")
    if _APP1 in _header_markers(jpeg):
        raise ValueError("JPEG already has an APP1 (EXIF/XMP) segment")
    if not exif.startswith(_EXIF_HEADER):
        raise ValueError('EXIF payload must start with b"Exif\\x00\\x00"')
    if len(xmp) >= _MAX_XMP_BYTES:
        raise ValueError(f"XMP packet is {len(xmp)} bytes; it must be under {_MAX_XMP_BYTES}")
    # One copy of the (multi-megabyte) image data, not a slice and then a copy.
    return b"".join((_SOI, _app1(exif), _app1(_XMP_HEADER + xmp), memoryview(jpeg)[len(_SOI):]))


def _app1(payload: bytes) -> bytes:
    if len(payload) > _MAX_SEGMENT_PAYLOAD:
        raise ValueError(f"APP1 payload is {len(payload)} bytes; "
                         f"at most {_MAX_SEGMENT_PAYLOAD} fit one segment")
    return bytes([0xFF, _APP1]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _header_markers(jpeg: bytes) -> list[int]:
    """Marker codes of the segments between SOI and the start of scan."""
    markers, pos = [], len(_SOI)
    while pos + 4 <= len(jpeg):
        if jpeg[pos] != 0xFF:
            raise ValueError(f"corrupt JPEG: no marker at byte {pos}")
        marker = jpeg[pos + 1]
        markers.append(marker)
        if marker == _SOS:
            return markers
        pos += 2 + int.from_bytes(jpeg[pos + 2:pos + 4], "big")
    raise ValueError("truncated JPEG: no start of scan")
