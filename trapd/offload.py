"""Offload: copy the queue's images and a Camtrap DP package to a drive.

Layout on the drive: DEST/<deploymentID>/media/<file name> and, beside
media/, the package files of the current deployment (trapd/export.py).

Per image, in capture order:
1. read the card's file and check it against its index SHA-256 (a corrupt or
   missing image is reported by name, not copied, not marked);
2. if the drive already holds the file with that checksum (an earlier run was
   stopped after the copy but before step 4), keep it: no second copy;
3. otherwise write `<name>.partial`, fsync, drop it from the page cache,
   read it back from the drive and compare SHA-256, then rename it into
   place and fsync the directory: a final name only ever holds a verified copy;
4. mark the frame `offloaded` in the index, with where it went.

Stopped at any instant, a rerun finds every image either marked, or verified
on the drive, or not yet there (a stale .partial is overwritten), so it ends
with each image copied exactly once. Nothing on the card is deleted unless
`free=True`, and then only images whose copy on this drive checks out now.
"""

from __future__ import annotations

import errno
import io
import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from trapd.config import Config
from trapd.errors import ExportError, OffloadError
from trapd.export import MEDIA_DIR, ExportOptions, export_camtrap_dp
from trapd.storage import FREED, NOT_OFFLOADED, OFFLOADED, Store, fsync_dir
from trapd.recovery import path_inside

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
MB = 1024 * 1024


class _SkipImage(Exception):
    """This image cannot be offloaded now; the message says why."""


@dataclass
class OffloadResult:
    dest: Path
    copied: int = 0
    already_there: int = 0
    freed: int = 0
    bytes_copied: int = 0
    package: Path | None = None
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"offload to {self.dest}: {self.copied} images copied and verified "
                f"({self.bytes_copied / MB:.1f} MB), {self.already_there} already there")
        if self.freed:
            text += f", {self.freed} freed from the card"
        if self.package:
            text += f"; Camtrap DP package in {self.package}"
        return text


class Progress:
    """A bar on a terminal; otherwise a plain line at every tenth of the work."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.total = 0
        self._last_tenth = -1

    def start(self, total: int) -> None:
        self.total = total
        self._write_line(f"offload: {total} images to copy")

    def advance(self, done: int, name: str) -> None:
        if self.tty:
            width = 30
            filled = width * done // max(self.total, 1)
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] "
                              f"{done}/{self.total} {name[:40]:<40}")
            self.stream.flush()
            return
        tenth = 10 * done // max(self.total, 1)
        if tenth != self._last_tenth or done == self.total:
            self._last_tenth = tenth
            self._write_line(f"offload: {done}/{self.total} images ({name})")

    def finish(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()

    def _write_line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def offload(store: Store, config: Config, dest: Path, free: bool = False,
            progress: Progress | None = None) -> OffloadResult:
    dest = _checked_destination(dest)
    dest_key = str(dest)
    progress = progress or Progress(io.StringIO())
    result = OffloadResult(dest)
    frames = store.saved_frames(NOT_OFFLOADED)
    progress.start(len(frames))
    try:
        for done, frame in enumerate(frames, 1):
            _offload_frame(store, frame, dest, dest_key, result)
            progress.advance(done, Path(frame["file"]).name)
    finally:
        progress.finish()
    _write_package(store, config, dest, dest_key, result)
    if free:
        _free_verified(store, dest, dest_key, result)
    return result


def _checked_destination(dest: Path) -> Path:
    if not dest.is_dir():
        raise OffloadError(f"offload destination {dest} does not exist or is not a directory "
                           "(is the drive mounted?)")
    if not os.access(dest, os.W_OK):
        raise OffloadError(f"offload destination {dest} is not writable")
    return dest.resolve()


def _offload_frame(store: Store, frame, dest: Path, dest_key: str, result: OffloadResult) -> None:
    relative = f"{frame['deployment_id']}/{MEDIA_DIR}/{Path(frame['file']).name}"
    try:
        data = _card_copy(store.root, frame)
        copied = _copy_verified(data, dest / relative, frame["sha256"])
    except _SkipImage as exc:
        result.problems.append(f"{frame['file']}: {exc}")
        log.error("not offloaded: %s: %s", frame["file"], exc)
        return
    store.mark_offloaded(frame["id"], dest_key, relative, time.time_ns())
    if copied:
        result.copied += 1
        result.bytes_copied += len(data)
    else:
        result.already_there += 1


def _card_copy(root: Path, frame) -> bytes:
    try:
        data = path_inside(root, frame["file"]).read_bytes()
    except OSError as exc:
        raise _SkipImage(f"cannot read it on the card ({exc.strerror})") from exc
    if hashlib.sha256(data).hexdigest() != frame["sha256"]:
        raise _SkipImage("the card's file differs from its index checksum (corrupt); "
                         "not copied, kept on the card")
    return data


def _copy_verified(data: bytes, target: Path, sha256: str) -> bool:
    """Put `data` at `target`, verified. False if a verified copy was already there."""
    if target.exists():
        if _sha256_on_disk(target) == sha256:
            return False
        raise _SkipImage(f"{target} already exists with different content; not overwritten")
    _make_dirs(target.parent)
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    try:
        _write_synced(partial, data)
        if _sha256_on_disk(partial) != sha256:
            raise _SkipImage(f"the copy at {partial} read back differently (failing drive?)")
        os.replace(partial, target)
        fsync_dir(target.parent)
    except KeyboardInterrupt:   # Ctrl-C: leave no temporary behind on the drive
        partial.unlink(missing_ok=True)
        raise
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise OffloadError(f"offload destination {target.parent} is full; images offloaded "
                               "so far are verified and marked, run again with more space") from exc
        raise OffloadError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return True


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        # So the read-back below comes from the drive, not from memory.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _sha256_on_disk(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _make_dirs(path: Path) -> None:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir()
        fsync_dir(directory.parent)


def _write_package(store: Store, config: Config, dest: Path, dest_key: str,
                   result: OffloadResult) -> None:
    """Camtrap DP package of every image of the current deployment on this drive."""
    deployment = config.station.deployment_id
    frames = store.saved_frames((OFFLOADED, FREED), deployment, offload_dest=dest_key)
    if not frames:
        return
    package = dest / deployment
    try:
        exported = export_camtrap_dp(config, frames, package, ExportOptions(copy_media=False))
    except ExportError as exc:
        result.problems.append(f"Camtrap DP package not written: {exc}")
        return
    result.package = package
    result.problems += exported.problems


def _free_verified(store: Store, dest: Path, dest_key: str, result: OffloadResult) -> None:
    for frame in store.saved_frames((OFFLOADED, FREED), offload_dest=dest_key):
        try:
            card_file = path_inside(store.root, frame["file"])
        except OSError as exc:
            result.problems.append(f"{frame['file']}: {exc.strerror}; not deleted")
            continue
        if frame["state"] == FREED and not card_file.exists():
            continue
        copy = dest / frame["offload_path"]
        if not copy.exists() or _sha256_on_disk(copy) != frame["sha256"]:
            result.problems.append(f"{frame['file']}: its copy {copy} is missing or differs; "
                                   "kept on the card")
            continue
        store.mark_freed(frame["id"])
        card_file.unlink(missing_ok=True)
        result.freed += 1
