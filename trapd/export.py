"""Camtrap DP 1.0.2 packages from the queue, and retiming them.

One package per deployment (the layout Agouti uploads and Timelapse folders
expect): datapackage.json, deployments.csv, media.csv, observations.csv and
the images under media/. Before anyone classifies them, each event is one
event-level observation of type `unclassified` spanning its first to last
image (data-standards.md §1).

Rules the standard is strict about: datetimes carry an offset and whole
seconds (the deployment's fixed `time.utc_offset`, no DST); integers are
written as integers; booleans as true/false; media are listed in capture order
(event number, then sequence), which stays true when the wall clock jumped.

Per-image trap facts (sequence, trigger, moon, temperatures, clock state) go in
media.exifData, read back from each image's own EXIF/XMP so the table says
what the file says. The coordinates follow `station.location.publish` at the
time of the export; with `rounded` or `omit`, images whose EXIF GPS is finer
than that are copied re-tagged (trapd/published_copy.py, shared with offload
and fleet sync; the card's originals are never touched).

The sequence "n of m" in media.exifData and in the copied images is the
index's (trapd/storage.py saved_frames: the frame's place among its event's
saved images, and their number, known once the event closed); the card's
photos carry only n (trapd/metadata.py), and a copy's EXIF is re-written by
metadata.dump_exif.

Every file is written to a temporary name, fsync'd and renamed.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import piexif

from trapd.config import Config
from trapd.deployments import Deployment, gaps_text
from trapd.errors import ExportError
from trapd.location import EXACT, for_export
from trapd.metadata import SOFTWARE, local_time, package_version, with_sequence_total
from trapd.published_copy import NotPublishable, publishable
from trapd.recovery import path_inside
from trapd.timekeeping import format_shift

log = logging.getLogger(__name__)

NS = 1_000_000_000
CAMTRAP_DP_VERSION = "1.0.2"
_CAMTRAP_DP_BASE = f"https://raw.githubusercontent.com/tdwg/camtrap-dp/{CAMTRAP_DP_VERSION}/"
PROFILE_URL = _CAMTRAP_DP_BASE + "camtrap-dp-profile.json"
MEDIA_DIR = "media"
CAPTURE_METHOD = {"pir": "activityDetection", "manual": "activityDetection", "timer": "timeLapse"}
PACKAGE_FILES = {"datapackage.json", "deployments.csv", "media.csv", "observations.csv", MEDIA_DIR}
_PACKAGE_NAME_CHARS = re.compile(r"[^-a-z0-9._]")
_LICENSE_NAME = re.compile(r"[-a-zA-Z0-9._]+")
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_TRAP_FIELD = re.compile(rb"<trap:(\w+)>([^<]*)</trap:\1>")
# EXIF tags copied into media.exifData, under exiftool's names.
_EXIF_TAGS = (("0th", piexif.ImageIFD.Make, "Make"), ("0th", piexif.ImageIFD.Model, "Model"),
              ("Exif", piexif.ExifIFD.DateTimeOriginal, "DateTimeOriginal"),
              ("Exif", piexif.ExifIFD.SubSecTimeOriginal, "SubSecTimeOriginal"),
              ("Exif", piexif.ExifIFD.OffsetTimeOriginal, "OffsetTimeOriginal"),
              ("Exif", piexif.ExifIFD.ExposureTime, "ExposureTime"),
              ("Exif", piexif.ExifIFD.ISOSpeedRatings, "ISO"),
              ("Exif", piexif.ExifIFD.Temperature, "AmbientTemperature"),
              ("Exif", piexif.ExifIFD.BodySerialNumber, "SerialNumber"))
_XMP_TAGS = ("EventNumber", "EventSequence", "EventLength", "Sequence", "TriggerSource",
             "MotionScore", "MoonPhase", "CPUTemperature", "BatteryVoltage", "ClockSynchronised")

DEPLOYMENT_FIELDS = (
    "deploymentID", "locationID", "locationName", "latitude", "longitude",
    "coordinateUncertainty", "deploymentStart", "deploymentEnd", "setupBy", "cameraID",
    "cameraModel", "cameraDelay", "cameraHeight", "cameraDepth", "cameraTilt", "cameraHeading",
    "detectionDistance", "timestampIssues", "baitUse", "featureType", "habitat",
    "deploymentGroups", "deploymentTags", "deploymentComments")
MEDIA_FIELDS = ("mediaID", "deploymentID", "captureMethod", "timestamp", "filePath", "filePublic",
                "fileName", "fileMediatype", "exifData", "favorite", "mediaComments")
OBSERVATION_FIELDS = (
    "observationID", "deploymentID", "mediaID", "eventID", "eventStart", "eventEnd",
    "observationLevel", "observationType", "cameraSetupType", "scientificName", "count",
    "lifeStage", "sex", "behavior", "individualID", "individualPositionRadius",
    "individualPositionAngle", "individualSpeed", "bboxX", "bboxY", "bboxWidth", "bboxHeight",
    "classificationMethod", "classifiedBy", "classificationTimestamp",
    "classificationProbability", "observationTags", "observationComments")
TABLES = {"deployments": DEPLOYMENT_FIELDS, "media": MEDIA_FIELDS,
          "observations": OBSERVATION_FIELDS}
# The camera times in each table, which `retime` shifts.
TIME_COLUMNS = {"deployments": ("deploymentStart", "deploymentEnd"), "media": ("timestamp",),
                "observations": ("eventStart", "eventEnd")}


@dataclass(frozen=True)
class ExportOptions:
    shift_ns: int = 0          # added to every camera time (a known clock error)
    copy_media: bool = True    # False: the images are already in OUTDIR/media (offload)
    media_root: Path | None = None  # where the frames' files are read from (default: the queue)
    # The deployment as the trap recorded it (start, end, gaps); None on a card from
    # before deployments were recorded: then its span is its images' and it needs some.
    deployment: Deployment | None = None


@dataclass
class ExportResult:
    outdir: Path
    frame_ids: list[int] = field(default_factory=list)
    events: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class _Media:
    frame: sqlite3.Row
    file_name: str
    tags: dict


def export_camtrap_dp(config: Config, frames: list[sqlite3.Row], outdir: Path,
                      options: ExportOptions = ExportOptions(), queue_root: Path | None = None
                      ) -> ExportResult:
    """Write a package of `frames` (rows of Store.saved_frames, one deployment,
    capture order) into `outdir`. Images that are missing or differ from
    their index checksum are left out and listed in `problems`."""
    outdir = Path(outdir)
    _prepare_outdir(outdir)
    result = ExportResult(outdir)
    media = _gather_media(config, frames, outdir, options, queue_root, result.problems)
    if not media and (options.deployment is None or result.problems):
        raise ExportError(f"nothing to export for deployment {config.station.deployment_id}"
                          + (f": {len(result.problems)} image(s) unreadable" if result.problems
                             else " (no saved images match)"))
    tz = config.time.tz
    events = _events(media)
    tables = {
        "deployments": [_deployment_row(config, media, events, options)],
        "media": [_media_row(m, tz, options.shift_ns) for m in media],
        "observations": [_observation_row(config, number, group, tz, options.shift_ns)
                         for number, group in events.items()],
    }
    for name, rows in tables.items():
        _write_atomically(outdir / f"{name}.csv", _csv_text(TABLES[name], rows))
    descriptor = _descriptor(config, tables["deployments"][0], media)
    _write_atomically(outdir / "datapackage.json", json.dumps(descriptor, indent=2).encode())
    result.frame_ids = [m.frame["id"] for m in media]
    result.events = len(events)
    return result


def parse_since(text: str, tz: dt.tzinfo) -> int:
    """--since: a date (midnight in the deployment's offset) or an ISO 8601 moment, as ns."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(f"--since {text!r}: expected a date YYYY-MM-DD or a moment "
                          "like 2026-11-26T16:00:00+10:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return int(moment.timestamp()) * NS


# ------------------------------------------------------------------ media
def _prepare_outdir(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise ExportError(f"{outdir} is a file, not a directory")
    if outdir.is_dir():
        strangers = sorted(p.name for p in outdir.iterdir() if p.name not in PACKAGE_FILES
                           and not p.name.endswith(".tmp"))
        if strangers:
            raise ExportError(f"{outdir} holds other files ({', '.join(strangers[:3])}...); "
                              "export into a new or empty directory, or one holding an earlier "
                              "export of this deployment")
    (outdir / MEDIA_DIR).mkdir(parents=True, exist_ok=True)


def _gather_media(config: Config, frames, outdir: Path, options: ExportOptions,
                  queue_root: Path | None, problems: list[str]) -> list[_Media]:
    media = []
    for frame in frames:
        name = Path(frame["file"]).name
        target = outdir / MEDIA_DIR / name
        try:
            if options.copy_media:
                data = _read_verified(_in_queue(queue_root, frame), frame)
                _place_copy(target, _with_true_sequence(_published(data, config), frame))
            else:   # offload's copy, verified against its own hash if it was re-tagged
                data = _read_verified(target, frame, _copy_sha256(frame))
        except ExportError as exc:
            problems.append(str(exc))
            log.error("%s", exc)
            continue
        media.append(_Media(frame, name, _with_index_sequence(_embedded_tags(data), frame)))
    return media


def _in_queue(queue_root: Path | None, frame: sqlite3.Row) -> Path:
    try:
        return path_inside(Path(queue_root or "."), frame["file"])
    except OSError as exc:
        raise ExportError(f"{frame['file']}: {exc.strerror}; left out of the package") from exc


def _read_verified(path: Path, frame: sqlite3.Row, sha256: str | None = None) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"{frame['file']}: cannot read the image ({exc.strerror}); "
                          "left out of the package") from exc
    if hashlib.sha256(data).hexdigest() != (sha256 or frame["sha256"]):
        raise ExportError(f"{frame['file']}: content differs from the index checksum "
                          "(corrupt or altered); left out of the package")
    return data


def _place_copy(target: Path, data: bytes) -> None:
    if target.exists() and target.read_bytes() == data:
        return
    _write_atomically(target, data)


def _copy_sha256(frame: sqlite3.Row) -> str:
    """The SHA-256 of an offloaded copy: its own if re-tagged, else the card's."""
    return frame["offload_sha256"] if "offload_sha256" in frame.keys() \
        and frame["offload_sha256"] else frame["sha256"]


def _published(jpeg: bytes, config: Config) -> bytes:
    """The copy's bytes under the current `publish` (trapd/published_copy.py)."""
    try:
        return publishable(jpeg, config.station.location.publish)
    except NotPublishable as exc:
        raise ExportError(f"{exc}; left out of the package") from exc


def _true_sequence(frame: sqlite3.Row) -> tuple[int, int] | None:
    """(n, m): the frame's place among its event's saved images and their
    number, from the index; None while the event is open (m not known yet)."""
    if "event_images" not in frame.keys() or frame["event_images"] is None:
        return None
    return frame["image_number"], frame["event_images"]


def _with_true_sequence(jpeg: bytes, frame: sqlite3.Row) -> bytes:
    """The copy's bytes carrying the index's "n of m" (the card's carry only n)."""
    true = _true_sequence(frame)
    return jpeg if true is None else with_sequence_total(jpeg, frame["event_id"], *true)


def _with_index_sequence(tags: dict, frame: sqlite3.Row) -> dict:
    """media.exifData's sequence fields from the index, never a total the file
    guessed (photos of earlier trapd versions carry the planned length at save time)."""
    xmp, true = tags["XMP-trap"], _true_sequence(frame)
    if true is None:
        xmp.pop("EventLength", None)
        if "Sequence" in xmp:
            xmp["Sequence"] = frame["sequence"]
    else:
        xmp["Sequence"], xmp["EventLength"] = f"{true[0]} of {true[1]}", true[1]
    tags["XMP-trap"] = {name: xmp[name] for name in _XMP_TAGS if name in xmp}
    return tags


def _embedded_tags(jpeg: bytes) -> dict:
    """The trap's EXIF and XMP facts of one image, for media.exifData."""
    exif = piexif.load(jpeg)
    tags = {"EXIF": {}, "XMP-trap": {}}
    for ifd, tag, name in _EXIF_TAGS:
        value = exif.get(ifd, {}).get(tag)
        if value is not None:
            tags["EXIF"][name] = _exif_value(name, value)
    start = jpeg.find(_XMP_HEADER)
    if start >= 0:
        found = dict(_XMP_TRAP_FIELD.findall(jpeg[start:start + 0x10000]))
        for name in _XMP_TAGS:
            if name.encode() in found:
                tags["XMP-trap"][name] = _typed(found[name.encode()].decode("utf-8"))
    return tags


def _exif_value(name: str, value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if name == "ExposureTime":
        numerator, denominator = value
        return f"1/{round(denominator / numerator)}" if numerator and numerator < denominator \
            else numerator / denominator
    if name == "AmbientTemperature":
        return round(value[0] / value[1], 1)
    return value


def _typed(text: str):
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# ----------------------------------------------------------------- tables
def _camtrap_time(wall_ns: int, tz: dt.tzinfo) -> str:
    return local_time(wall_ns, tz).replace(microsecond=0).isoformat()


def _events(media: list[_Media]) -> dict[int, list[_Media]]:
    events: dict[int, list[_Media]] = {}
    for m in media:
        events.setdefault(m.frame["event_number"], []).append(m)
    return events


def _media_row(m: _Media, tz: dt.tzinfo, shift_ns: int) -> dict:
    f = m.frame
    return {
        "mediaID": f["media_id"], "deploymentID": f["deployment_id"],
        "captureMethod": _capture_method(f["trigger"]),
        "timestamp": _camtrap_time(f["capture_wall_ns"] + shift_ns, tz),
        "filePath": f"{MEDIA_DIR}/{m.file_name}", "filePublic": "true",
        "fileName": m.file_name, "fileMediatype": "image/jpeg",
        "exifData": json.dumps(m.tags, separators=(",", ":"), ensure_ascii=False),
    }


def _observation_row(config: Config, event_number: int, group: list[_Media], tz: dt.tzinfo,
                     shift_ns: int) -> dict:
    times = [m.frame["capture_wall_ns"] + shift_ns for m in group]
    first = group[0].frame
    return {
        "observationID": f"{first['deployment_id']}-O{event_number:06d}",
        "deploymentID": first["deployment_id"], "eventID": first["event_id"],
        "eventStart": _camtrap_time(min(times), tz), "eventEnd": _camtrap_time(max(times), tz),
        "observationLevel": "event", "observationType": "unclassified",
        **_camera_setup_fields(first["trigger"]),
    }


# Technician photos (`trapd snapshot --setup` / `--pickup` or the setup page's buttons,
# trapd/technician.py SETUP_TRIGGERS):
# media.captureMethod is left empty (optional; its vocabulary, activityDetection | timeLapse,
# names neither a photo taken by hand), and the event's observation carries cameraSetupType
# `setup` ("Type of the camera setup action (if any) associated with the observation"; the
# vocabulary is setup | calibration, so a pickup is a `setup` action too, told apart by
# observationTags `cameraSetupAction:pickup`). observationType stays `unclassified`: nobody
# has looked at the photo yet. Readers count detections without cameraSetupType.
CAMERA_SETUP_TRIGGERS = ("setup", "pickup")


def _capture_method(trigger: str) -> str:
    if trigger in CAMERA_SETUP_TRIGGERS:
        return ""
    return CAPTURE_METHOD.get(trigger, "activityDetection")


def _camera_setup_fields(trigger: str) -> dict:
    if trigger not in CAMERA_SETUP_TRIGGERS:
        return {}
    return {"cameraSetupType": "setup", "observationTags": f"cameraSetupAction:{trigger}",
            "observationComments": f"{trigger} photo taken by the technician (trapd "
                                   f"snapshot --{trigger} or the setup page); not a detection"}


def _deployment_row(config: Config, media: list[_Media], events: dict,
                    options: ExportOptions) -> dict:
    station, where, mount = config.station, config.station.location, config.station.camera
    published = for_export(where.latitude, where.longitude, where.elevation_m,
                           where.uncertainty_m, where.publish)
    record, shift_ns = options.deployment, options.shift_ns
    start_ns, end_ns = _deployment_span(media, events) if media else (None, None)
    if record:      # a clock step can put images outside the recorded span: cover them too
        start_ns = min(record.start_ns, start_ns or record.start_ns)
        end_ns = max(record.end_ns, end_ns or record.end_ns)
    tags = [f"firmware:{package_version()}"]
    if published.elevation_m is not None:
        tags.append(f"elevation:{published.elevation_m:g}")
    if record:
        tags += [f"operatingDays:{record.effort_s / 86400:.4f}", f"gaps:{len(record.gaps)}"]
    first = media[0].tags["EXIF"] if media else {}
    return {
        "deploymentID": station.deployment_id, "locationID": station.station_id,
        "locationName": station.station_id,
        "latitude": published.latitude, "longitude": published.longitude,
        "coordinateUncertainty": published.uncertainty_m,
        "deploymentStart": _camtrap_time(start_ns + shift_ns, config.time.tz),
        "deploymentEnd": _camtrap_time(end_ns + shift_ns, config.time.tz),
        # the record's first: the same camera reads the same with images or without
        "cameraID": (record and record.camera_id) or first.get("SerialNumber", ""),
        "cameraModel": (record and record.camera_model) or
                       f"{first.get('Make', 'trapd')}-{first.get('Model', '')}".rstrip("-"),
        "cameraDelay": round(config.trigger.quiet_period_s),
        "cameraHeight": "" if mount.height_m is None else mount.height_m,
        "cameraTilt": "" if mount.tilt_deg is None else mount.tilt_deg,
        "cameraHeading": "" if mount.heading_deg is None else mount.heading_deg,
        "timestampIssues": _timestamp_issues([m.frame for m in media]),
        "deploymentTags": " | ".join(tags),
        "deploymentComments": "; ".join(filter(None, (
            _deployment_comments(media, where.publish, shift_ns),
            _effort_comments(record, config.time.tz, shift_ns)))),
    }


def _effort_comments(record: Deployment | None, tz: dt.tzinfo, shift_ns: int) -> str:
    """When the trap could not capture, as `from/to why` intervals a script can cut from
    the effort (README, "Trapping effort")."""
    if record is None:
        return ""
    notes = [{None: "deploymentEnd is the last time the trap was known running (not picked "
                    "up when exported)",
              "pickup": "deploymentEnd is the pickup (trapd deployment end)",
              "redeployed": "deploymentEnd is the last time the trap ran before it was "
                            "re-deployed under another deployment id"}.get(record.end_kind, "")]
    if record.gaps:
        notes.append("not capturing: " + gaps_text(record, tz, shift_ns))
    for step in record.clock_steps:
        when = dt.datetime.fromtimestamp((step["after_wall_ns"] + shift_ns) / NS, tz)
        notes.append(f"trap clock set {format_shift(step['step_ns'])} at "
                     f"{when.isoformat(timespec='seconds')} from the {step['source']}, "
                     f"confirmed by {step['confirmed_by']}")
    return "; ".join(filter(None, notes))


def _deployment_span(media: list[_Media], events: dict) -> tuple[int, int]:
    """First and last moment of the deployment on the trap's clock: its first
    trigger or image to its last image or event end, in whole seconds."""
    moments = [m.frame["capture_wall_ns"] for m in media]
    moments += [group[0].frame["trigger_wall_ns"] for group in events.values()]
    moments += [g[0].frame["ended_wall_ns"] for g in events.values() if g[0].frame["ended_wall_ns"]]
    start = min(moments) // NS * NS
    end = -(-max(moments) // NS) * NS
    return start, end


def _timestamp_issues(frames: list[sqlite3.Row]) -> str:
    """true if any event was taken on an unsynchronised clock or after a jump;
    false if every event was on a synchronised clock; empty when unrecorded."""
    if any(f["clock_synced"] == 0 or f["wall_jump_ns"] for f in frames):
        return "true"
    if frames and all(f["clock_synced"] == 1 for f in frames):
        return "false"
    return ""


def _deployment_comments(media: list[_Media], publish: str, shift_ns: int) -> str:
    notes = []
    jumps = {m.frame["event_id"]: m.frame["wall_jump_ns"] for m in media if m.frame["wall_jump_ns"]}
    for event_id, jump_ns in jumps.items():
        notes.append(f"trap clock stepped {format_shift(jump_ns)} before or during {event_id}")
    if any(m.frame["clock_synced"] == 0 for m in media):
        notes.append("trap clock not synchronised to a time source for some images")
    if shift_ns:
        notes.append(f"timestamps shifted {format_shift(shift_ns)} from the trap clock")
    if publish != EXACT:
        notes.append(f"coordinates generalised for species protection (publish: {publish})")
    return "; ".join(notes)


def _csv_text(fields: tuple[str, ...], rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return out.getvalue().encode("utf-8")


# ------------------------------------------------------------- descriptor
def _descriptor(config: Config, deployment: dict, media: list[_Media]) -> dict:
    station, project, where = config.station, config.project, config.station.location
    published = for_export(where.latitude, where.longitude, where.elevation_m,
                           where.uncertainty_m, where.publish)
    descriptor = {
        "resources": [_resource(name) for name in TABLES],
        "profile": PROFILE_URL,
        "name": _PACKAGE_NAME_CHARS.sub("-", station.deployment_id.lower()),
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"trapd:{station.deployment_id}")),
        "created": dt.datetime.fromtimestamp(int(time.time()), dt.timezone.utc)
                     .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "title": project.title or f"Camera trap station {station.station_id}",
        "contributors": _contributors(config),
        "description": (f"Images of station {station.station_id}, deployment "
                        f"{station.deployment_id}, exported by {SOFTWARE}; one unclassified "
                        "event-level observation per event."),
        "version": "1.0",
        "sources": [{"title": "trapd", "version": package_version()}],
        "project": {
            "title": project.title or f"Camera trap station {station.station_id}",
            "samplingDesign": project.sampling_design,
            "captureMethod": sorted({_capture_method(m.frame["trigger"]) for m in media} - {""}
                                    or {"activityDetection"}),
            "individualAnimals": project.individual_animals,
            "observationLevel": ["event"],
        },
        "spatial": {"type": "Point", "coordinates": [published.longitude, published.latitude]},
        "temporal": {"start": deployment["deploymentStart"][:10],
                     "end": deployment["deploymentEnd"][:10]},
        "taxonomic": [],
    }
    if published.precision_deg is not None:
        descriptor["coordinatePrecision"] = published.precision_deg
    licenses = _licenses(project.data_license, station.license)
    if licenses:
        descriptor["licenses"] = licenses
    return descriptor


def _resource(name: str) -> dict:
    return {"name": name, "path": f"{name}.csv", "profile": "tabular-data-resource",
            "format": "csv", "mediatype": "text/csv", "encoding": "utf-8",
            "schema": f"{_CAMTRAP_DP_BASE}{name}-table-schema.json"}


def _contributors(config: Config) -> list[dict]:
    people = [{k: v for k, v in vars(c).items() if v is not None}
              for c in config.project.contributors]
    if not people and config.station.owner:
        people = [{"title": config.station.owner, "role": "rightsHolder"}]
    return people


def _licenses(data_license: str, media_license: str) -> list[dict]:
    if not _LICENSE_NAME.fullmatch(media_license):
        log.warning("station.license %r is not a licence identifier (e.g. CC-BY-4.0); "
                    "the package names no licences", media_license)
        return []
    return [{"name": data_license, "scope": "data"}, {"name": media_license, "scope": "media"}]


# ----------------------------------------------------------------- retime
def retime_package(outdir: Path, shift_ns: int) -> int:
    """Shift every camera time in a package by `shift_ns` (whole seconds);
    the images are not touched. Returns the number of values changed."""
    outdir = Path(outdir)
    if shift_ns % NS:
        raise ExportError("a shift must be whole seconds (Camtrap DP times have no fractions)")
    descriptor = _read_descriptor(outdir)
    tables = {name: _read_table(outdir / f"{name}.csv") for name in TIME_COLUMNS}
    changed = 0
    for name, columns in TIME_COLUMNS.items():
        for row in tables[name][1]:
            for column in columns:
                row[column] = _shifted(row[column], shift_ns, f"{name}.csv {column}")
                changed += 1
    for row in tables["deployments"][1]:
        note = f"timestamps shifted {format_shift(shift_ns)} by trapd retime"
        row["deploymentComments"] = "; ".join(filter(None, [row.get("deploymentComments"), note]))
    for name, (fields, rows) in tables.items():
        _write_atomically(outdir / f"{name}.csv", _csv_text(fields, rows))
    _retime_temporal(descriptor, tables["deployments"][1])
    _write_atomically(outdir / "datapackage.json", json.dumps(descriptor, indent=2).encode())
    return changed


def _read_descriptor(outdir: Path) -> dict:
    try:
        return json.loads((outdir / "datapackage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{outdir}: not a readable Camtrap DP package "
                          f"(datapackage.json: {exc})") from exc


def _read_table(path: Path) -> tuple[tuple[str, ...], list[dict]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return tuple(reader.fieldnames or ()), list(reader)
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror}") from exc


def _shifted(stamp: str, shift_ns: int, where: str) -> str:
    if not stamp:
        return stamp
    try:
        moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ExportError(f"{where}: {stamp!r} is not a Camtrap DP datetime") from exc
    return (moment + dt.timedelta(seconds=shift_ns // NS)).isoformat()


def _retime_temporal(descriptor: dict, deployments: list[dict]) -> None:
    starts = [d["deploymentStart"][:10] for d in deployments if d.get("deploymentStart")]
    ends = [d["deploymentEnd"][:10] for d in deployments if d.get("deploymentEnd")]
    if starts and ends:
        descriptor["temporal"] = {"start": min(starts), "end": max(ends)}


# ------------------------------------------------------------------ files
def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
