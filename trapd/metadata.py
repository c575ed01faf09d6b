"""The "tag" stage: EXIF and XMP for one capture, spliced into its JPEG.

No I/O but a warning logged once per problem. `build_exif` and `build_xmp`
turn a station and a capture into metadata bytes; `tag_jpeg` inserts them
into an encoded JPEG:

    SOI, APP1 "Exif", APP1 XMP, <the encoder's own segments>, ...

What goes where follows the data-standards research note, §3-4: the standard EXIF tags
camera-trap tools read (DateTimeOriginal above all), GPS for the station, and
the trap's own fields (event, sequence, trigger) in XMP under XMP_NAMESPACE,
repeated as a flat ASCII UserComment and ImageDescription for EXIF-only readers.
A photo carries only what is true when it is written: its sequence number
(XMP EventSequence, Sequence "n", UserComment seq=n) and event id, never an
"of m" total, which a PIR re-trigger extending the burst would make false;
the final "n of m" is in the index and in exported copies (trapd/export.py).

Times: every date field comes from one `local_time`, floored to the
microsecond, so seconds and milliseconds always agree (never "...:59.1000").
EXIF text is written as UTF-8, which exiftool and PIL read back unchanged.

Whatever the station's and capture's texts hold (any length, any Unicode,
control characters), tagging never fails a frame: text is cleaned (`_clean`:
control characters become spaces, unpaired surrogates U+FFFD), owner and
licence are cut to TEXT_LIMITS, other over-long labels left out; a value
EXIF cannot hold is left out; and a payload still too big for its JPEG
segment loses its largest optional tags. What an index rebuild reads (event
id, number and sequence, capture time, media, station and deployment ids)
is never cut: if even that cannot fit, the frame is saved without that
segment. Each such problem is logged once, not for every frame.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from xml.sax.saxutils import escape

import piexif
import piexif.helper

from trapd.exif_writer import EXIF_HEADER as _EXIF_HEADER, dump_exif

XMP_NAMESPACE = "https://trapd.org/ns/trap/1.0/"  # owned by the project; never change
XMP_PREFIX = "trap"
MAKE = "trapd"

log = logging.getLogger(__name__)


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
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_MAX_SEGMENT_PAYLOAD = 0xFFFF - 2  # the length field counts itself
_MAX_XMP_BYTES = 65502  # packets must be shorter; an APP1 holds 65504 after the header
_MAX_ISO = 0xFFFF  # ISOSpeedRatings is a SHORT
_MAX_LONG = 0xFFFF_FFFF  # a RATIONAL's numerator and denominator

# Longest text the tags carry, in characters: an owner or licence beyond it is
# cut (ending "..."), a label (serial number, camera model, trigger source...)
# beyond it is left out. Station and deployment ids and the capture's own ids
# are never cut (an index rebuild reads them); config rules keep them short.
TEXT_LIMITS = {"station.owner": 256, "station.license": 256}
LABEL_LIMIT = 128
_ELLIPSIS = "..."
# Neither XML 1.0 nor an EXIF string (NUL ends it) can hold control characters;
# UTF-8 cannot encode unpaired surrogates, and U+FFFE/U+FFFF are not XML characters.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_UNENCODABLE = re.compile("[\ud800-\udfff\ufffe\uffff]")


class _WarnOnce:
    """Logs each distinct problem once, not for every frame. Remembers the last
    `size` problems seen (bounded; shared by the encoder threads)."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._seen: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, key: tuple, message: str, *args) -> None:
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return
            self._seen[key] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
        log.warning(message, *args)


_warn_once = _WarnOnce()


def _clean(what: str, value: str, limit: int | None = None, cut: bool = False) -> str | None:
    """`value` as the tags can carry it: control characters as spaces,
    unencodable characters as U+FFFD; longer than `limit` characters, cut
    (`cut`) or None (left out). `what` names it in the one warning."""
    text = _UNENCODABLE.sub("\ufffd", _CONTROL.sub(" ", value))
    if text != value:
        _warn_once((what, "characters", hash(value)),
                   "%s contains control characters or unencodable text; the images carry "
                   "it with those replaced (spaces, U+FFFD)", what)
    if limit is None or len(text) <= limit:
        return text
    if cut:
        _warn_once((what, "cut", hash(value)),
                   "%s is %d characters; the images carry its first %d", what, len(text),
                   limit - len(_ELLIPSIS))
        return text[:limit - len(_ELLIPSIS)] + _ELLIPSIS
    _warn_once((what, "dropped", hash(value)),
               "%s is %d characters (more than %d); left out of the images", what, len(text), limit)
    return None


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


