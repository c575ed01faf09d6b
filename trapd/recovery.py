"""What the queue can learn from the card itself: trapd's own files, found
without following a link out of the storage root, and the index rows their
EXIF/XMP carries (for images whose rows were lost, or a whole index rebuilt).

Only files named as trapd names them, in folders that are not links, count as
trapd's: anything else below the root is left exactly where it is.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import html
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import piexif
import simplejpeg

from trapd.metadata import XMP_PREFIX

# <station>_<YYYYmmdd>_<HHMMSS>_E<event number>_<sequence>.jpg (trap._file_name)
IMAGE_NAME = re.compile(r"^.+_\d{8}_\d{6}_E(?P<number>\d{6,})_(?P<sequence>\d{2,})\.jpg$")
TEMP_NAME = re.compile(IMAGE_NAME.pattern[:-1] + r"\.tmp$")
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_FIELD = re.compile(rf"<{XMP_PREFIX}:(\w+)>(.*?)</{XMP_PREFIX}:\1>", re.S)
_MAX_IMAGE_BYTES = 64 * 1024 * 1024
REBUILT_NOTE = "rebuilt from its photos after the index lost it"


def real_root(root: Path) -> Path:
    return Path(os.path.realpath(root))


def is_inside(root_real: Path, path: Path) -> bool:
    """`path`, with every link resolved, lies below `root_real`."""
    resolved = Path(os.path.realpath(path))
    return resolved == root_real or root_real in resolved.parents


def path_inside(root: Path, relative: str) -> Path:
    """root/relative, or OSError if a link on the way leads out of the root."""
    path = Path(root) / relative
    if path.is_symlink() or not is_inside(real_root(Path(root)), path):
        raise OSError(errno.ELOOP, "reached through a link out of the storage root; not followed",
                      str(path))
    return path


def own_files(top: Path, root_real: Path, pattern: re.Pattern) -> Iterator[Path]:
    """Regular files named by `pattern` below `top`, never through a link
    (a linked folder or file is skipped, whatever it points at)."""
    if top.is_symlink() or not top.is_dir() or not is_inside(root_real, top):
        return
    for folder, subfolders, files in os.walk(top, followlinks=False):
        subfolders.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if pattern.match(name) and not path.is_symlink() and path.is_file():
                yield path


def highest_number_in_names(paths) -> int:
    numbers = [int(m["number"]) for p in paths if (m := IMAGE_NAME.match(p.name))]
    return max(numbers, default=0)


@dataclass(frozen=True)
class PhotoRecord:
    """An index row's worth of facts read back from one saved photo."""

    file: str                 # relative to the storage root
    size_bytes: int
    sha256: str
    station_id: str
    deployment_id: str
    event_id: str
    event_number: int
    sequence: int
    media_id: str
    trigger: str
    capture_wall_ns: int
    sensor_timestamp_ns: int
    pre_trigger: bool
    score: float | None


class NotOurPhoto(ValueError):
    """The file is not a complete photo with trapd's tags."""


def read_photo(path: Path, relative: str) -> PhotoRecord:
    with open(path, "rb", opener=_no_follow) as f:
        data = f.read(_MAX_IMAGE_BYTES + 1)
    if len(data) > _MAX_IMAGE_BYTES:
        raise NotOurPhoto(f"larger than {_MAX_IMAGE_BYTES // 2**20} MB")
    # Header and end marker, not a full decode: a rebuild may read thousands of photos.
    try:
        simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise NotOurPhoto(f"not a JPEG ({exc})") from exc
    if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        raise NotOurPhoto("truncated JPEG (no end marker)")
    fields = xmp_fields(data)
    try:
        number = int(fields["EventNumber"])
        sequence = int(fields["EventSequence"])
        record = PhotoRecord(
            file=relative, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
            station_id=fields["StationID"], deployment_id=fields["DeploymentID"],
            event_id=fields["EventID"], event_number=number, sequence=sequence,
            media_id=fields["MediaID"], trigger=fields.get("TriggerSource", "pir"),
            capture_wall_ns=_capture_wall_ns(fields, data),
            sensor_timestamp_ns=int(fields.get("SensorTimestamp", 0)),
            pre_trigger=fields.get("PreTrigger") == "True",
            score=float(fields["MotionScore"]) if fields.get("MotionScore") else None)
    except (KeyError, ValueError) as exc:
        raise NotOurPhoto(f"trapd's XMP tags missing or unreadable ({exc})") from exc
    name = IMAGE_NAME.match(path.name)
    if name is None or int(name["number"]) != number or int(name["sequence"]) != sequence:
        raise NotOurPhoto(f"its tags say event {number} frame {sequence}, its name does not")
    return record


