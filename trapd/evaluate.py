"""Measure the empty-frame filter on labelled image sequences.

A manifest is a CSV with at least `file,sequence_id,frame_index,label`
(label animal|empty, paths relative to the manifest) and optionally `role`
(`background`: a frame of the same scene known to be empty, given to the
filter before the test frames, standing in for pre-trigger frames; default
`test`) and `condition` (reported by; without it, "day colour" or "night IR /
mono" from the pixels). Each sequence runs through the firmware's own filter
exactly as an event does in the trap. Background frames taken just before the
test frames are its pre-trigger frames (MotionFilter: background first, then
the test frames in order, each with the one before it as the previous camera
frame; the first has none). Background frames older than
OLDER_VIEW_AFTER_S by their EXIF DateTimeOriginal are an older view of the
empty scene, as a trap in standby has (BurstFilter), as is a sequence with
no background. Images
are reduced to the lores Y plane the way the camera's ISP does it: luma,
scaled to `hardware.camera.lores_size`.

The manifest must be UTF-8 text (a byte order mark, as spreadsheets write,
is fine). Images are JPEG or PNG, read from their header before they are
decoded: one larger than MAX_IMAGE_PIXELS is refused, naming the file and its
size, rather than decoded into gigabytes of memory.
"""

from __future__ import annotations

import csv
import io
import statistics
import struct
import time
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from pathlib import Path

import cv2
import numpy as np
import piexif
import simplejpeg

from trapd.burst_filter import BurstFilter
from trapd.config import Config
from trapd.errors import TrapdError
from trapd.motion import MotionFilter, MotionResult
from trapd.schema import read_text

REQUIRED_COLUMNS = ("file", "sequence_id", "frame_index", "label")
LABELS = ("animal", "empty")
ROLES = ("test", "background")
# Mean HSV saturation (0..255) below which an image is monochrome: IR or thermal.
MONO_SATURATION = 12
# Largest image decoded: 50 megapixels (150 MB as BGR), four times a 12 MP
# HQ camera frame and above what camera traps save.
MAX_IMAGE_PIXELS = 50_000_000
# Background frames this much older than the first test frame are no longer
# pre-trigger frames but an older view of the empty scene (standby).
OLDER_VIEW_AFTER_S = 60.0
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ManifestError(TrapdError, ValueError):
    pass


@dataclass(frozen=True)
class ManifestRow:
    file: Path
    sequence_id: str
    frame_index: int
    label: str
    role: str
    line: int
    condition: str = ""


def read_manifest(path: str | Path) -> list[list[ManifestRow]]:
    """Sequences in manifest order, each sorted by frame_index; every problem
    in the file is reported at once, with its line."""
    path = Path(path)
    text = read_text(path, str(path), _manifest_error).removeprefix("\ufeff")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}; "
                                f"expected at least {','.join(REQUIRED_COLUMNS)}")
        rows, problems = [], []
        for line, raw in enumerate(reader, start=2):
            row = _row(raw, path.parent, line, problems, path)
            if row:
                rows.append(row)
    except csv.Error as exc:
        raise ManifestError(f"{path}:{reader.line_num}: not a readable CSV ({exc})") from None
    if problems:
        raise ManifestError("\n".join(problems))
    order = {}
    for row in rows:
        order.setdefault(row.sequence_id, len(order))
    rows.sort(key=lambda r: (order[r.sequence_id], r.frame_index))
    return [list(group) for _, group in groupby(rows, key=lambda r: r.sequence_id)]


def _manifest_error(problems: list) -> ManifestError:
    return ManifestError("\n".join(str(problem) for problem in problems))


