"""What trapd asks the camera for, and what it makes of what the camera granted.

picamera2's `configure()` may change what was asked without failing: libcamera
adjusts a configuration it cannot give (another size or format, fewer buffers)
and picamera2 keeps reporting the asked `buffer_count`. So after `configure()`
trapd reads back what was granted. A format, size or colour space it cannot
turn into correct JPEGs stops the open with one line saying what was asked and
what came (`CameraMismatch`); fewer buffers than asked is adapted to
(`Granted.buffers`: the trap holds and lends fewer).

The colour space is asked for explicitly: left out, picamera2 picks Rec709 or
Smpte170m for a video configuration, both limited range (Y 16-235), Rec709 with
another YCbCr matrix, while a JPEG (and simplejpeg's `encode_jpeg_yuv_planes`)
holds full-range BT.601 YCbCr: libcamera's Sycc.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass

from trapd.config import CameraConfig
from trapd.errors import HardwareError

log = logging.getLogger(__name__)

STREAM_FORMAT = "YUV420"


class CameraMismatch(HardwareError):
    """The camera granted a configuration trapd cannot make correct images from."""


@dataclass(frozen=True)
class Granted:
    buffers: int                    # per stream, as allocated (may be fewer than asked)
    controls: frozenset[str]        # the controls the camera advertises


def libcamera_class(picamera2_class: type, name: str):
    """`Transform`/`ColorSpace` of the camera stack `picamera2_class` comes from:
    the stand-in's own beside hw_sim, libcamera's beside the real picamera2 (whose
    module imports libcamera), even where both are installed."""
    module = sys.modules.get(picamera2_class.__module__)
    found = getattr(module, name, None) or getattr(getattr(module, "libcamera", None), name, None)
    return found or getattr(importlib.import_module("libcamera"), name)


def video_configuration(picam2, picamera2_class: type, config: CameraConfig) -> dict:
    frame_us = int(round(1_000_000 / config.frame_rate))
    kwargs = dict(
        main={"format": STREAM_FORMAT, "size": tuple(config.main_size)},
        lores={"format": STREAM_FORMAT, "size": tuple(config.lores_size)},
        buffer_count=config.buffer_count,
        queue=True,
        colour_space=libcamera_class(picamera2_class, "ColorSpace").Sycc(),
        controls={"FrameDurationLimits": (frame_us, frame_us)},
    )
    if config.rotation_deg == 180:
        kwargs["transform"] = libcamera_class(picamera2_class, "Transform")(hflip=1, vflip=1)
    return picam2.create_video_configuration(**kwargs)


def check_granted(picam2, picamera2_class: type, config: CameraConfig) -> Granted:
    """What a configured camera granted; CameraMismatch if trapd cannot use it."""
    granted = picam2.camera_configuration()
    for name, size in (("main", config.main_size), ("lores", config.lores_size)):
        _check_stream(name, granted.get(name) or {}, tuple(size))
    _check_colour_space(granted.get("colour_space"), picamera2_class)
    buffers = _granted_buffers(picam2, config.buffer_count)
    if buffers < config.buffer_count:
        log.warning("camera granted %d buffers of the %d asked (hardware.camera.buffer_count): "
                    "fewer pre-trigger frames held and fewer photos encoded in place",
                    buffers, config.buffer_count)
    return Granted(buffers, frozenset(getattr(picam2, "camera_controls", {}) or {}))


def _check_stream(name: str, stream: dict, asked: tuple[int, int]) -> None:
    fmt = str(stream.get("format"))
    size = tuple(stream.get("size") or ())
    asked_text = f"{STREAM_FORMAT} {asked[0]}x{asked[1]}"
    if fmt != STREAM_FORMAT or size != asked:
        got = f"{fmt} {'x'.join(map(str, size)) or '?'}"
        raise CameraMismatch(
            f"camera granted {got} for the {name} stream, not the {asked_text} asked: set "
            f"hardware.camera.{name}_size to a size this camera gives")
    stride = stream.get("stride")
    if stride is not None and 0 < stride < asked[0]:
        raise CameraMismatch(f"camera granted a {name} stride of {stride} bytes for "
                             f"{asked[0]}-pixel rows")


def _check_colour_space(colour_space, picamera2_class: type) -> None:
    wanted = libcamera_class(picamera2_class, "ColorSpace").Sycc()
    if colour_space is not None and str(colour_space) != str(wanted):
        raise CameraMismatch(
            f"camera granted colour space {colour_space}, not the {wanted} asked: its "
            "photos would have the wrong contrast and colours")


def _granted_buffers(picam2, asked: int) -> int:
    """Buffers per stream as libcamera granted them: picamera2 allocates these and
    makes as many requests, whatever `camera_configuration()` says."""
    streams = getattr(picam2, "libcamera_config", None)
    counts = [int(stream.buffer_count) for stream in streams] if streams is not None else []
    return min(counts) if counts else asked
