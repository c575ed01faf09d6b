"""Image sync over the S3 API: create-only, resumable, verified.

Per image (newest event first, then the backlog):
1. the object key comes from the image, never from upload time:
   `<project>/<station>/<deployment>/<YYYY>/<MM>/<DD>/<file name>` (the
   station before the deployment, so one credential scoped to
   `<project>/<station>/` covers every deployment of that trap);
2. a HEAD first: an object with the same size and SHA-256 is already there
   (an earlier run stopped before recording it) and is only recorded;
3. small files: PutObject with `If-None-Match: *` and the SHA-256 in
   `x-amz-meta-sha256`; large ones: multipart, the UploadId saved in
   upload_state before the first part, and a rerun asks ListParts which
   parts the store already holds and sends only the rest;
4. the image counts as synced only after a HEAD shows the same size and
   SHA-256.
What is uploaded is the card's image checked against its index SHA-256 and
then, when its GPS is finer than `station.location.publish` allows at upload
time, re-tagged (trapd/published_copy.py, as export and offload do); the size
and SHA-256 of steps 2-4 are those of the bytes sent. A multipart upload
begun for other bytes (the setting changed in between) is abandoned, not
resumed. An image whose location cannot be generalised is not uploaded.
Budgets: bytes per local day, time windows, a battery floor. Nothing here
runs on the capture path.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError, SSLError

from trapd.config import Config
from trapd.fleet.outbox import FleetDb
from trapd.published_copy import NotPublishable, publishable
from trapd.storage import ON_CARD, Store
from trapd.recovery import path_inside

log = logging.getLogger(__name__)

MB = 1024 * 1024
BATCH = 200          # images looked at per run; the next run takes the rest
NS = 1_000_000_000


# Store answers that stop the whole run (every image would get the same), by error code.
CREDENTIALS_REFUSED = ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch")
STORE_FAILING = ("InternalError", "ServiceUnavailable", "SlowDown", "500", "502", "503", "504",
                 "507", "InsufficientStorage", "XMinioStorageFull", "EntityTooLarge", "QuotaExceeded")


class CardImageProblem(Exception):
    """This image cannot be sent: missing or damaged on the card. It is set aside
    (sync_skipped), the others go on."""


@dataclass
class SyncResult:
    uploaded: int = 0
    already_there: int = 0
    bytes_sent: int = 0
    skipped: int = 0           # images set aside this run (damaged or missing on the card)
    stopped: str | None = None
    store_problem: bool = False    # stopped because of the store or the link, not a policy
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"sync: {self.uploaded} images uploaded and verified "
                f"({self.bytes_sent / MB:.1f} MB), {self.already_there} already in the store")
        if self.skipped:
            text += f", {self.skipped} set aside (damaged or missing on the card)"
        return text + (f"; stopped: {self.stopped}" if self.stopped else "")


def object_key(project: str, frame) -> str:
    """From the image: its station, deployment, local date folder and file name."""
    path = PurePosixPath(frame["file"])
    year, month, day = path.parent.name.split("-")
    return "/".join((project, frame["station_id"], frame["deployment_id"], year, month, day,
                     path.name))


def in_windows(windows: tuple, local: datetime) -> bool:
    """`windows` like ('22:00-06:00',); () = always. End 24:00 = midnight."""
    if not windows:
        return True
    minute = local.hour * 60 + local.minute
    for window in windows:
        start, end = (int(t[:2]) * 60 + int(t[3:]) for t in window.split("-"))
        if (start <= minute < end) if start <= end else (minute >= start or minute < end):
            return True
    return False


def run_stopper(exc: Exception, endpoint: str | None, bucket: str) -> str | None:
    """One line naming why the store cannot take any image now, or None when
    the error concerns this image only."""
    where = endpoint or "the store"
    if isinstance(exc, SSLError):
        return f"TLS to {where} failed (check fleet.sync.ca_file and the store's certificate): {exc}"
    if isinstance(exc, BotoCoreError):
        return f"store unreachable at {where} ({type(exc).__name__}: {exc})"
    if not isinstance(exc, ClientError):
        return None
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    if code == "NoSuchBucket":
        return f"bucket {bucket} does not exist at {where}"
    if code == "RequestTimeTooSkewed":
        return (f"this trap's clock differs from {where}'s by more than the store allows "
                f"(request signing): set the clock")
    if code in ("InvalidAccessKeyId",):
        return f"{where} does not know this station's access key (fleet.sync.credentials_file)"
    if code == "SignatureDoesNotMatch":
        return f"{where} rejects this station's secret key (fleet.sync.credentials_file)"
    if code in CREDENTIALS_REFUSED:
        # SeaweedFS answers AccessDenied, not NoSuchBucket, to a key without rights on a
        # bucket that does not exist: the trap cannot tell the two apart.
        return (f"the store refused this station's credentials for bucket {bucket} ({code}): "
                f"check that the bucket exists and that this key may write to it")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in STORE_FAILING or status >= 500:
        return f"the store is failing or full ({code or status}): paused"
    return None


class Syncer:
    def __init__(self, config: Config, store: Store, db: FleetDb, s3,
                 wall_ns: Callable[[], int] = time.time_ns,
                 battery_v: Callable[[], float | None] = lambda: None,
                 after_part: Callable[[int], None] | None = None) -> None:
        self.config = config
        self.sync = config.fleet.sync
        self.store = store
        self.db = db
        self.s3 = s3
        self.wall_ns = wall_ns
        self.battery_v = battery_v
        self.after_part = after_part  # test seam: called after each multipart part

    # -- policy -------------------------------------------------------------
    def _local_now(self) -> datetime:
        return datetime.fromtimestamp(self.wall_ns() / NS, self.config.time.tz)

    def _stop_reason(self, size: int) -> str | None:
        now = self._local_now()
        if not in_windows(self.sync.windows, now):
            return f"outside the sync windows {', '.join(self.sync.windows)}"
        floor = self.sync.min_battery_v
        battery = self.battery_v()
        if floor is not None and battery is not None and battery < floor:
            return f"battery {battery:.2f} V below {floor:g} V"
        if self.sync.daily_budget_mb is not None:
            budget = int(self.sync.daily_budget_mb * MB)
            if self.db.bytes_sent(now.date().isoformat()) + size > budget:
                return f"daily budget of {self.sync.daily_budget_mb:g} MB reached"
        return None

    def _queue(self) -> list:
        """Images not yet verified in the store: newest event first, in capture order within."""
        return self.db.unsynced_frames(ON_CARD, BATCH)

    # -- the run ------------------------------------------------------------
    def run_once(self) -> SyncResult:
        result = SyncResult()
        for frame in self._queue():
            result.stopped = self._stop_reason(frame["size_bytes"])
            if result.stopped:
                break
            try:
                self._sync_frame(frame, result)
            except CardImageProblem as exc:
                self._set_aside(frame, str(exc), result)
            except (ClientError, BotoCoreError) as exc:
                exc = self._explained(exc, frame)
                stopper = run_stopper(exc, self.sync.endpoint_url, self.sync.bucket)
                if stopper:
                    result.stopped, result.store_problem = stopper, True
                    break
                result.problems.append(f"{frame['file']}: {exc}")
                log.warning("sync of %s failed: %s", frame["file"], exc)
        return result

    def _explained(self, exc: Exception, frame) -> Exception:
        """A HEAD's refusal has no body, so no S3 error code (a missing bucket, a
        skewed clock and a wrong key all read "403"): the same question as a
        one-byte GET gets the store's own code."""
        if not isinstance(exc, ClientError) or exc.operation_name != "HeadObject":
            return exc
        try:
            self.s3.get_object(Bucket=self.sync.bucket, Key=object_key(self.config.fleet.project, frame),
                               Range="bytes=0-0")
        except (ClientError, BotoCoreError) as detailed:
            return detailed
        return exc

    def _set_aside(self, frame, why: str, result: SyncResult) -> None:
        """A damaged or missing image never blocks the others: marked, reported, skipped."""
        self.db.set_aside(frame["media_id"], why, self.wall_ns())
        result.skipped += 1
        result.problems.append(f"{frame['file']}: {why}")
        log.warning("sync: %s set aside: %s", frame["file"], why)

    def _sync_frame(self, frame, result: SyncResult) -> None:
        key = object_key(self.config.fleet.project, frame)
        try:
            original = path_inside(self.store.root, frame["file"]).read_bytes()
        except OSError as exc:
            raise CardImageProblem(f"cannot read it from the card ({exc.strerror or exc})") from None
        if hashlib.sha256(original).hexdigest() != frame["sha256"]:
            raise CardImageProblem("the card copy does not match its index checksum (damaged)")
        try:
            body = publishable(original, self.config.station.location.publish)
        except NotPublishable as exc:
            result.problems.append(f"{frame['file']}: {exc}")
            return
        sha256 = frame["sha256"] if body is original else hashlib.sha256(body).hexdigest()
        size = len(body)
        self.db.begin_upload(frame["media_id"], key, sha256, size)
        if not self._matches(key, size, sha256):
            sent = (self._put(body, key, sha256) if size < self.sync.multipart_threshold_mb * MB
                    else self._multipart(frame["media_id"], body, key, sha256, size))
            self.db.add_bytes_sent(self._local_now().date().isoformat(), sent)
            result.bytes_sent += sent
            if not self._matches(key, size, sha256):
                raise ClientError({"Error": {"Code": "VerifyFailed", "Message":
                                   f"{key}: the store's copy differs after upload"}}, "HeadObject")
            result.uploaded += 1
        else:
            result.already_there += 1
        self.db.mark_verified(frame["media_id"], self.wall_ns())

    def _matches(self, key: str, size: int, sha256: str) -> bool:
        """True if the store holds `key` with this size and SHA-256; raises on
        a different object under the key (create-only: never overwritten)."""
        try:
            head = self.s3.head_object(Bucket=self.sync.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        if head["ContentLength"] == size and head.get("Metadata", {}).get("sha256") == sha256:
            return True
        raise ClientError({"Error": {"Code": "KeyConflict", "Message":
                           f"{key} already holds a different object; not overwritten"}}, "HeadObject")

    def _put(self, body: bytes, key: str, sha256: str) -> int:
        try:
            self.s3.put_object(Bucket=self.sync.bucket, Key=key, Body=body,
                               Metadata={"sha256": sha256}, IfNoneMatch="*",
                               ContentType="image/jpeg")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
            return 0  # someone wrote it meanwhile; the HEAD that follows decides
        return len(body)

    def _multipart(self, media_id: str, body: bytes, key: str, sha256: str, size: int) -> int:
        bucket, part_size = self.sync.bucket, self.sync.part_size_mb * MB
        row = self.db.upload_row(media_id)
        upload_id = row["upload_id"]
        if upload_id and row["sha256"] != sha256:   # begun for other bytes: start again
            self._abandon(key, upload_id)
            upload_id = None
        done = self._uploaded_parts(key, upload_id) if upload_id else None
        if done is None:
            upload_id = self.s3.create_multipart_upload(
                Bucket=bucket, Key=key, Metadata={"sha256": sha256},
                ContentType="image/jpeg")["UploadId"]
            self.db.save_upload_id(media_id, upload_id)   # before the first part
            done = {}
        sent = 0
        count = (size + part_size - 1) // part_size
        view = memoryview(body)
        for number in range(1, count + 1):
            chunk = view[(number - 1) * part_size:number * part_size]
            if number in done and done[number] == len(chunk):
                continue
            self.s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                PartNumber=number, Body=bytes(chunk))
            sent += len(chunk)
            if self.after_part:
                self.after_part(number)
        parts = self._uploaded_parts(key, upload_id, etags=True)
        self.s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(parts.items())]})
        return sent

    def _abandon(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload of bytes no longer to be sent (best effort:
        the store's lifecycle rule removes one left behind)."""
        try:
            self.s3.abort_multipart_upload(Bucket=self.sync.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            log.info("could not abort the earlier upload of %s: %s", key, exc)

    def _uploaded_parts(self, key: str, upload_id: str, etags: bool = False) -> dict | None:
        """{part number: size (or ETag)} the store holds for the upload; None if it is gone."""
        parts, marker = {}, 0
        while True:
            try:
                page = self.s3.list_parts(Bucket=self.sync.bucket, Key=key, UploadId=upload_id,
                                          PartNumberMarker=marker)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                    return None
                raise
            for part in page.get("Parts", []):
                parts[part["PartNumber"]] = part["ETag"] if etags else part["Size"]
            if not page.get("IsTruncated"):
                return parts
            marker = page["NextPartNumberMarker"]


def s3_client(config: Config, clock_synced: Callable[[], bool | None] | None = None):
    """A boto3 client from the fleet.sync settings and its 0600 credentials file."""
    import boto3
    from botocore.config import Config as BotoConfig

    from trapd.fleet.secrets import read_s3_credentials, require_synchronised_clock

    sync = config.fleet.sync
    if sync.credentials_file is None:
        from trapd.fleet.secrets import FleetError
        raise FleetError("fleet.sync.credentials_file is not set in config.yaml: name the 0600 "
                         "file holding this station's S3 keys")
    # TLS cannot check certificate dates on a clock that is not synchronised. Request
    # signing (any endpoint) is checked by the store itself: RequestTimeTooSkewed is
    # named as the clock (run_stopper).
    if sync.endpoint_url is None or sync.endpoint_url.startswith("https://"):
        require_synchronised_clock(*([clock_synced] if clock_synced else []), what="S3 over TLS")
    credentials = read_s3_credentials(sync.credentials_file)
    return boto3.client(
        "s3", endpoint_url=sync.endpoint_url, region_name=sync.region,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        verify=sync.ca_file or True,
        config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"},
                          connect_timeout=10, read_timeout=60,
                          s3={"addressing_style": "path"}))
