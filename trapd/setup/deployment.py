"""The daemon's side of the setup page's Deployment section: the setup (or pickup)
photo from the running camera, and a deployment's end and start, with the checks
and messages of `trapd snapshot --setup` and `trapd deployment end|start`.

The photo: the link's thread asks; the trap's thread, at its next frame, copies
that frame's full main image out of the camera buffer (the one cost on its
thread: as a kept frame's copy, once per photo) and goes on. The link's thread
encodes and tags it and saves the file; the index rows (the event, the frame)
are written by the daemon's loop between two frames (Daemon.in_loop: the
index's one writer), as trapd/technician.py's store_setup_photo lays out.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from trapd.cli_deployment import check_new_deployment_id, end_current_deployment, next_deployment_id
from trapd.config_edit import ConfigEditError
from trapd.deployments import recorded_deployments
from trapd.errors import StorageError, TrapdError
from trapd.technician import Shot, check_kind, store_setup_photo
from trapd.writer import YuvCopy, encode_yuv

log = logging.getLogger(__name__)

NS = 1_000_000_000
PHOTO_WAIT_S = 10.0       # real seconds the link waits for the trap's next frame
SETTLE_FRAMES = 3         # a camera just started: auto-exposure settles on these first
CAMERA_ON_S = 10.0


class NoPhoto(TrapdError):
    """No frame to take the photo from (the camera is not delivering)."""


class PhotoTap:
    """Called by the trap with each frame (beside the live view's tap); `take()` from
    the link: the main image of the next frame, copied."""

    def __init__(self, trap) -> None:
        self._trap = trap
        self._taking = threading.Lock()         # one photo at a time
        self._done = threading.Condition()
        self._wanted = False
        self._settle = 0
        self._taken: tuple | None = None

    # -- the trap's thread -----------------------------------------------------
    def __call__(self, frame) -> None:
        if not self._wanted or frame.request is None:
            return
        if self._settle > 0:
            self._settle -= 1
            return
        taken = (YuvCopy.of(frame), frame.wall_ns, frame.sensor_timestamp_ns,
                 dict(frame.metadata), tuple(frame.main_size))
        with self._done:
            self._taken, self._wanted = taken, False
            self._done.notify_all()

    # -- the link's thread -----------------------------------------------------
    def take(self, jpeg_quality: int) -> Shot:
        """The next frame's main image as an untagged JPEG."""
        trap = self._trap
        with self._taking:
            with self._done:
                self._settle = 0 if trap.camera.running else SETTLE_FRAMES
                self._taken, self._wanted = None, True
            trap.operating.keep_camera_on(trap.clock.monotonic_ns() + int(CAMERA_ON_S * NS))
            trap.wake()
            with self._done:
                self._done.wait_for(lambda: self._taken is not None, PHOTO_WAIT_S)
                taken, self._taken, self._wanted = self._taken, None, False
        if taken is None:
            raise NoPhoto("no photo: the camera is not delivering frames")
        image, wall_ns, sensor_ns, metadata, size = taken
        return Shot(image.encode(encode_yuv, jpeg_quality), wall_ns, sensor_ns, metadata,
                    size, trap.camera.model)


class DeploymentCalls:
    """The link's deployment calls, on a running daemon."""

    def __init__(self, daemon, photo_tap: PhotoTap) -> None:
        self.daemon = daemon
        self.trap = daemon.trap
        self.photo_tap = photo_tap

    def setup_photo(self, kind: str, confirmed_by: str) -> dict:
        check_kind(kind)
        who = _one_line(confirmed_by)
        if not who:
            raise ValueError("setup_photo needs who took it (confirmed_by)")
        trap = self.trap
        shot = self.photo_tap.take(trap.config.storage.jpeg_quality)
        photo = store_setup_photo(trap.store, trap.station, shot, kind, trap.clock,
                                  self.daemon.in_loop, note=f"taken from the setup page by {who}")
        log.info("%s photo from the setup page (by %s): event %s, %s", kind, who,
                 photo.event_id, photo.relative)
        return {"kind": kind, "event_id": photo.event_id, "file": photo.relative,
                "wall_ns": shot.wall_ns}

    def end_deployment(self) -> dict:
        """The current deployment ends now (`trapd deployment end`); a refusal is
        {"ok": False, "message"}, not an error, so the page can tell it from a link fault."""
        deployment_id = self.daemon.config.station.deployment_id
        trap = self.trap
        try:
            message = self.daemon.in_loop(
                lambda: end_current_deployment(trap.store, deployment_id, trap.clock.wall_ns()))
        except StorageError as refused:
            return {"ok": False, "deployment_id": deployment_id, "message": str(refused)}
        log.warning("%s (from the setup page)", message)
        return {"ok": True, "deployment_id": deployment_id, "message": message}

    def deployments(self) -> dict:
        """The current deployment's id, those this card ran, and a next id to offer."""
        current = self.daemon.config.station.deployment_id
        used = self._recorded()
        today = dt.datetime.fromtimestamp(self.trap.clock.wall_ns() / NS,
                                          self.daemon.config.time.tz).date()
        return {"current": current, "recorded": used,
                "next_id": next_deployment_id(current, used, today)}

    def check_deployment_id(self, new_id: str) -> dict:
        """`trapd deployment start`'s check of a new id against this card; the page
        then writes config.yaml (the daemon may not: its unit keeps /etc read-only)
        and asks for reload()."""
        current = self.daemon.config.station.deployment_id
        try:
            check_new_deployment_id(str(new_id), current, self._recorded())
        except ConfigEditError as refused:
            return {"ok": False, "current": current, "message": str(refused)}
        return {"ok": True, "current": current, "message": f"{new_id} is new on this card"}

    def _recorded(self) -> list[str]:
        return self.daemon.in_loop(lambda: recorded_deployments(self.trap.store))


def _one_line(text) -> str:
    return " ".join(str(text or "").split())[:200]
