"""Offload: copy the queue's images and a Camtrap DP package to a drive.

Layout on the drive: DEST/<deploymentID>/media/<file name> and, beside
media/, the package files of the current deployment (trapd/export.py).

Per image, in capture order:
1. read the card's file and check it against its index SHA-256 (a corrupt or
   missing image is reported by name, not copied, not marked);
2. make the copy's bytes: the card's as they are, or, when the photo's GPS is
   finer than `station.location.publish` allows now (it was taken under
   `exact`), re-tagged by trapd/published_copy.py as export does: offload
   re-tags rather than refuses, so a card can always be emptied, and no copy
   on the drive says more than deployments.csv beside it. The SHA-256 the copy
   is checked against is that of these bytes;
3. if the drive already holds the file with that checksum (an earlier run was
   stopped after the copy but before step 5), keep it: no second copy (a
   byte-for-byte copy left by a run under a finer setting is replaced);
4. otherwise write `<name>.partial`, fsync, drop it from the page cache,
   read it back from the drive and compare SHA-256, then rename it into
   place and fsync the directory: a final name only ever holds a verified copy;
5. mark the frame `offloaded` in the index, with where it went and, for a
   re-tagged copy, the copy's own SHA-256 (`offload_sha256`).

Stopped at any instant, a rerun finds every image either marked, or verified
on the drive, or not yet there (a stale .partial is overwritten), so it ends
with each image copied exactly once. Nothing on the card is deleted unless
`free=True`, and then only images whose copy on this drive matches the hash
recorded for it now, and whose card file still matches its index SHA-256
(the content the copy was made from).
"""

from __future__ import annotations

import errno
import io
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from trapd.config import Config
from trapd.deployments import as_deployed, deployment_record
from trapd.errors import ExportError, OffloadError
from trapd.export import MEDIA_DIR, ExportOptions, export_camtrap_dp
from trapd.progress import Progress
from trapd.published_copy import NotPublishable, publishable
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
    retagged: int = 0
    packages: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"offload to {self.dest}: {self.copied} images copied and verified "
                f"({self.bytes_copied / MB:.1f} MB), {self.already_there} already there")
        if self.retagged:
            text += (f" ({self.retagged} re-tagged: location generalised to "
                     "station.location.publish)")
        if self.freed:
            text += f", {self.freed} freed from the card"
        if self.packages:
            text += f"; Camtrap DP package in {', '.join(map(str, self.packages))}"
        return text


def offload(store: Store, config: Config, dest: Path, free: bool = False,
            progress: Progress | None = None) -> OffloadResult:
    dest = _checked_destination(dest)
    dest_key = str(dest)
    progress = progress or Progress(io.StringIO())
    result = OffloadResult(dest)
    frames = store.saved_frames(NOT_OFFLOADED)
    progress.start(len(frames))
    publish = config.station.location.publish
    try:
        for done, frame in enumerate(frames, 1):
            _offload_frame(store, frame, publish, dest, dest_key, result)
            progress.advance(done, Path(frame["file"]).name, frame["size_bytes"] or 0)
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


def _offload_frame(store: Store, frame, publish: str, dest: Path, dest_key: str,
                   result: OffloadResult) -> None:
    relative = f"{frame['deployment_id']}/{MEDIA_DIR}/{Path(frame['file']).name}"
    try:
        original = _card_copy(store.root, frame)
        data = _published_copy(original, publish)
        retagged = data is not original
        sha256 = hashlib.sha256(data).hexdigest() if retagged else frame["sha256"]
        copied = _copy_verified(data, dest / relative, sha256,
                                replaceable=frame["sha256"] if retagged else None)
    except _SkipImage as exc:
        result.problems.append(f"{frame['file']}: {exc}")
        log.error("not offloaded: %s: %s", frame["file"], exc)
        return
    store.mark_offloaded(frame["id"], dest_key, relative, time.time_ns(),
                         sha256 if retagged else None)
    if copied:
        result.copied += 1
        result.bytes_copied += len(data)
        result.retagged += retagged
    else:
        result.already_there += 1


def _published_copy(original: bytes, publish: str) -> bytes:
    try:
        return publishable(original, publish)
    except NotPublishable as exc:
        raise _SkipImage(f"{exc}; kept on the card") from exc


def _card_copy(root: Path, frame) -> bytes:
    try:
        data = path_inside(root, frame["file"]).read_bytes()
    except OSError as exc:
        raise _SkipImage(f"cannot read it on the card ({exc.strerror})") from exc
    if hashlib.sha256(data).hexdigest() != frame["sha256"]:
        raise _SkipImage("the card's file differs from its index checksum (corrupt); "
                         "not copied, kept on the card")
    return data


def _copy_verified(data: bytes, target: Path, sha256: str, replaceable: str | None = None) -> bool:
    """Put `data` (whose SHA-256 is `sha256`) at `target`, verified. False if a
    verified copy was already there; a file there with hash `replaceable` (this
    image's card bytes, left by a run before `publish` was tightened) is replaced."""
    if target.exists():
        there = _sha256_on_disk(target)
        if there == sha256:
            return False
        if there != replaceable:
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
    """A Camtrap DP package beside the images of every deployment on this drive (a
    re-deployed trap's earlier one too), each with its start, end and gaps as recorded."""
    frames = store.saved_frames((OFFLOADED, FREED), offload_dest=dest_key)
    for deployment_id in dict.fromkeys(f["deployment_id"] for f in frames):
        record = deployment_record(store, deployment_id)
        package_config = config
        if deployment_id != config.station.deployment_id:
            if record is None:
                result.problems.append(
                    f"Camtrap DP package for deployment {deployment_id} not written: this "
                    "card has no record of its position (export it with the config it ran with)")
                continue
            package_config = as_deployed(config, record)
        package = dest / deployment_id
        try:
            exported = export_camtrap_dp(
                package_config, [f for f in frames if f["deployment_id"] == deployment_id],
                package, ExportOptions(copy_media=False, deployment=record))
        except ExportError as exc:
            result.problems.append(f"Camtrap DP package for {deployment_id} not written: {exc}")
            continue
        result.packages.append(package)
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
        if not copy.exists() or _sha256_on_disk(copy) != (frame["offload_sha256"] or frame["sha256"]):
            result.problems.append(f"{frame['file']}: its copy {copy} is missing or differs; "
                                   "kept on the card")
            continue
        # A re-tagged copy cannot match the card's hash: it vouches for the content it
        # was made from, so that content must still be what the card holds.
        if card_file.exists() and _sha256_on_disk(card_file) != frame["sha256"]:
            result.problems.append(f"{frame['file']}: the card's file no longer matches its "
                                   "index checksum, so its copy may not be of it; kept on the card")
            continue
        store.mark_freed(frame["id"])
        card_file.unlink(missing_ok=True)
        result.freed += 1