def camera_identity(station: StationInfo) -> tuple[str, str]:
    """(serial, "Make-Model") as the photos' EXIF names the camera; ("", "") before the
    camera model is known."""
    if station.camera_model in ("", "unknown"):
        return "", ""
    return station.serial_number, f"{MAKE}-Raspberry Pi {station.camera_model}"


@dataclass(frozen=True)
class CaptureInfo:
    wall_time_ns: int  # capture time (UTC ns since the epoch), not save time
    media_id: str  # 32 hex digits
    event_id: str
    event_number: int
    sequence: int  # 1-based position in the event (its frame in the burst)
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
    # What the filter judged the frame by (MotionResult.reference).
    filter_reference: str | None = None
    moon_phase: str | None = None  # trapd.moon.PHASE_NAMES
    clock_synchronised: bool | None = None  # None = unknown
    pre_trigger: bool | None = None  # held from before the edge (None = not recorded)
    sensor_timestamp_ns: int | None = None  # the camera's SensorTimestamp (monotonic)
    # The event's final number of images, only where it is known: never when a
    # frame is saved (a PIR re-trigger can still extend the burst), so the
    # card's photos carry no total; export writes the true "n of m" from the
    # index into its copies and media.csv (trapd/export.py).
    event_length: int | None = None

    @property
    def sequence_text(self) -> str:
        """The sequence number, "n" (Reconyx-style "n of m" once the total is known)."""
        if self.event_length is None:
            return str(self.sequence)
        return f"{self.sequence} of {self.event_length}"