def _row(raw: dict, base: Path, line: int, problems: list[str], path: Path) -> ManifestRow | None:
    where = f"{path}:{line}"
    label, role = (raw.get("label") or "").strip(), (raw.get("role") or "test").strip() or "test"
    file = base / (raw.get("file") or "").strip()
    before = len(problems)
    if label not in LABELS:
        problems.append(f"{where}: label {label!r}: expected one of {', '.join(LABELS)}")
    if role not in ROLES:
        problems.append(f"{where}: role {role!r}: expected one of {', '.join(ROLES)}")
    if not file.is_file():
        problems.append(f"{where}: image {file} not found")
    try:
        index = int(raw.get("frame_index", ""))
    except ValueError:
        problems.append(f"{where}: frame_index {raw.get('frame_index')!r}: expected a whole number")
        index = 0
    if len(problems) > before:
        return None
    return ManifestRow(file, raw["sequence_id"].strip(), index, label, role, line,
                       (raw.get("condition") or "").strip())


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's or PNG's header, without decoding; None
    if `data` is neither (or its header is broken)."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError:
            return None
        return width, height
    return None


def read_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A JPEG or PNG as BGR; ManifestError naming the file if it cannot be
    read, is neither, or is larger than `max_pixels`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    size = image_size(data)
    if size is None:
        raise ManifestError(f"{path}: not a readable JPEG or PNG image")
    width, height = size
    if width * height > max_pixels:
        raise ManifestError(f"{path}: image is {width}x{height} ({width * height / 1e6:.0f} "
                            f"megapixels); at most {max_pixels / 1e6:.0f} megapixels are read")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ManifestError(f"{path}: not a readable image (damaged?)")
    return image


def load_lores_y(path: Path, lores_size: tuple[int, int]) -> np.ndarray:
    """The image as the lores stream's Y plane (BT.601 luma at lores size)."""
    image = read_image(path)
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2YUV)[:, :, 0]
    shrinking = luma.shape[1] > lores_size[0]
    return cv2.resize(luma, lores_size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def taken_at(path: Path) -> datetime | None:
    """EXIF DateTimeOriginal of a JPEG, if it has one."""
    try:
        value = piexif.load(str(path))["Exif"].get(piexif.ExifIFD.DateTimeOriginal)
        return datetime.strptime(value.decode("ascii").strip("\0 "), "%Y:%m:%d %H:%M:%S")
    except (ValueError, AttributeError, KeyError, struct.error, UnicodeDecodeError):
        return None


def background_age_s(background: list[ManifestRow], first_test: ManifestRow) -> float | None:
    """How much older the newest background frame is than the first test
    frame, by EXIF time; None if either has no time."""
    times = [taken_at(r.file) for r in background]
    test_time = taken_at(first_test.file)
    if not times or None in times or test_time is None:
        return None
    return abs((test_time - max(times)).total_seconds())


def image_condition(path: Path) -> str:
    """'day colour' or 'night IR / mono', from the pixels, not the label."""
    image = read_image(path)
    small = cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA)
    saturation = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)[:, :, 1].mean()
    return "night IR / mono" if saturation < MONO_SATURATION else "day colour"


@dataclass
class FrameScore:
    row: ManifestRow
    result: MotionResult
    condition: str
    seconds: float


def score_sequences(sequences: list[list[ManifestRow]], config: Config,
                    debug=None, load=load_lores_y) -> list[FrameScore]:
    """`load(path, lores_size)`: the lores Y plane of an image (a bench
    scoring the same frames many times passes a cached one)."""
    lores_size = config.hardware.camera.lores_size
    scores = []
    for sequence in sequences:
        background_rows = [r for r in sequence if r.role == "background"]
        tests = [r for r in sequence if r.role == "test"]
        background = [load(r.file, lores_size) for r in background_rows]
        frames = [load(r.file, lores_size) for r in tests]
        age = background_age_s(background_rows, tests[0]) if background_rows and tests else None
        if background and (age is None or age <= OLDER_VIEW_AFTER_S):
            results = _pre_trigger_results(config, background, frames)
        else:
            results = _standby_results(config, background, frames)
        for row, frame, (result, seconds) in zip(tests, frames, results):
            condition = row.condition or image_condition(row.file)
            scores.append(FrameScore(row, result, condition, seconds))
            if debug:
                debug.frame(row.sequence_id, row.file.stem, frame, result, row.label)
        if debug:
            debug.end_sequence(sequence[0].sequence_id)
    return scores