def insert_photo_rows(db: sqlite3.Connection, photo: PhotoRecord, file_present) -> bool:
    """Index `photo` (and its event, if the index lost it) inside the caller's
    transaction; False if another image holds its place. `file_present(file)`
    says whether an indexed file is still on the card."""
    db.execute(
        "INSERT OR IGNORE INTO events (number, event_id, station_id, deployment_id,"
        " trigger, trigger_monotonic_ns, trigger_wall_ns, ended_wall_ns, state, note)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'interrupted', ?)",
        (photo.event_number, photo.event_id, photo.station_id, photo.deployment_id,
         photo.trigger, photo.sensor_timestamp_ns, photo.capture_wall_ns,
         photo.capture_wall_ns, REBUILT_NOTE))
    db.execute("UPDATE events SET trigger_wall_ns = MIN(trigger_wall_ns, ?),"
               " ended_wall_ns = MAX(ended_wall_ns, ?) WHERE number = ? AND note = ?",
               (photo.capture_wall_ns, photo.capture_wall_ns, photo.event_number,
                REBUILT_NOTE))
    taken = db.execute(
        "SELECT id, file, sha256 FROM frames WHERE (event_number = ? AND sequence = ?)"
        " OR media_id = ?", (photo.event_number, photo.sequence, photo.media_id)).fetchall()
    if taken:
        # Its row lost only the file name (a damaged index): give it back.
        row_id, file, sha = taken[0]
        if len(taken) > 1 or sha != photo.sha256 or file_present(file or ""):
            return False
        db.execute("UPDATE frames SET file = ?, state = ? WHERE id = ?",
                   (photo.file, "pending", row_id))
        return True
    db.execute(
        "INSERT INTO frames (event_number, sequence, sensor_timestamp_ns, capture_wall_ns,"
        " pre_trigger, score, kept, state, media_id, file, size_bytes, sha256)"
        " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
        (photo.event_number, photo.sequence, photo.sensor_timestamp_ns,
         photo.capture_wall_ns, int(photo.pre_trigger), photo.score, "pending",
         photo.media_id, photo.file, photo.size_bytes, photo.sha256))
    return True


def xmp_fields(jpeg: bytes) -> dict[str, str]:
    """trapd's XMP fields (`trap:Name` -> text) from a JPEG's XMP APP1 segment."""
    start = jpeg.find(b"\xff\xe1", 0, 2 * 65536 + 4)
    while start != -1:
        length = int.from_bytes(jpeg[start + 2:start + 4], "big")
        payload = jpeg[start + 4:start + 2 + length]
        if payload.startswith(_XMP_HEADER):
            text = payload[len(_XMP_HEADER):].decode("utf-8", "replace")
            return {name: html.unescape(value) for name, value in _XMP_FIELD.findall(text)}
        start = jpeg.find(b"\xff\xe1", start + 2 + length, 2 * 65536 + 4)
    return {}


def _capture_wall_ns(fields: dict, jpeg: bytes) -> int:
    """Exact from the XMP CaptureTime; older photos: EXIF's local time, milliseconds and offset."""
    if "CaptureTime" in fields:
        whole, _, fraction = fields["CaptureTime"].rstrip("Z").partition(".")
        seconds = dt.datetime.fromisoformat(whole).replace(tzinfo=dt.timezone.utc).timestamp()
        return int(seconds) * 1_000_000_000 + int(fraction.ljust(9, "0")[:9] or 0)
    exif = piexif.load(jpeg)["Exif"]
    taken = exif[piexif.ExifIFD.DateTimeOriginal].decode()
    offset = exif.get(piexif.ExifIFD.OffsetTimeOriginal, b"+00:00").decode()
    millis = int(exif.get(piexif.ExifIFD.SubSecTimeOriginal, b"0").decode() or 0)
    when = dt.datetime.strptime(taken + offset, "%Y:%m:%d %H:%M:%S%z")
    return int(when.timestamp()) * 1_000_000_000 + millis * 1_000_000


def _no_follow(path, flags):
    return os.open(path, flags | os.O_NOFOLLOW)


def set_aside_name(path: Path, wall: dt.datetime) -> Path:
    """A free name beside `path` for a damaged file that is kept, never overwritten."""
    stamp = wall.strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while candidate.exists() or candidate.is_symlink():
        candidate = path.with_name(f"{path.name}.damaged-{stamp}.{n}")
        n += 1
    return candidate


def free_name(target: Path) -> Path:
    """`target`, or `stem.N.suffix` for the first N that is free: never overwrite."""
    candidate, n = target, 1
    while candidate.exists() or candidate.is_symlink():
        candidate = target.with_name(f"{target.stem}.{n}{target.suffix}")
        n += 1
    return candidate