def local_time(wall_time_ns: int, tz: dt.tzinfo) -> dt.datetime:
    """Aware datetime in `tz`, floored to the microsecond (never rounded up)."""
    return (_EPOCH + dt.timedelta(microseconds=wall_time_ns // 1000)).astimezone(tz)


# ------------------------------------------------------------------ EXIF
def build_exif(station: StationInfo, capture: CaptureInfo) -> bytes:
    """The EXIF APP1 payload (b"Exif\\0\\0" + TIFF) for one capture, small enough
    for one JPEG segment. Optional tags that cannot be written, or do not fit,
    are left out (logged once); b"" (no EXIF) if not even the capture time can be."""
    try:
        taken = local_time(capture.wall_time_ns, station.utc_offset)
        required = _required_exif(taken)
        dump_exif(required)  # the capture time alone can be written
    except (ArithmeticError, ValueError, TypeError) as exc:
        _warn_once(("exif", "time", type(exc)), "capture time %r cannot be written in EXIF (%s); "
                   "images are saved without EXIF", capture.wall_time_ns, exc)
        return b""
    optional = _optional_exif(station, capture, taken)
    try:
        exif = dump_exif(_merged(required, optional))
    except Exception:  # some value EXIF cannot hold: find which, leave them out
        optional = [tag for tag in optional if _writable(tag)]
        exif = dump_exif(_merged(required, optional))
    dropped = []
    while len(exif) > _MAX_SEGMENT_PAYLOAD and optional:
        largest = max(optional, key=lambda tag: _value_size(tag[2]))
        optional.remove(largest)
        dropped.append(_exif_tag_name(largest))
        exif = dump_exif(_merged(required, optional))
    if dropped:
        _warn_once(("exif", "too big", tuple(dropped)),
                   "EXIF too big for one JPEG segment; left out: %s", ", ".join(dropped))
    return exif


def _required_exif(taken: dt.datetime) -> dict:
    """The tags every image carries: what made it, and when it was taken."""
    when, subsec, offset = _exif_datetime(taken), _exif_subsec(taken), _exif_offset(taken)
    return {
        "0th": {
            piexif.ImageIFD.Make: _text(MAKE),
            piexif.ImageIFD.Software: _text(SOFTWARE),
            piexif.ImageIFD.DateTime: when,
            piexif.ImageIFD.Orientation: 1,
            piexif.ImageIFD.XResolution: (72, 1),
            piexif.ImageIFD.YResolution: (72, 1),
            piexif.ImageIFD.ResolutionUnit: 2,  # inches
            piexif.ImageIFD.YCbCrPositioning: 1,  # centered
        },
        "Exif": {
            piexif.ExifIFD.ExifVersion: b"0232",
            piexif.ExifIFD.ComponentsConfiguration: b"\x01\x02\x03\x00",  # YCbCr
            piexif.ExifIFD.FlashpixVersion: b"0100",
            piexif.ExifIFD.ColorSpace: 1,  # sRGB
            piexif.ExifIFD.DateTimeOriginal: when,
            piexif.ExifIFD.SubSecTimeOriginal: subsec,
            piexif.ExifIFD.OffsetTimeOriginal: offset,
            piexif.ExifIFD.DateTimeDigitized: when,
            piexif.ExifIFD.SubSecTimeDigitized: subsec,
            piexif.ExifIFD.OffsetTimeDigitized: offset,
            piexif.ExifIFD.SubSecTime: subsec,  # with OffsetTime: completes DateTime
            piexif.ExifIFD.OffsetTime: offset,
        },
    }


def _optional_exif(station: StationInfo, capture: CaptureInfo, taken: dt.datetime) -> list:
    """(ifd, tag, value) for the rest: station, owner, capture identity, sensors, GPS."""
    owner = _clean("station.owner", station.owner, TEXT_LIMITS["station.owner"], cut=True)
    license_ = _clean("station.license", station.license, TEXT_LIMITS["station.license"], cut=True)
    model = _clean("camera model", station.camera_model, LABEL_LIMIT)
    serial = _clean("station.serial_number", station.serial_number, LABEL_LIMIT)
    media_id = _clean("media id", capture.media_id)
    image = {
        piexif.ImageIFD.ImageDescription: _text(_description(station, capture)),
        piexif.ImageIFD.Artist: _text(owner),
        piexif.ImageIFD.Copyright: _text(f"(c) {taken.year} {owner}, {license_}"),
    }
    if model is not None:
        image[piexif.ImageIFD.Model] = _text(f"Raspberry Pi {model}")
    exif = {
        piexif.ExifIFD.PixelXDimension: capture.width,
        piexif.ExifIFD.PixelYDimension: capture.height,
        piexif.ExifIFD.CameraOwnerName: _text(owner),
        piexif.ExifIFD.ImageUniqueID: _text(media_id),
        piexif.ExifIFD.UserComment: _user_comment(station, capture),
        **_sensor_tags(capture),
    }
    if serial is not None:
        exif[piexif.ExifIFD.BodySerialNumber] = _text(serial)
    return ([("0th", tag, value) for tag, value in image.items()]
            + [("Exif", tag, value) for tag, value in exif.items()]
            + [("GPS", tag, value) for tag, value in gps_ifd(station).items()])


def _description(station: StationInfo, capture: CaptureInfo) -> str:
    parts = (_clean("station.station_id", station.station_id), _clean("event id", capture.event_id),
             capture.sequence_text, _clean("trigger source", capture.trigger_source, LABEL_LIMIT))
    return " ".join(part for part in parts if part)


def _merged(required: dict, optional: list) -> dict:
    ifds = {name: dict(tags) for name, tags in required.items()}
    for ifd, tag, value in optional:
        ifds.setdefault(ifd, {})[tag] = value
    return ifds


def _writable(tag: tuple) -> bool:
    ifd, number, value = tag
    try:
        dump_exif({ifd: {number: value}})
        return True
    except Exception as exc:  # struct.error, ValueError, TypeError, KeyError...
        _warn_once(("exif", ifd, number, type(exc)), "EXIF %s cannot hold %.60r (%s); left out",
                   _exif_tag_name(tag), value, exc)
        return False


def _exif_tag_name(tag: tuple) -> str:
    return piexif.TAGS["Image" if tag[0] == "0th" else tag[0]][tag[1]]["name"]


def _value_size(value) -> int:
    return len(value) if isinstance(value, (bytes, str)) else 8


def _sensor_tags(capture: CaptureInfo) -> dict:
    """Exposure, ISO and temperature, each only when the camera reported a number."""
    tags = {}
    if capture.exposure_time_us is not None:
        tags[piexif.ExifIFD.ExposureTime] = (capture.exposure_time_us, 1_000_000)
    if capture.analogue_gain is not None and capture.digital_gain is not None:
        gain = capture.analogue_gain * capture.digital_gain
        if math.isfinite(gain):
            tags[piexif.ExifIFD.ISOSpeedRatings] = max(0, min(round(gain * 100), _MAX_ISO))
    if capture.temperature_c is not None and math.isfinite(capture.temperature_c):
        tags[piexif.ExifIFD.Temperature] = (round(capture.temperature_c * 10), 10)
    return tags


def gps_ifd(station: StationInfo) -> dict:
    """GPS tags for the station; empty when its position is unknown (or not a
    position at all); a value EXIF cannot hold is left out."""
    if station.latitude is None or station.longitude is None:
        return {}
    if not (abs(station.latitude) <= 90 and abs(station.longitude) <= 180):  # also NaN
        _warn_once(("gps", station.latitude, station.longitude),
                   "station position %r, %r is not a position; images carry no GPS",
                   station.latitude, station.longitude)
        return {}
    gps = {
        piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
        piexif.GPSIFD.GPSLatitudeRef: "N" if station.latitude >= 0 else "S",
        piexif.GPSIFD.GPSLatitude: _dms(station.latitude),
        piexif.GPSIFD.GPSLongitudeRef: "E" if station.longitude >= 0 else "W",
        piexif.GPSIFD.GPSLongitude: _dms(station.longitude),
        piexif.GPSIFD.GPSMapDatum: "WGS-84",
    }
    if _rational_fits("station elevation", station.elevation_m, 100, signed=True):
        gps[piexif.GPSIFD.GPSAltitudeRef] = 0 if station.elevation_m >= 0 else 1
        gps[piexif.GPSIFD.GPSAltitude] = (round(abs(station.elevation_m) * 100), 100)
    if _rational_fits("station position uncertainty", station.uncertainty_m, 1):
        gps[piexif.GPSIFD.GPSHPositioningError] = (round(station.uncertainty_m), 1)
    if _rational_fits("camera heading", station.heading_deg, 1):
        gps[piexif.GPSIFD.GPSImgDirectionRef] = "T"  # true north
        gps[piexif.GPSIFD.GPSImgDirection] = (round(station.heading_deg), 1)
    return gps


def _rational_fits(what: str, value: float | None, denominator: int, signed: bool = False) -> bool:
    """Whether `value` is set and an unsigned EXIF rational over `denominator`
    can hold it (its magnitude, if `signed`); out of range is logged once."""
    if value is None:
        return False
    if 0 <= (abs(value) if signed else value) * denominator <= _MAX_LONG:  # False for NaN
        return True
    _warn_once(("rational", what, value), "%s %r does not fit EXIF; left out", what, value)
    return False


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
        ("station", _clean("station.station_id", station.station_id)),
        ("deployment", _clean("station.deployment_id", station.deployment_id)),
        ("event", _clean("event id", capture.event_id)),
        ("seq", str(capture.sequence) if capture.event_length is None
         else f"{capture.sequence}/{capture.event_length}"),
        ("trigger", _clean("trigger source", capture.trigger_source, LABEL_LIMIT)),
        ("motion", _score(capture.motion_score)),
    ]
    if capture.moon_phase is not None:
        pairs.append(("moon", _clean("moon phase", capture.moon_phase, LABEL_LIMIT)))
    if capture.clock_synchronised is not None:
        pairs.append(("clock", "synced" if capture.clock_synchronised else "unsynced"))
    comment = ";".join(f"{key}={value}" for key, value in pairs if value is not None)
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


# What an index rebuild reads from a photo (trapd/recovery.py): never cut or left
# out alone; if these cannot fit one segment, the photo has no XMP.
XMP_REBUILD_FIELDS = frozenset({"StationID", "DeploymentID", "MediaID", "EventID", "EventNumber",
                                "EventSequence", "CaptureTime", "SensorTimestamp", "PreTrigger"})


def build_xmp(station: StationInfo, capture: CaptureInfo) -> bytes:
    """A complete UTF-8 XMP packet with the trap's fields, small enough for one
    JPEG segment: if too big, its largest optional fields are left out (logged
    once); b"" (no XMP) if even the fields an index rebuild reads do not fit."""
    fields = _xmp_fields(station, capture)
    packet = _xmp_packet(fields)
    dropped = []
    optional = [name for name in fields if name not in XMP_REBUILD_FIELDS]
    while len(packet) >= _MAX_XMP_BYTES and optional:
        largest = max(optional, key=lambda name: len(fields[name]))
        optional.remove(largest)
        dropped.append(largest)
        del fields[largest]
        packet = _xmp_packet(fields)
    if len(packet) >= _MAX_XMP_BYTES:
        _warn_once(("xmp", "no room"),
                   "XMP would be %d bytes even without optional fields (one JPEG segment holds "
                   "%d); images are saved without XMP", len(packet), _MAX_XMP_BYTES - 1)
        return b""
    if dropped:
        _warn_once(("xmp", "too big", tuple(dropped)),
                   "XMP too big for one JPEG segment; left out: %s", ", ".join(dropped))
    return packet


def _xmp_packet(fields: dict[str, str]) -> bytes:
    body = "".join(f"   <{XMP_PREFIX}:{name}>{escape(value)}</{XMP_PREFIX}:{name}>\n"
                   for name, value in fields.items())
    return (_XMP_OPEN + body + _XMP_CLOSE).encode("utf-8")


def _xmp_fields(station: StationInfo, capture: CaptureInfo) -> dict[str, str]:
    """Field name -> text, cleaned (`_clean`); a label left out is not there."""
    fields = {
        "StationID": _clean("station.station_id", station.station_id),
        "DeploymentID": _clean("station.deployment_id", station.deployment_id),
        "MediaID": _clean("media id", capture.media_id),
        "EventID": _clean("event id", capture.event_id),
        "EventSequence": str(capture.sequence),
        "EventLength": None if capture.event_length is None else str(capture.event_length),
        "CaptureMethod": _clean("capture method", capture.capture_method, LABEL_LIMIT),
        "TriggerSource": _clean("trigger source", capture.trigger_source, LABEL_LIMIT),
    }
    if capture.motion_score is not None:
        fields["MotionScore"] = _score(capture.motion_score)
    if capture.filter_reference is not None:
        fields["FilterReference"] = _clean("filter reference", capture.filter_reference, LABEL_LIMIT)
    fields["EventNumber"] = str(capture.event_number)
    fields["Sequence"] = capture.sequence_text
    # Exact values for rebuilding a damaged index from the photos (EXIF keeps milliseconds).
    try:
        fields["CaptureTime"] = utc_iso_ns(capture.wall_time_ns)
    except (ArithmeticError, ValueError) as exc:
        _warn_once(("xmp", "time", type(exc)), "capture time %r cannot be written in XMP (%s)",
                   capture.wall_time_ns, exc)
    if capture.sensor_timestamp_ns is not None:
        fields["SensorTimestamp"] = str(capture.sensor_timestamp_ns)
    if capture.pre_trigger is not None:
        fields["PreTrigger"] = "True" if capture.pre_trigger else "False"
    optional = {
        "MoonPhase": (None if capture.moon_phase is None
                      else _clean("moon phase", capture.moon_phase, LABEL_LIMIT)),
        "AmbientTemperature": capture.temperature_c,
        "CPUTemperature": capture.cpu_temperature_c,
        "BatteryVoltage": capture.battery_voltage_v,
    }
    fields.update({name: str(value) for name, value in optional.items() if value is not None})
    if capture.clock_synchronised is not None:
        fields["ClockSynchronised"] = "True" if capture.clock_synchronised else "False"
    return {name: value for name, value in fields.items() if value is not None}


# ------------------------------------------------------------------ JPEG
def tag_jpeg(jpeg: bytes, exif: bytes, xmp: bytes) -> bytes:
    """`jpeg` with an EXIF APP1 right after SOI, then an XMP APP1.

    An empty payload is left out, and so is one too big for a segment (logged
    once): the frame is saved with less metadata rather than lost.
    Raises ValueError if `jpeg` is not an untagged JPEG (no SOI, or an APP1
    already present), or if `exif` lacks its "Exif\\0\\0" header.
    """
    if not jpeg.startswith(_SOI):
        raise ValueError("not a JPEG: missing SOI marker")
    if _APP1 in _header_markers(jpeg):
        raise ValueError("JPEG already has an APP1 (EXIF/XMP) segment")
    if exif and not exif.startswith(_EXIF_HEADER):
        raise ValueError('EXIF payload must start with b"Exif\\x00\\x00"')
    segments = [_SOI]
    if _fits("EXIF", len(exif), _MAX_SEGMENT_PAYLOAD + 1):
        segments.append(_app1(exif))
    if _fits("XMP", len(xmp), _MAX_XMP_BYTES):
        segments.append(_app1(_XMP_HEADER + xmp))
    # One copy of the (multi-megabyte) image data, not a slice and then a copy.
    segments.append(memoryview(jpeg)[len(_SOI):])
    return b"".join(segments)


def _fits(what: str, size: int, under: int) -> bool:
    """Whether a payload of `size` bytes is there and under `under`; else logged once."""
    if size >= under:
        _warn_once(("segment", what), "%s payload is %d bytes, more than one JPEG segment holds "
                   "(%d); images are saved without it", what, size, under - 1)
    return 0 < size < under


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


# ------------------------------------------------------- the final "n of m"
_XMP_FIELD = "<{prefix}:{name}>{value}</{prefix}:{name}>"


def with_sequence_total(jpeg: bytes, event_id: str, number: int, total: int) -> bytes:
    """A copy of one of our photos saying it is image `number` of the `total`
    images of event `event_id` (known once the event closed; from the index):
    XMP Sequence "n of m" and EventLength m, ImageDescription "... n of m ...",
    UserComment seq=n/m. Every other tag and the image data are as they were;
    the EXIF segment is re-written by dump_exif (so a copy of a photo written
    by piexif.dump comes out clean too). A field that is not there, or not in
    our format, is left as it is."""
    sequence = f"{number} of {total}"
    out = _with_app1(jpeg, _XMP_HEADER, lambda packet: _xmp_with_sequence(packet, sequence, total))
    return _with_app1(out, _EXIF_HEADER, lambda tiff: _exif_with_sequence(
        tiff, event_id.encode("utf-8"), number, total))


def _exif_with_sequence(tiff: bytes, event_id: bytes, number: int, total: int) -> bytes:
    try:
        exif = piexif.load(_EXIF_HEADER + tiff)
    except Exception:  # not readable EXIF: nothing to correct
        return tiff
    image, main = exif.get("0th", {}), exif.get("Exif", {})
    description = image.get(piexif.ImageIFD.ImageDescription)
    if isinstance(description, bytes):
        image[piexif.ImageIFD.ImageDescription] = re.sub(
            re.escape(event_id) + rb" \d+(?: of \d+)?(?= |$)",
            lambda m: event_id + f" {number} of {total}".encode(), description, count=1)
    comment = main.get(piexif.ExifIFD.UserComment)
    if isinstance(comment, bytes):
        try:
            text = piexif.helper.UserComment.load(comment)
        except ValueError:
            text = None
        if text is not None:
            text = re.sub(r"(?<![^;])seq=[^;]*", f"seq={number}/{total}", text, count=1)
            main[piexif.ExifIFD.UserComment] = piexif.helper.UserComment.dump(
                text, "ascii" if text.isascii() else "unicode")
    try:  # re-written even if unchanged: a photo of an older trapd had piexif's layout
        return dump_exif(exif)[len(_EXIF_HEADER):]
    except Exception:  # a value or a thumbnail dump_exif does not write
        return tiff


def _xmp_with_sequence(packet: bytes, sequence: str, total: int) -> bytes:
    def field(name: str, value) -> bytes:
        return _XMP_FIELD.format(prefix=XMP_PREFIX, name=name, value=value).encode()

    def pattern(name: str) -> bytes:
        return re.escape(field(name, "@")).replace(b"@", rb"[^<]*")

    if not re.search(pattern("Sequence"), packet):
        return packet
    packet = re.sub(pattern("Sequence"), lambda m: field("Sequence", sequence), packet, count=1)
    if re.search(pattern("EventLength"), packet):
        return re.sub(pattern("EventLength"), lambda m: field("EventLength", total), packet,
                      count=1)
    # Where build_xmp puts it, right after EventSequence (else before Sequence).
    anchor = re.search(pattern("EventSequence") + rb"\n", packet) \
        or re.search(rb"[ \t]*" + pattern("Sequence"), packet)
    at = anchor.end() if anchor.group().endswith(b"\n") else anchor.start()
    return packet[:at] + b"   " + field("EventLength", total) + b"\n" + packet[at:]


def _with_app1(jpeg: bytes, header: bytes, change) -> bytes:
    """`jpeg` with the payload of its first APP1 segment starting with `header`
    replaced by change(rest of payload); unchanged if there is none, or if the
    new payload does not fit one segment."""
    pos = len(_SOI)
    while pos + 4 <= len(jpeg) and jpeg[pos] == 0xFF and jpeg[pos + 1] != _SOS:
        end = pos + 2 + int.from_bytes(jpeg[pos + 2:pos + 4], "big")
        payload = jpeg[pos + 4:end]
        if jpeg[pos + 1] == _APP1 and payload.startswith(header):
            new = change(payload[len(header):])
            if new == payload[len(header):] or len(header) + len(new) > _MAX_SEGMENT_PAYLOAD \
                    or (header == _XMP_HEADER and len(new) >= _MAX_XMP_BYTES):
                return jpeg
            return jpeg[:pos] + _app1(header + new) + jpeg[end:]
        pos = end
    return jpeg