def _pre_trigger_results(config: Config, background, frames) -> list[tuple[MotionResult, float]]:
    """As the trap in streaming mode: the background frames are the frames before the trigger."""
    motion = MotionFilter(config.filter, config.hardware.camera)
    motion.set_background(background)
    previous, results = None, []
    for frame in frames:
        start = time.perf_counter()
        results.append((motion.score(frame, previous), time.perf_counter() - start))
        previous = frame
    return results


def _standby_results(config: Config, older_view, frames) -> list[tuple[MotionResult, float]]:
    """As the trap in standby: judged by the burst itself and an older view."""
    judge = BurstFilter(config.filter, config.hardware.camera, older_view)
    results, seconds = [], []
    for frame in frames:
        start = time.perf_counter()
        results += judge.add(frame)
        seconds.append(time.perf_counter() - start)
    results += judge.finish()
    return list(zip(results, seconds))


def summarise(scores: list[FrameScore]) -> dict:
    animal = [s for s in scores if s.row.label == "animal"]
    empty = [s for s in scores if s.row.label == "empty"]
    kept = [s for s in scores if s.result.keep]
    sequences = {}
    for s in animal:
        sequences[s.row.sequence_id] = sequences.get(s.row.sequence_id, False) or s.result.keep
    animal_kept = sum(s.result.keep for s in animal)
    empty_dropped = sum(not s.result.keep for s in empty)
    return {
        "animal_frames": len(animal),
        "animal_frames_kept": animal_kept,
        "empty_frames": len(empty),
        "empty_frames_dropped": empty_dropped,
        "animal_sequences": len(sequences),
        "animal_sequences_kept": sum(sequences.values()),
        "animal_frame_recall": _ratio(animal_kept, len(animal)),
        "empty_frame_rejection": _ratio(empty_dropped, len(empty)),
        "precision": _ratio(animal_kept, len(kept)),
        "unjudged_frames": sum(s.result.reference == "none" for s in scores),
        "ms_per_frame": statistics.median(s.seconds for s in scores) * 1000 if scores else 0.0,
    }


def evaluate(manifest: str | Path, config: Config, debug=None, load=load_lores_y) -> dict:
    scores = score_sequences(read_manifest(manifest), config, debug, load)
    report = summarise(scores)
    report["by_condition"] = {
        condition: summarise([s for s in scores if s.condition == condition])
        for condition in sorted({s.condition for s in scores})}
    report["frames"] = [{"file": str(s.row.file), "sequence_id": s.row.sequence_id,
                         "score": round(s.result.score, 6), "kept": s.result.keep,
                         "label": s.row.label, "condition": s.condition,
                         "reference": s.result.reference} for s in scores]
    return report


def format_report(report: dict) -> str:
    lines = [f"{'':<18}{'animal recall':>16}{'empty rejection':>18}{'precision':>11}{'sequences':>11}"]
    rows = [("all", report)] + list(report["by_condition"].items())
    for name, r in rows:
        lines.append(
            f"{name:<18}{_fraction(r['animal_frames_kept'], r['animal_frames']):>16}"
            f"{_fraction(r['empty_frames_dropped'], r['empty_frames']):>18}"
            f"{r['precision']:>11.3f}"
            f"{str(r['animal_sequences_kept']) + '/' + str(r['animal_sequences']):>11}")
    lines.append(f"median filter cost {report['ms_per_frame']:.3f} ms per frame; "
                 f"{report['unjudged_frames']} frame(s) kept with nothing to judge them by")
    return "\n".join(lines)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _fraction(part: int, whole: int) -> str:
    return f"{part}/{whole} {100 * _ratio(part, whole):5.1f}%" if whole else "-"
