"""Real footage as a scenario's scene: the `footage:` key of a scenario file.

Footage is a folder of frames (PNG or JPEG, played in file-name order, with an
optional labels CSV) or a manifest in the filter evaluation contract
(`file,sequence_id,frame_index,label[,role,condition]`: its sequences back to
back in manifest order, each in frame_index order). It plays once at its own
frame rate: footage frame i is shown from i / frame_rate to (i + 1) / frame_rate
seconds into the run, and the run ends when the footage does.

Labels give the ground truth: a frame is `animal`, `empty` or unlabelled (not
scored); a pass is a run of consecutive `animal` frames, and the PIR sees it.
Manifests are read by trapd.evaluate's reader, so the same files feed
`trapd eval-filter` and `trapd sim`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from trapd.evaluate import ManifestError, ManifestRow, image_size, read_manifest
from trapd.schema import NO_VALUE, Problem, Section, free_text, number, setting

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NS = 1_000_000_000
_PATH_TEXT = free_text(1000, min_chars=1)


@dataclass(frozen=True)
class FootageSpec(Section):
    """The `footage:` key as written; `path` None means a synthetic scene."""

    path: str | None = setting(_PATH_TEXT, None)      # folder of frames, or a manifest .csv
    frame_rate: float | None = setting(number(0.01, 1000, "frames per second"), None)
    labels: str | None = setting(_PATH_TEXT, None)    # CSV for a folder (evaluation contract)
    sequence: str | None = setting(free_text(200, min_chars=1), None)   # one of a manifest's

    def validate(self) -> list[Problem]:
        if self.path is None:
            return [Problem(name, None, NO_VALUE, "needs footage.path (a folder of frames or a "
                            "manifest .csv) beside it")
                    for name in ("frame_rate", "labels", "sequence") if getattr(self, name) is not None]
        if self.frame_rate is None:
            return [Problem("frame_rate", None, NO_VALUE, "missing: the footage's frames per "
                            "second, a number from 0.01 to 1000, e.g. frame_rate: 9")]
        return []


class FootageProblem(Exception):
    """Footage that cannot be played; `key` is the footage key at fault (path, labels, sequence)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class FootageFrame:
    file: Path
    label: str | None        # animal, empty, or None: not labelled, not scored


@dataclass(frozen=True)
class FootagePass:
    """A run of consecutive `animal` frames: the ground truth one pass is scored against."""

    first: int
    last: int
    frame_rate: float

    @property
    def enter_s(self) -> float:
        return self.first / self.frame_rate

    @property
    def leave_s(self) -> float:
        return (self.last + 1) / self.frame_rate


@dataclass(frozen=True)
class Footage:
    source: Path
    frames: tuple[FootageFrame, ...]
    frame_rate: float
    passes: tuple[FootagePass, ...]

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.frame_rate

    def index_at(self, since_start_ns: int) -> int | None:
        """The footage frame shown this long into the run; None before it or after its end."""
        index = math.floor(since_start_ns * self.frame_rate / NS + 1e-9)
        return index if 0 <= index < len(self.frames) else None


def label_runs(labels: list[str | None], frame_rate: float) -> tuple[FootagePass, ...]:
    runs, first = [], None
    for i, label in enumerate(labels + [None]):
        if label == "animal" and first is None:
            first = i
        elif label != "animal" and first is not None:
            runs.append(FootagePass(first, i - 1, frame_rate))
            first = None
    return tuple(runs)


def load_footage(spec: FootageSpec, base_dir: Path) -> Footage:
    """The frames and labels `spec` names, paths relative to `base_dir` (the
    scenario file's folder); FootageProblem naming the path when they cannot be used."""
    source = base_dir / spec.path
    if source.is_dir():
        frames = _folder_frames(source, spec, base_dir)
    elif source.is_file():
        frames = _manifest_frames(source, spec)
    else:
        raise FootageProblem("path", f"no such folder or manifest: {source}")
    for frame in frames:
        _check_image(frame.file)
    labels = [frame.label for frame in frames]
    return Footage(source, tuple(frames), spec.frame_rate, label_runs(labels, spec.frame_rate))


def _folder_frames(folder: Path, spec: FootageSpec, base_dir: Path) -> list[FootageFrame]:
    if spec.sequence is not None:
        raise FootageProblem("sequence", "only for a manifest; footage.path is a folder of frames")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FootageProblem("path", f"no PNG or JPEG frames in {folder}")
    labels = _labels_by_file(base_dir / spec.labels, files) if spec.labels else {}
    return [FootageFrame(f, labels.get(f.resolve())) for f in files]


def _labels_by_file(csv_path: Path, files: list[Path]) -> dict[Path, str]:
    """Each frame's label from a manifest; rows for other folders' files are left out."""
    if not csv_path.is_file():
        raise FootageProblem("labels", f"no such labels file: {csv_path}")
    wanted = {f.resolve() for f in files}
    labels: dict[Path, ManifestRow] = {}
    for row in _read_manifest(csv_path, "labels"):
        file = row.file.resolve()
        if file not in wanted:
            continue
        seen = labels.setdefault(file, row)
        if seen.label != row.label:
            raise FootageProblem("labels", f"{csv_path}: {row.file.name} is labelled {seen.label} "
                                 f"on line {seen.line} and {row.label} on line {row.line}")
    if not labels:
        raise FootageProblem("labels", f"{csv_path} labels none of the frames in "
                             f"{files[0].parent}")
    return {file: row.label for file, row in labels.items()}


def _manifest_frames(manifest: Path, spec: FootageSpec) -> list[FootageFrame]:
    if spec.labels is not None:
        raise FootageProblem("labels", "only for a folder of frames; a manifest carries its labels")
    rows = _read_manifest(manifest, "path")
    if spec.sequence is not None:
        rows = [r for r in rows if r.sequence_id == spec.sequence]
        if not rows:
            raise FootageProblem("sequence", f"{manifest} has no sequence {spec.sequence!r}")
    return [FootageFrame(r.file, r.label) for r in rows]


def _read_manifest(path: Path, key: str) -> list[ManifestRow]:
    try:
        return [row for sequence in read_manifest(path) for row in sequence]
    except ManifestError as exc:
        raise FootageProblem(key, str(exc)) from None


def _check_image(path: Path) -> None:
    """Refuse a frame that is not a JPEG or PNG before the run, not halfway through it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FootageProblem("path", f"{path}: cannot read the image ({exc.strerror or exc})") from None
    if image_size(data) is None:
        raise FootageProblem("path", f"{path}: not a readable JPEG or PNG image")
