"""The live view for aiming the camera: the trap's newest frame, cheaply.

The trap's thread only copies every n-th pixel of a frame's main image out
of its camera buffer (about PREVIEW_SOURCE_WIDTH wide: a small copy, not the
12 MP), and only while a preview was asked for in the last ASKED_S, at most
once every COPY_EVERY_S (nothing at all while nobody watches). The link's
thread resizes and JPEG-encodes the copy.
Asking for a preview keeps the camera running CAMERA_ON_S (standby traps too).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from trapd.config import Config
from trapd.errors import TrapdError
from trapd.motion import smallest_animal_px

NS = 1_000_000_000
ASKED_S = 2.0
COPY_EVERY_S = 0.2
CAMERA_ON_S = 10.0
WAIT_S = 2.0          # real seconds a preview waits for a fresh frame
JPEG_QUALITY = 80
PREVIEW_SOURCE_WIDTH = 640    # at least what the page asks for


class NoPreview(TrapdError):
    """No frame to show (the camera is not delivering)."""


@dataclass
class FrameCopy:
    seq: int
    sensor_ns: int
    wall_ns: int
    night: bool
    planes: tuple[np.ndarray, np.ndarray, np.ndarray]   # Y, U, V (U, V half size)


class PreviewTap:
    """`trap.frame_tap`: called by the trap with each frame; `preview()` from the link."""

    def __init__(self, trap) -> None:
        self._trap = trap
        self._clock = trap.clock
        self._fresh = threading.Condition()
        self._asked_ns: int | None = None
        self._copy: FrameCopy | None = None
        self._seq = 0

    # -- the trap's thread -----------------------------------------------------
    def __call__(self, frame) -> None:
        asked, newest = self._asked_ns, self._copy
        t = frame.sensor_timestamp_ns
        if asked is None or t - asked > ASKED_S * NS or frame.request is None:
            return
        if newest is not None and t - newest.sensor_ns < COPY_EVERY_S * NS:
            return
        step = max(1, frame.main_size[0] // PREVIEW_SOURCE_WIDTH)
        planes = self._trap.camera.main_subsampled(frame, step)
        night = self._trap.operating.day_night.night
        with self._fresh:
            self._seq += 1
            self._copy = FrameCopy(self._seq, t, frame.wall_ns, night, planes)
            self._fresh.notify_all()

    # -- the link's thread -----------------------------------------------------
    def preview(self, max_width: int = 640) -> dict:
        now = self._clock.monotonic_ns()
        self._asked_ns = now
        self._trap.operating.keep_camera_on(now + int(CAMERA_ON_S * NS))
        if not self._trap.camera.running:
            self._trap.wake()
        oldest_fresh = now - int(COPY_EVERY_S * NS)
        with self._fresh:
            self._fresh.wait_for(lambda: self._copy is not None
                                 and self._copy.sensor_ns >= oldest_fresh, WAIT_S)
            copy = self._copy
        if copy is None:
            raise NoPreview("no camera view: the camera is not delivering frames")
        return {"jpeg": encode_small(copy.planes, max_width), "seq": copy.seq,
                "wall_ns": copy.wall_ns, "night": copy.night,
                "overlay": overlay(self._trap.config)}


def encode_small(planes: tuple[np.ndarray, np.ndarray, np.ndarray], max_width: int) -> bytes:
    """Y, U, V planes (4:2:0) resized to at most `max_width` wide (even sizes), as JPEG."""
    y, u, v = planes
    height, width = y.shape
    scale = min(1.0, max(16, max_width) / width)
    out_w = max(2, int(width * scale) // 2 * 2)
    out_h = max(2, int(height * scale) // 2 * 2)
    small = [cv2.resize(plane, dims, interpolation=cv2.INTER_AREA)
             for plane, dims in ((y, (out_w, out_h)), (u, (out_w // 2, out_h // 2)),
                                 (v, (out_w // 2, out_h // 2)))]
    return simplejpeg.encode_jpeg_yuv_planes(*small, quality=JPEG_QUALITY)


def overlay(config: Config) -> dict:
    """The filter's masks (bounding boxes, and the polygons themselves) and the
    smallest animal it is set to keep, as a box centred in the frame; all in
    frame fractions from the top left."""
    polygons = [[list(p) for p in mask] for mask in config.filter.masks]
    boxes = [[min(x for x, _ in m), min(y for _, y in m), max(x for x, _ in m),
              max(y for _, y in m)] for m in polygons]
    camera = config.hardware.camera
    # From min_animal_length_m at max_distance_m, as the filter derives its least
    # blob (a set min_blob_fraction overrides the filter's threshold, not this size).
    length_px, height_px = smallest_animal_px(config.filter, camera)
    w = min(1.0, length_px / camera.lores_size[0])
    h = min(1.0, height_px / camera.lores_size[1])
    return {"masks": boxes, "mask_polygons": polygons,
            "smallest_animal": [_round(0.5 - w / 2), _round(0.5 - h / 2),
                                _round(0.5 + w / 2), _round(0.5 + h / 2)]}


def _round(x: float) -> float:
    return round(x, 4) if math.isfinite(x) else 0.0
