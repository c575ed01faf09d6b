"""An honest stand-in for ``picamera2.Picamera2`` (0.3.38), driven by a scene and a clock.

trapd's camera adapter is handed a Picamera2 *class*. On a Pi that is ``picamera2.Picamera2``;
in simulation it is ``CameraRig(scene, clock).picamera2_class``, a subclass of the `Picamera2`
below bound to one rig. Every member offered here under a real name takes the real parameters
in the real order with the real defaults (tests/test_sim_picamera2.py checks them against
../shared/picamera2-api/api.json); everything else is private, so code written against the
simulator calls the real camera correctly.

How frames flow
---------------
While the camera is started the sensor runs on the rig's clock (a VirtualClock or
RealtimeClock): every frame is a ``clock.call_at`` event. Frame k has SensorTimestamp
ts_k = ts_(k-1) + FrameDuration_(k-1), with ts_0 = the time of start(), so with a fixed frame
period ts_k = start + k * period. It reaches picamera2 at ts_k + FrameDuration_k. Like
SensorTimestamp on a Pi, ts_k is the end of exposure: the exposure ran from
ts_k - 1000 * ExposureTime to ts_k, and the scene is rendered at its middle,
ts_k - 500 * ExposureTime. On arrival a frame goes through the same machinery as picamera2's
event loop: it becomes a CompletedRequest, queued jobs run in order (capture, flush, mode
switch ...), and with ``queue=True`` and buffer_count > 1 the newest completed request is kept
for the next caller, so a capture can return a frame from before the call. A capture with a
``wait`` waits by advancing the clock to the next frame.

Simulated, as the real camera does it
- configuration dicts (keys, defaults per use case), ValueError for bad stream keys at
  create time, RuntimeError at configure() for odd sizes, lores larger than main, non-YUV lores;
  configure() adds "stride" (YUV420: width rounded up to 64; RGB888/BGR888: 3*width and
  XBGR8888/XRGB8888: 4*width, rounded up to 64) and "framesize", picks a sensor mode like
  picamera2 does, and fills in the raw stream and "sensor".
- array layouts: RGB888 is BGR in memory, BGR888 is RGB, XBGR8888 is (h, w, 4), YUV420 is
  (h*3/2, stride) uint8 with the U and V planes packed at half stride (picamera2's unpacking
  ``r = a.reshape(2 * a.shape[0], stride // 2); U = r[2h:2h + h//2, :w//2]``, V after it).
  YUV is full-range BT.601 (JFIF), so simplejpeg's planar encoder gets what it expects.
- frame timing: FrameDurationLimits (or FrameRate), the sensor mode's fastest frame, and the
  exposure; ExposureTime / AnalogueGain 0 mean auto (the scene's values, capped by the frame
  duration, the gain making up the difference), AeEnable False holds the current values.
- metadata: SensorTimestamp, ExposureTime, FrameDuration, AnalogueGain, DigitalGain, Lux,
  ColourTemperature, ColourGains, FocusFoM, SensorBlackLevels, ColourCorrectionMatrix,
  ScalerCrop, AeLocked, FrameWallClock; SensorTemperature only on sensors that report it
  (imx708); AfState, AfPauseState and LensPosition only on an autofocus rig.
- buffers: buffer_count requests, shared by the queued request and whatever the application
  holds; with all of them held no frame can land and captures stall (a numeric wait times out).
  CompletedRequest.release() past zero raises, as picamera2's does.
- MappedArray(request, stream): the buffer itself as an array while the context is open (no
  copy; YUV420 as (h*3/2, stride), RGB as (h, stride / bytes per pixel, bytes), padding kept);
  on a released request it raises.
- jobs: wait None/True blocks, a number raises TimeoutError after that much clock time,
  False returns a Job. A job that timed out stays queued and takes a later frame (whose
  buffer then leaks until stop()) unless cancel_all_and_flush() is called, as on a Pi.
- JPEG/EXIF exactly as CompletedRequest.save does: simplejpeg at options.get("quality", 90),
  EXIF from piexif spliced in after SOI, the user's exif_data merged shallowly per IFD, the
  date from the rig clock's wall time. Its quirks come along: the format comes from
  ``format`` or from a *str* path's extension; a BytesIO needs format="jpeg"; a pathlib.Path
  goes through PIL and gets no EXIF.
- Picamera2.options starts empty, as in picamera2's source (so read it with .get()).
- faults (CameraRig): open failures, a busy camera (second open), hang, timeouts, unplug.

Not simulated
- the raw Bayer stream is configured and reported but has no pixels (make_array("raw") and
  DNG raise); encoders, recording and previews do not exist here.
- ScalerCrop (reported, not applied), colour spaces (all YUV is full-range BT.601), noise,
  focus blur, rolling shutter. Transform flips are applied; only rotation 0/180 exist.
- AE settles at once (AeLocked after the first 3 frames); controls take effect from the next
  frame (2-3 frames on a Pi); FocusFoM is a constant; autofocus takes AF_SCAN_NS and lands on
  AF_FOCUSED_LENS_POSITION.
- A capture on a camera that is not started raises RuntimeError (a Pi would wait forever).
- A capture with wait=None that cannot get a frame (hang, unplug, every buffer held) blocks on
  a threading.Condition until another thread calls clear_faults(), releases a request or
  closes the camera (close cancels the job: CancelledError). With virtual time and a single
  thread that is forever, exactly like the real camera after a frontend timeout.
- Platform rules follow VC4 (Pi 4) where Pi 4 and Pi 5 differ (lores must be YUV).
- Mode switches are instant (a Pi takes a few hundred ms); the first frame after start()
  arrives one frame period later.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import cv2
import numpy as np
import piexif
import simplejpeg
from PIL import Image

__all__ = ["CameraRig", "ColorSpace", "CompletedRequest", "Job", "Picamera2", "Scene", "Transform"]

NS_PER_S = 1_000_000_000
STRIDE_ALIGN = 64                # bytes; configure() rounds every image row up to this
RAW_STRIDE_ALIGN = 32
AE_SETTLE_FRAMES = 3             # frames after start() before AeLocked reads True
AF_SCAN_NS = 300_000_000         # how long an autofocus scan takes
AF_FOCUSED_LENS_POSITION = 0.5   # dioptres (2 m) where a scan ends up
FOCUS_FOM = 1200                 # constant FocusFoM (not computed from the image)
BLACK_LEVELS = (4096, 4096, 4096, 4096)
COLOUR_CORRECTION_MATRIX = (1.76, -0.54, -0.22, -0.36, 1.74, -0.38, -0.04, -0.62, 1.66)
BUSY_MESSAGE = "Camera __init__ sequence did not complete."

AF_MODE_MANUAL, AF_MODE_AUTO, AF_MODE_CONTINUOUS = 0, 1, 2
AF_TRIGGER_START, AF_TRIGGER_CANCEL = 0, 1
AF_STATE_IDLE, AF_STATE_SCANNING, AF_STATE_FOCUSED = 0, 1, 2

YUV_FORMATS = ("YUV420", "YVU420")
RGB_FORMATS = ("RGB888", "BGR888", "XBGR8888", "XRGB8888")
BYTES_PER_PIXEL = {"YUV420": 1, "YVU420": 1, "RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4}
# What picamera2 itself accepts (formats.is_YUV / is_RGB); only *_FORMATS above are rendered.
PICAMERA2_YUV_FORMATS = ("NV12", "NV21", "YUV420", "YVU420", "YUYV", "YVYU", "UYVY", "VYUY")
PICAMERA2_RGB_FORMATS = RGB_FORMATS + ("RGB161616", "BGR161616")
PIL_MODES = {"RGB888": "BGR", "BGR888": "RGB", "XBGR8888": "RGBX", "XRGB8888": "BGRX"}
SIMPLEJPEG_COLOURSPACES = {"XBGR8888": "RGBX", "XRGB8888": "BGRX", "BGR888": "RGB", "RGB888": "BGR"}
VALID_STREAM_KEYS = ("format", "size", "stride", "preserve_ar")
RAW_STREAM_IGNORED_KEYS = ("bit_depth", "crop_limits", "exposure_limits", "fps", "unpacked")


class Scene(Protocol):
    """What the rig needs from a scene (hw_sim/scene.py implements it)."""

    def render_bgr(self, t_ns: int, size: tuple[int, int]) -> np.ndarray:
        """(h, w, 3) uint8 BGR for size=(w, h), as seen at monotonic time t_ns."""

    def exposure(self, t_ns: int) -> dict:
        """Auto-exposure's answer at t_ns: ExposureTime (µs), AnalogueGain, DigitalGain,
        Lux, ColourTemperature."""


# --------------------------------------------------------------------------------------------
# libcamera stand-ins (only what configuration defaults need)
# --------------------------------------------------------------------------------------------

class Transform:
    """libcamera.Transform for the flips a Pi can do (it cannot transpose)."""

    def __init__(self, hflip=0, vflip=0, rotation=0):
        if rotation not in (0, 180):
            raise ValueError("only rotation 0 or 180 is possible (the Pi cannot transpose)")
        self.hflip = bool(hflip) != (rotation == 180)
        self.vflip = bool(vflip) != (rotation == 180)
        self.transpose = False

    def __eq__(self, other):
        return isinstance(other, Transform) and (self.hflip, self.vflip) == (other.hflip, other.vflip)

    def __hash__(self):
        return hash((self.hflip, self.vflip))

    def __repr__(self):
        flips = [f"{name}=1" for name in ("hflip", "vflip") if getattr(self, name)]
        return f"libcamera.Transform({', '.join(flips)})"


class ColorSpace:
    """libcamera.ColorSpace, by name only (the simulator renders every YUV stream as sYCC)."""

    def __init__(self, name: str):
        self.name = name

    @staticmethod
    def Sycc():
        return ColorSpace("Sycc")

    @staticmethod
    def Smpte170m():
        return ColorSpace("Smpte170m")

    @staticmethod
    def Rec709():
        return ColorSpace("Rec709")

    @staticmethod
    def Jpeg():
        return ColorSpace("Jpeg")

    @staticmethod
    def Raw():
        return ColorSpace("Raw")

    def __eq__(self, other):
        return isinstance(other, ColorSpace) and self.name == other.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f"libcamera.ColorSpace.{self.name}()"


# --------------------------------------------------------------------------------------------
# Sensors
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SensorMode:
    size: tuple[int, int]
    fps: float
    crop: tuple[int, int, int, int]     # the part of the pixel array the mode reads

    @property
    def min_frame_us(self) -> int:
        return int(round(1e6 / self.fps))


@dataclass(frozen=True)
class SensorSpec:
    model: str
    i2c_address: str
    bayer_format: str
    unit_cell_nm: tuple[int, int]
    rotation: int
    exposure_us: tuple[int, int]
    analogue_gain: tuple[float, float]
    modes: tuple[SensorMode, ...]
    reports_temperature: bool = False

    @property
    def bit_depth(self) -> int:
        return int("".join(c for c in self.bayer_format.split("_")[0] if c.isdigit()))

    @property
    def resolution(self) -> tuple[int, int]:
        return max(mode.size for mode in self.modes)


# Values as the Pi reports them for each camera module, rounded (approximate, from
# picamera2 sensor_modes dumps).
SENSORS = {
    "imx477": SensorSpec("imx477", "1a", "SBGGR12_CSI2P", (1550, 1550), 180, (31, 667_164_061),
                         (1.0, 22.26), (
                             SensorMode((1332, 990), 120.05, (696, 528, 2664, 1980)),
                             SensorMode((2028, 1080), 50.03, (0, 440, 4056, 2160)),
                             SensorMode((2028, 1520), 40.01, (0, 0, 4056, 3040)),
                             SensorMode((4056, 3040), 10.0, (0, 0, 4056, 3040)))),
    "imx708": SensorSpec("imx708", "1a", "SBGGR10_CSI2P", (1400, 1400), 180, (26, 112_015_553),
                         (1.112, 16.0), (
                             SensorMode((1536, 864), 120.13, (768, 432, 3072, 1728)),
                             SensorMode((2304, 1296), 56.03, (0, 0, 4608, 2592)),
                             SensorMode((4608, 2592), 14.35, (0, 0, 4608, 2592))),
                         reports_temperature=True),
    "imx219": SensorSpec("imx219", "10", "SBGGR10_CSI2P", (1120, 1120), 180, (1, 11_766_829),
                         (1.0, 10.667), (
                             SensorMode((640, 480), 206.65, (1000, 752, 1280, 960)),
                             SensorMode((1640, 1232), 41.85, (0, 0, 3280, 2464)),
                             SensorMode((1920, 1080), 47.57, (680, 692, 1920, 1080)),
                             SensorMode((3280, 2464), 21.19, (0, 0, 3280, 2464)))),
    "ov5647": SensorSpec("ov5647", "36", "SGBRG10_CSI2P", (1400, 1400), 0, (130, 3_066_985),
                         (1.0, 63.94), (
                             SensorMode((640, 480), 58.92, (16, 0, 2560, 1920)),
                             SensorMode((1296, 972), 46.34, (0, 0, 2592, 1944)),
                             SensorMode((1920, 1080), 32.81, (348, 434, 1928, 1080)),
                             SensorMode((2592, 1944), 15.63, (0, 0, 2592, 1944)))),
}
GENERIC_SENSOR = SENSORS["imx477"]
CFA_ORDERS = {"RGGB": 0, "GRBG": 1, "GBRG": 2, "BGGR": 3}


def sensor_spec(model: str, resolution: tuple[int, int]) -> SensorSpec:
    """The table entry for `model`; for another model or resolution, a sensor with a 2x2-binned
    40 fps mode and a full-resolution 10 fps mode."""
    known = SENSORS.get(model)
    if known is not None and known.resolution == resolution:
        return known
    base = known or GENERIC_SENSOR
    w, h = resolution
    full = (0, 0, w, h)
    modes = (SensorMode((w // 4 * 2, h // 4 * 2), 40.0, full), SensorMode((w, h), 10.0, full))
    return SensorSpec(model, base.i2c_address, base.bayer_format, base.unit_cell_nm, base.rotation,
                      base.exposure_us, base.analogue_gain, modes, base.reports_temperature)


def choose_sensor_mode(modes, output_size) -> SensorMode:
    """The mode picamera2 asks libcamera for: its scoring of size and aspect ratio."""
    def score_format(desired, actual):
        score = desired - actual
        return -score / 4 if score < 0 else score * 2

    def score(mode):
        ar = output_size[0] / output_size[1]
        mode_ar = mode.size[0] / mode.size[1]
        return (score_format(output_size[0], mode.size[0]) + score_format(output_size[1], mode.size[1])
                + 1500 * score_format(ar, mode_ar))

    return min(modes, key=score)


def control_ranges(spec: SensorSpec, autofocus: bool) -> dict:
    """camera_controls: name -> (min, max, default), as libcamera advertises them."""
    w, h = spec.resolution
    fastest = min(mode.min_frame_us for mode in spec.modes)
    controls = {
        "AeEnable": (False, True, None),
        "AeMeteringMode": (0, 3, 0),
        "AeConstraintMode": (0, 3, 0),
        "AeExposureMode": (0, 3, 0),
        "AeFlickerMode": (0, 1, 0),
        "AeFlickerPeriod": (100, 1_000_000, None),
        "ExposureValue": (-8.0, 8.0, 0.0),
        "ExposureTime": (spec.exposure_us[0], spec.exposure_us[1], 20000),
        "AnalogueGain": (spec.analogue_gain[0], spec.analogue_gain[1], 1.0),
        "AwbEnable": (False, True, None),
        "AwbMode": (0, 7, 0),
        "ColourGains": (0.0, 32.0, None),
        "Brightness": (-1.0, 1.0, 0.0),
        "Contrast": (0.0, 32.0, 1.0),
        "Saturation": (0.0, 32.0, 1.0),
        "Sharpness": (0.0, 16.0, 1.0),
        "NoiseReductionMode": (0, 4, 0),
        "FrameDurationLimits": (fastest, spec.exposure_us[1], 33333),
        "ScalerCrop": ((0, 0, 64, 64), (0, 0, w, h), (0, 0, w, h)),
        "StatsOutputEnable": (False, True, False),
    }
    if autofocus:
        controls.update({
            "AfMode": (0, 2, 0),
            "AfTrigger": (0, 1, 0),
            "AfRange": (0, 2, 0),
            "AfSpeed": (0, 1, 0),
            "AfMetering": (0, 1, 0),
            "AfPause": (0, 2, 0),
            "AfWindows": ((0, 0, 0, 0), (65535, 65535, 65535, 65535), (0, 0, 0, 0)),
            "LensPosition": (0.0, 15.0, 1.0),
        })
    return controls


# --------------------------------------------------------------------------------------------
# Jobs and requests
# --------------------------------------------------------------------------------------------

class Job:
    """A capture or mode switch queued for the camera, finished by frames as they arrive.

    Same contract as picamera2.job.Job; get_result() waits in the camera's clock time.
    """

    def __init__(self, functions, signal_function=None):
        self._functions = functions
        self._future: Future = Future()
        self._future.set_running_or_notify_cancel()
        self._signal_function = signal_function
        self._result = None
        self._camera: Optional[Picamera2] = None    # set by dispatch_functions
        self.calls = 0

    def execute(self):
        """Run the job's steps while they complete; True once all have."""
        try:
            while self._functions:
                done, result = self._functions[0]()
                self.calls += 1
                if not done:
                    break
                self._functions.pop(0)
            if not self._functions:
                self._result = result
        except Exception as e:
            self._future.set_exception(e)
            self._functions = []
        return not self._functions

    def signal(self):
        if not self._future.done():
            self._future.set_result(self._result)
        if self._signal_function:
            self._signal_function(self)

    def get_result(self, timeout=None):
        """The job's result, waiting up to `timeout` seconds of clock time (None: for ever)."""
        if self._camera is not None and not self._future.done():
            self._camera._wait_for_job(self, timeout)
        return self._future.result(timeout=0 if self._camera is not None else timeout)

    def cancel(self):
        if not self._future.done():
            self._future.set_exception(CancelledError())


@dataclass
class _Frame:
    """One sensor frame: when it was exposed and how (fixed when its exposure starts)."""
    sequence: int
    sensor_timestamp_ns: int
    duration_us: int
    exposure_us: int
    analogue_gain: float
    brightness: float              # image gain relative to what the scene rendered
    transform: Transform
    metadata: dict = field(default_factory=dict)

    @property
    def arrives_at_ns(self) -> int:
        return self.sensor_timestamp_ns + self.duration_us * 1000

    @property
    def mid_exposure_ns(self) -> int:
        return self.sensor_timestamp_ns - self.exposure_us * 500


class _SimRequest:
    """What libcamera hands picamera2: a frame's metadata and its buffers, rendered on demand."""

    def __init__(self, frame: _Frame, render: Callable[[_Frame, dict], np.ndarray]):
        self.frame = frame
        self.metadata = frame.metadata
        self._render = render
        self._buffers: dict[str, np.ndarray] = {}

    def buffer(self, name: str, stream_config: dict) -> np.ndarray:
        if name not in self._buffers:
            self._buffers[name] = self._render(self.frame, stream_config)
        return self._buffers[name]


class CompletedRequest:
    """A frame handed to the application; it holds one of the camera's buffers until the last
    release()."""

    def __init__(self, request, picam2):
        self.request = request
        self.ref_count = 1
        self.picam2 = picam2
        self.lock = picam2._lock
        self.stop_count = picam2.stop_count
        self.configure_count = picam2.configure_count
        self.config = picam2.camera_config.copy()
        picam2._buffer_taken()

    def acquire(self):
        with self.lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self):
        with self.lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            if self.ref_count == 0:
                self.picam2._buffer_returned(self)
                self.request = None
                self.config = {}

    def make_buffer(self, name):
        return self._buffer(name).copy()

    def get_metadata(self):
        return dict(self._live().metadata)

    def make_array(self, name):
        return _shape_buffer(self._buffer(name), self._stream_config(name)).copy()

    def make_image(self, name, width=None, height=None):
        config = self._stream_config(name)
        mode = _pil_mode(config["format"])
        array = _shape_buffer(self._buffer(name), config).copy()
        image = Image.frombuffer("RGB", (array.shape[1], array.shape[0]), array, "raw", mode, 0, 1)
        width = width or array.shape[1]
        height = height or array.shape[0]
        if (width, height) != image.size:
            image = image.resize((width, height))
        return image

    def save(self, name, file_output, format=None, exif_data=None):
        """JPEG through simplejpeg with picamera2's EXIF; other formats through PIL."""
        config = self._stream_config(name)
        if _format_str(file_output, format) in ("jpg", "jpeg"):
            array = _shape_buffer(self._buffer(name), config)
            jpeg = _encode_jpeg(array, config, self.picam2.options.get("quality", 90))
            exif = self.picam2._exif_bytes(self.get_metadata(), exif_data)
            _write_jpeg(file_output, jpeg, exif)
        else:
            _save_with_pil(self.make_image(name), file_output, format, self.picam2.options)

    # -- internals -------------------------------------------------------------------------
    def _live(self) -> _SimRequest:
        if self.request is None:
            raise RuntimeError("CompletedRequest has been released")
        return self.request

    def _stream_config(self, name) -> dict:
        config = self.config.get(name)
        if config is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        return config

    def _buffer(self, name) -> np.ndarray:
        config = self._stream_config(name)
        if config["format"] not in BYTES_PER_PIXEL:
            raise RuntimeError(f"hw_sim does not simulate pixel data for the {name} stream "
                               f"({config['format']})")
        return self._live().buffer(name, config)


class MappedArray:
    """picamera2.MappedArray: a request's buffer as an array, in place, while the context is
    open."""

    def __init__(self, request, stream, reshape=True, write=True):
        self._request = request
        self._stream = stream
        self._reshape = reshape
        self._array = None

    def __enter__(self):
        buffer = self._request._buffer(self._stream)
        if self._reshape:
            config = self._request._stream_config(self._stream)
            if config["format"] in YUV_FORMATS:
                buffer = _shape_buffer(buffer, config)
            else:
                bpp = BYTES_PER_PIXEL[config["format"]]
                buffer = buffer.reshape((config["size"][1], config["stride"] // bpp, bpp))
        self._array = buffer
        return self

    def __exit__(self, exc_type, exc_value, exc_traceback):
        self._array = None

    @property
    def array(self):
        return self._array


# --------------------------------------------------------------------------------------------
# Picamera2
# --------------------------------------------------------------------------------------------

class Picamera2:
    """The simulated camera. Use ``CameraRig(...).picamera2_class``: this base class has no rig
    and therefore no camera."""

    _rig: Optional["CameraRig"] = None

    @staticmethod
    def global_camera_info():
        return []

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
        self.is_open = False
        self.started = False
        rig = type(self)._rig
        if rig is None:
            raise RuntimeError(f"No camera number {camera_num} found "
                               "(use CameraRig(...).picamera2_class)")
        rig._check_can_open(camera_num)
        self._rig = rig
        self._clock = rig.clock
        self._spec = rig._spec
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._control_ranges = control_ranges(self._spec, rig.autofocus)
        self._properties = rig._properties()
        self.camera_idx = camera_num
        self.sensor_resolution = self._spec.resolution
        self.sensor_format = self._spec.bayer_format
        self.options: dict = {}
        self.camera_config: Optional[dict] = None
        self.stop_count = 0
        self.configure_count = 0
        self._jobs: list[Job] = []
        self._completed: list[CompletedRequest] = []
        self._max_queue_len = 0
        self._buffers_in_use = 0
        self._frame_drops = 0
        self._controls: dict = {}
        self._ae_hold: Optional[tuple[int, float]] = None
        self._af = {"mode": AF_MODE_MANUAL, "scan_until_ns": None, "lens": 1.0}
        self._mode: Optional[SensorMode] = None
        self._sequence = 0
        self._frames_since_start = 0
        self._next_sensor_timestamp_ns = 0
        self._next_arrival_ns: Optional[int] = None
        self._last_frame: Optional[_Frame] = None
        self._lost = False                       # unplugged while open: never delivers again
        self._blackout_until_ns: Optional[float] = None   # a timeout_next() fault
        self._no_buffer_before_ns = 0            # frames read out while every buffer was held
        self._sensor_modes_read = False
        self.is_open = True
        rig._register(self)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_traceback):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    # -- properties ------------------------------------------------------------------------
    @property
    def camera_properties(self):
        return dict(self._properties) if self.is_open else {}

    @property
    def camera_controls(self):
        return dict(self._control_ranges) if self.is_open else {}

    @property
    def sensor_modes(self):
        """The sensor's modes. Like picamera2 this reconfigures the sensor, so read it before
        start()."""
        self._require_open()
        if self.started and not self._sensor_modes_read:
            raise RuntimeError("Camera must be stopped before configuring")
        self._sensor_modes_read = True
        spec = self._spec
        return [{"format": spec.bayer_format, "unpacked": spec.bayer_format.split("_")[0],
                 "bit_depth": spec.bit_depth, "size": mode.size, "fps": mode.fps,
                 "crop_limits": mode.crop, "exposure_limits": (*spec.exposure_us, None)}
                for mode in spec.modes]

    # -- configurations --------------------------------------------------------------------
    def create_preview_configuration(self, main={}, lores=None, raw={}, transform=Transform(),
                                     colour_space=ColorSpace.Sycc(), buffer_count=4, controls={},
                                     display="main", encode="main", queue=True, sensor={},
                                     use_case="preview"):
        return self._make_configuration(
            use_case, {"format": "XBGR8888", "size": (640, 480), "preserve_ar": True}, main, lores,
            raw, transform, colour_space, buffer_count, controls, display, encode, queue, sensor,
            {"NoiseReductionMode": 3, "FrameDurationLimits": (100, 83333)})

    def create_still_configuration(self, main={}, lores=None, raw={}, transform=Transform(),
                                   colour_space=ColorSpace.Sycc(), buffer_count=1, controls={},
                                   display=None, encode=None, queue=True, sensor={}, use_case="still"):
        return self._make_configuration(
            use_case, {"format": "BGR888", "size": self.sensor_resolution, "preserve_ar": True}, main,
            lores, raw, transform, colour_space, buffer_count, controls, display, encode, queue,
            sensor, {"NoiseReductionMode": 2, "FrameDurationLimits": (100, 1000000 * 1000)})

    def create_video_configuration(self, main={}, lores=None, raw={}, transform=Transform(),
                                   colour_space=None, buffer_count=6, controls={}, display="main",
                                   encode="main", queue=True, sensor={}, use_case="video"):
        return self._make_configuration(
            use_case, {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, main, lores,
            raw, transform, colour_space, buffer_count, controls, display, encode, queue, sensor,
            {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)})

    @staticmethod
    def align_stream(stream_config, optimal=True):
        if optimal:
            align = 32                       # VC4
            if stream_config["format"] in YUV_FORMATS:
                align *= 2
            elif stream_config["format"] in ("XBGR8888", "XRGB8888", "RGB161616", "BGR161616"):
                align //= 2
        else:
            align = 2
        width, height = stream_config["size"]
        stream_config["size"] = (width - width % align, height - height % 2)

    @staticmethod
    def align_configuration(config, optimal=True):
        Picamera2.align_stream(config["main"], optimal=optimal)
        if config.get("lores") is not None:
            Picamera2.align_stream(config["lores"], optimal=optimal)

    def check_stream_config(self, stream_config, name):
        if type(stream_config) is not dict:
            raise RuntimeError(name + " stream should be a dictionary")
        for key in ("format", "size"):
            if key not in stream_config:
                raise RuntimeError(f"{key} not found in {name} stream")
        fmt = stream_config["format"]
        if type(fmt) is not str:
            raise RuntimeError("format in " + name + " stream should be a string")
        if name == "raw":
            if not _is_raw(fmt):
                raise RuntimeError("Unrecognised raw format " + fmt)
        elif fmt not in PICAMERA2_YUV_FORMATS + PICAMERA2_RGB_FORMATS + ("MJPEG",):
            raise RuntimeError("Bad format " + fmt + " in stream " + name)
        size = stream_config["size"]
        if type(size) is not tuple or len(size) != 2:
            raise RuntimeError("size in " + name + " stream should be (width, height)")
        if size[0] % 2 or size[1] % 2:
            raise RuntimeError("width and height should be even")

    def check_camera_config(self, camera_config):
        for name in ("colour_space", "transform", "main", "lores", "raw"):
            if name not in camera_config:
                raise RuntimeError(f"{name!r} key expected in camera configuration")
        if not isinstance(camera_config["colour_space"], ColorSpace):
            raise RuntimeError("Colour space has incorrect type")
        if not isinstance(camera_config["transform"], Transform):
            raise RuntimeError("Transform has incorrect type")
        if camera_config.get("sensor") is not None:
            bad_keys = set(camera_config["sensor"]) - {"bit_depth", "output_size"}
            if bad_keys:
                raise RuntimeError(f"Unexpected keys {bad_keys} in sensor configuration")
        self.check_stream_config(camera_config["main"], "main")
        lores = camera_config["lores"]
        if lores is not None:
            self.check_stream_config(lores, "lores")
            main_w, main_h = camera_config["main"]["size"]
            if lores["size"][0] > main_w or lores["size"][1] > main_h:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if lores["format"] not in PICAMERA2_YUV_FORMATS:
                raise RuntimeError("lores stream must be YUV")
        if camera_config["raw"] is not None:
            self.check_stream_config(camera_config["raw"], "raw")

    def configure(self, camera_config=None):
        self.configure_("preview" if camera_config is None else camera_config)

    def configure_(self, camera_config):
        self._require_open()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = self._resolve_configuration(camera_config)
        self.camera_config = None
        self.check_camera_config(config)
        _require_simulated_formats(config)
        for name in ("display", "encode"):
            stream = config[name]
            if stream is not None and stream not in config:
                raise RuntimeError(f"{name.capitalize()} stream {stream} was not defined")
        controls = self._validated_controls(config["controls"])
        mode = choose_sensor_mode(self._spec.modes, _sensor_output_size(config))
        _add_strides(config["main"])
        if config["lores"] is not None:
            _add_strides(config["lores"])
        if config["raw"] is not None:
            _configure_raw_stream(config["raw"], self._spec, mode)
        config["sensor"] = {"bit_depth": self._spec.bit_depth, "output_size": mode.size}
        with self._lock:
            self._mode = mode
            self._max_queue_len = 1 if config["queue"] and config["buffer_count"] > 1 else 0
            self._controls = controls
            self._ae_hold = None
            self.camera_config = config
            self.configure_count += 1

    def camera_configuration(self):
        return self.camera_config

    def stream_configuration(self, name="main"):
        return self.camera_config[name]

    # -- running ---------------------------------------------------------------------------
    def start(self, config=None, show_preview=False):
        if self.camera_config is None and config is None:
            config = "preview"
        if config is not None:
            self.configure(config)
        self.start_()

    def start_(self):
        self._require_open()
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        with self._lock:
            if self.started:
                return
            self.started = True
            self._buffers_in_use = 0
            self._no_buffer_before_ns = 0
            self._frames_since_start = 0
            self._next_sensor_timestamp_ns = self._clock.monotonic_ns()
            self._expose_next_frame()
            self._wake.notify_all()

    def stop(self):
        if self.started:
            self.stop_()

    def stop_(self, request=None):
        with self._lock:
            if self.started:
                self.stop_count += 1
                self.started = False
                self._next_arrival_ns = None
                queued, self._completed = self._completed, []
                for completed in queued:
                    completed.release()
                self._buffers_in_use = 0
                self._wake.notify_all()
        return (True, None)

    def close(self):
        if not self.is_open:
            return
        self.stop()
        with self._lock:
            self._cancel_jobs()
            self.is_open = False
            self.camera_config = None
            self._wake.notify_all()

    def set_controls(self, controls):
        with self._lock:
            validated = self._validated_controls(controls)
            if "AeEnable" in validated:
                self._ae_hold = None if validated["AeEnable"] else self._current_exposure()
            self._apply_autofocus_controls(validated)
            self._controls.update(validated)

    def cancel_all_and_flush(self):
        with self._lock:
            self._cancel_jobs()
            self._wake.notify_all()

    # -- jobs ------------------------------------------------------------------------------
    def dispatch_functions(self, functions, wait, signal_function=None, immediate=False):
        if wait is None:
            wait = signal_function is None
        timeout = None if wait is True else wait
        job = Job(functions, signal_function)
        job._camera = self
        with self._lock:
            only_job = not self._jobs
            self._jobs.append(job)
            finished = self._run_jobs() if only_job and (self._completed or immediate) else []
        for done in finished:
            done.signal()
        return job.get_result(timeout=timeout) if wait else job

    def wait(self, job, timeout=None):
        return job.get_result(timeout=timeout)

    def set_frame_drops_(self, num_frames):
        self._frame_drops = num_frames
        return (True, None)

    def drop_frames_(self):
        while self._completed:
            if self._frame_drops == 0:
                return (True, None)
            self._completed.pop(0).release()
            self._frame_drops -= 1
        return (False, None)

    def wait_for_timestamp_(self, timestamp_ns):
        if not timestamp_ns:
            return (True, None)
        while self._completed:
            metadata = self._completed[0].get_metadata()
            if metadata["SensorTimestamp"] - 1000 * metadata["ExposureTime"] >= timestamp_ns:
                return (True, None)
            self._completed.pop(0).release()
        return (False, None)

    def capture_request_(self):
        if not self._completed:
            return (False, None)
        return (True, self._completed.pop(0))

    def capture_metadata_(self):
        if not self._completed:
            return (False, None)
        request = self._completed.pop(0)
        metadata = request.get_metadata()
        request.release()
        return (True, metadata)

    def capture_array_(self, name):
        if not self._completed:
            return (False, None)
        request = self._completed.pop(0)
        array = request.make_array(name)
        request.release()
        return (True, array)

    def capture_arrays_and_metadata_(self, names):
        if not self._completed:
            return (False, None)
        request = self._completed.pop(0)
        arrays = [request.make_array(name) for name in names]
        metadata = request.get_metadata()
        request.release()
        return (True, (arrays, metadata))

    def capture_image_(self, name):
        if not self._completed:
            return (False, None)
        request = self._completed.pop(0)
        image = request.make_image(name)
        request.release()
        return (True, image)

    def capture_file_(self, file_output, name, format=None, exif_data=None):
        if not self._completed:
            return (False, None)
        if name == "raw":
            raise RuntimeError("hw_sim does not simulate raw (DNG) capture")
        request = self._completed.pop(0)
        request.save(name, file_output, format=format, exif_data=exif_data)
        metadata = request.get_metadata()
        request.release()
        return (True, metadata)

    def switch_mode_(self, camera_config):
        self.stop_()
        self.configure_(camera_config)
        self.start_()
        return (True, self.camera_config)

    # -- captures --------------------------------------------------------------------------
    def capture_request(self, wait=None, signal_function=None, flush=None):
        self._before_capture(wait)
        if flush is True:
            flush = self._clock.monotonic_ns()
        functions = [partial(self.wait_for_timestamp_, flush), self.capture_request_]
        return self.dispatch_functions(functions, wait, signal_function)

    @contextlib.contextmanager
    def captured_request(self, wait=None, flush=None):
        request = self.capture_request(wait=wait, flush=flush)
        try:
            yield request
        finally:
            request.release()

    def capture_metadata(self, wait=None, signal_function=None):
        self._before_capture(wait)
        return self.dispatch_functions([self.capture_metadata_], wait, signal_function)

    def capture_array(self, name="main", wait=None, signal_function=None):
        self._before_capture(wait)
        return self.dispatch_functions([partial(self.capture_array_, name)], wait, signal_function)

    def capture_arrays(self, names=["main"], wait=None, signal_function=None):
        self._before_capture(wait)
        return self.dispatch_functions([partial(self.capture_arrays_and_metadata_, names)], wait,
                                       signal_function)

    def capture_image(self, name="main", wait=None, signal_function=None):
        self._before_capture(wait)
        return self.dispatch_functions([partial(self.capture_image_, name)], wait, signal_function)

    def capture_file(self, file_output, name="main", format=None, wait=None, signal_function=None,
                     exif_data=None):
        self._before_capture(wait)
        functions = [partial(self.capture_file_, file_output, name, format=format, exif_data=exif_data)]
        return self.dispatch_functions(functions, wait, signal_function)

    def switch_mode(self, camera_config, wait=None, signal_function=None):
        self._before_capture(wait, must_be_running=False)
        return self.dispatch_functions([partial(self.switch_mode_, camera_config)], wait,
                                       signal_function, immediate=True)

    def switch_mode_and_capture_request(self, camera_config, wait=None, signal_function=None, delay=0):
        self._before_capture(wait, must_be_running=False)
        previous_config = self.camera_config

        def capture_and_switch_back_():
            done, request = self.capture_request_()
            if not done:
                return (False, None)
            self.switch_mode_(previous_config)
            return (True, request)

        functions = [partial(self.switch_mode_, camera_config), partial(self.set_frame_drops_, delay),
                     self.drop_frames_, capture_and_switch_back_]
        return self.dispatch_functions(functions, wait, signal_function, immediate=True)

    def switch_mode_capture_request_and_stop(self, camera_config, wait=None, signal_function=None):
        self._before_capture(wait, must_be_running=False)

        def capture_request_and_stop_():
            done, request = self.capture_request_()
            if not done:
                return (False, None)
            self.stop_()
            return (True, request)

        functions = [partial(self.switch_mode_, camera_config), capture_request_and_stop_]
        return self.dispatch_functions(functions, wait, signal_function, immediate=True)

    def autofocus_cycle(self, wait=None, signal_function=None):
        """Run an autofocus scan; the result is True if it ended focused."""
        self._before_capture(wait)
        self.set_controls({"AfMode": AF_MODE_AUTO, "AfTrigger": AF_TRIGGER_START})

        def newest_af_state():
            return self._completed[-1].get_metadata()["AfState"] if self._completed else None

        def wait_for_scan_start_():
            return (newest_af_state() == AF_STATE_SCANNING, None)

        def wait_for_scan_end_():
            state = newest_af_state()
            if state is None or state == AF_STATE_SCANNING:
                return (False, None)
            return (True, state == AF_STATE_FOCUSED)

        return self.dispatch_functions([wait_for_scan_start_, wait_for_scan_end_], wait, signal_function)

    # ======================================================================================
    # Internals
    # ======================================================================================
    def _require_open(self):
        if not self.is_open:
            raise RuntimeError("Camera not opened")

    def _before_capture(self, wait, must_be_running=True):
        """Run frames already due, check the camera can capture, apply a timeout_next() fault."""
        self._clock.advance_to(self._clock.monotonic_ns())
        with self._lock:
            self._require_open()
            if must_be_running and not self.started:
                raise RuntimeError("Camera is not started: this capture would wait for ever")
            if self._rig._take_timeout():
                self._begin_blackout(wait)

    def _begin_blackout(self, wait):
        """No frame arrives for this capture: for `wait` seconds, or until clear_faults()."""
        if _is_number(wait):
            until: float = self._clock.monotonic_ns() + _seconds_to_ns(wait)
        else:
            until = math.inf
        self._blackout_until_ns = max(self._blackout_until_ns or 0, until)
        queued, self._completed = self._completed, []
        for request in queued:
            request.release()

    def _resolve_configuration(self, camera_config) -> dict:
        if isinstance(camera_config, str):
            create = {"preview": self.create_preview_configuration,
                      "still": self.create_still_configuration}.get(
                camera_config, self.create_video_configuration)
            return create()
        if isinstance(camera_config, dict):
            return camera_config.copy()
        raise RuntimeError("hw_sim takes a configuration dict or 'preview'/'still'/'video'")

    def _make_configuration(self, use_case, main_defaults, main, lores, raw, transform,
                            colour_space, buffer_count, controls, display, encode, queue, sensor,
                            default_controls) -> dict:
        self._require_open()
        main = _initial_stream(main_defaults, main)
        self.align_stream(main, optimal=False)
        lores = _initial_stream({"format": "YUV420", "size": main["size"], "preserve_ar": False}, lores)
        if lores is not None:
            self.align_stream(lores, optimal=False)
        raw = _initial_stream({"format": self.sensor_format, "size": main["size"]}, raw,
                              RAW_STREAM_IGNORED_KEYS)
        if colour_space is None:
            small = main["size"][0] < 1280 or main["size"][1] < 720
            colour_space = ColorSpace.Smpte170m() if small else ColorSpace.Rec709()
        config = {"use_case": use_case, "transform": transform, "colour_space": colour_space,
                  "buffer_count": buffer_count, "queue": queue, "main": main, "lores": lores,
                  "raw": raw, "controls": default_controls | controls, "sensor": sensor}
        for name, stream in (("Display", display), ("Encode", encode)):
            if stream is not None and config.get(stream) is None:
                raise RuntimeError(f"{name} stream {stream} was not defined")
        config["display"] = display
        config["encode"] = encode
        return config

    # -- controls --------------------------------------------------------------------------
    def _validated_controls(self, controls) -> dict:
        validated = {}
        for name, value in dict(controls).items():
            if name == "FrameRate":
                name, value = "FrameDurationLimits", _frame_rates_to_durations(value)
            if name not in self._control_ranges:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
            validated[name] = value
        return validated

    def _current_exposure(self) -> tuple[int, float]:
        """The exposure and gain the sensor is using now (what AeEnable=False holds)."""
        frame = self._last_frame
        if frame is None:
            scene = self._rig.scene.exposure(self._clock.monotonic_ns())
            return (int(scene["ExposureTime"]), float(scene["AnalogueGain"]))
        return (frame.exposure_us, frame.analogue_gain)

    def _apply_autofocus_controls(self, controls):
        now = self._clock.monotonic_ns()
        af = self._af
        if "AfMode" in controls:
            af["mode"] = int(controls["AfMode"])
            af["scan_until_ns"] = now + AF_SCAN_NS if af["mode"] == AF_MODE_CONTINUOUS else None
        if "AfTrigger" in controls and af["mode"] == AF_MODE_AUTO:
            start = int(controls["AfTrigger"]) == AF_TRIGGER_START
            af["scan_until_ns"] = now + AF_SCAN_NS if start else None
        if "LensPosition" in controls:
            af["lens"] = float(controls["LensPosition"])

    def _fixed(self, name) -> Optional[float]:
        """A manual ExposureTime/AnalogueGain (0 means auto), or the value AeEnable=False holds."""
        value = self._controls.get(name)
        if value:
            return value
        if self._ae_hold is not None:
            return self._ae_hold[0 if name == "ExposureTime" else 1]
        return None

    def _frame_duration_limits_us(self) -> tuple[int, int]:
        fastest = self._mode.min_frame_us
        slowest = self._control_ranges["FrameDurationLimits"][1]
        limits = self._controls.get("FrameDurationLimits")
        if limits is None:
            return fastest, slowest
        low = max(int(limits[0]), fastest)
        return low, max(min(int(limits[1]), slowest), low)

    # -- the sensor ------------------------------------------------------------------------
    def _expose_next_frame(self):
        """Decide how the next frame is exposed and schedule its arrival."""
        frame = self._expose(self._next_sensor_timestamp_ns)
        self._last_frame = frame
        self._next_sensor_timestamp_ns = frame.arrives_at_ns
        self._next_arrival_ns = frame.arrives_at_ns
        self._clock.call_at(frame.arrives_at_ns, partial(self._on_frame_arrival, self.stop_count, frame))

    def _expose(self, timestamp_ns: int) -> _Frame:
        scene = self._rig.scene.exposure(timestamp_ns)
        shortest, longest = self._frame_duration_limits_us()
        exposure_us, gain = self._exposure_and_gain(scene, longest)
        duration_us = min(max(shortest, exposure_us), longest)
        exposure_us = min(exposure_us, duration_us)
        digital_gain = float(scene["DigitalGain"])
        wanted = scene["ExposureTime"] * scene["AnalogueGain"]
        frame = _Frame(self._sequence, timestamp_ns, duration_us, exposure_us, gain,
                       brightness=exposure_us * gain / wanted if wanted else 1.0,
                       transform=self.camera_config["transform"])
        frame.metadata = self._metadata(frame, scene, digital_gain)
        self._sequence += 1
        self._frames_since_start += 1
        return frame

    def _exposure_and_gain(self, scene: dict, longest_us: int) -> tuple[int, float]:
        """Manual values where set; otherwise the scene's, with the exposure capped by the
        frame duration and the analogue gain making up the difference."""
        min_exposure, max_exposure = self._spec.exposure_us
        min_gain, max_gain = self._spec.analogue_gain
        wanted = scene["ExposureTime"] * scene["AnalogueGain"]
        fixed_exposure, fixed_gain = self._fixed("ExposureTime"), self._fixed("AnalogueGain")
        if fixed_exposure:
            exposure = fixed_exposure
        elif fixed_gain:
            exposure = wanted / fixed_gain
        else:
            exposure = scene["ExposureTime"]
        exposure_us = int(min(max(exposure, min_exposure), max_exposure, longest_us))
        gain = fixed_gain or min(max(wanted / exposure_us, min_gain), max_gain)
        return exposure_us, float(gain)

    def _metadata(self, frame: _Frame, scene: dict, digital_gain: float) -> dict:
        colour_temperature = int(scene["ColourTemperature"])
        colour_gains = self._controls.get("ColourGains") or _awb_gains(colour_temperature)
        wall_offset_ns = self._clock.wall_ns() - self._clock.monotonic_ns()
        metadata = {
            "SensorTimestamp": frame.sensor_timestamp_ns,
            "ExposureTime": frame.exposure_us,
            "FrameDuration": frame.duration_us,
            "AnalogueGain": frame.analogue_gain,
            "DigitalGain": digital_gain,
            "Lux": float(scene["Lux"]),
            "ColourTemperature": colour_temperature,
            "ColourGains": tuple(float(g) for g in colour_gains),
            "FocusFoM": FOCUS_FOM,
            "SensorBlackLevels": BLACK_LEVELS,
            "ColourCorrectionMatrix": COLOUR_CORRECTION_MATRIX,
            "ScalerCrop": tuple(self._controls.get("ScalerCrop") or self._default_scaler_crop()),
            "AeLocked": self._frames_since_start >= AE_SETTLE_FRAMES,
            "FrameWallClock": (frame.sensor_timestamp_ns + wall_offset_ns) // 1000,
        }
        if self._spec.reports_temperature:
            metadata["SensorTemperature"] = 40.0
        if self._rig.autofocus:
            metadata.update(self._autofocus_metadata(frame.sensor_timestamp_ns))
        return metadata

    def _autofocus_metadata(self, timestamp_ns: int) -> dict:
        af = self._af
        if af["mode"] == AF_MODE_MANUAL:
            state, lens = AF_STATE_IDLE, af["lens"]
        elif af["scan_until_ns"] is None:
            state, lens = AF_STATE_IDLE, af["lens"]
        elif timestamp_ns < af["scan_until_ns"]:
            state, lens = AF_STATE_SCANNING, af["lens"]
        else:
            state, lens = AF_STATE_FOCUSED, AF_FOCUSED_LENS_POSITION
            af["lens"] = lens
        return {"AfState": state, "AfPauseState": 0, "LensPosition": float(lens)}

    def _default_scaler_crop(self) -> tuple[int, int, int, int]:
        """The mode's field of view, cut to main's aspect ratio when main preserves it."""
        x, y, w, h = self._mode.crop
        main = self.camera_config["main"]
        if not main.get("preserve_ar", True):
            return (x, y, w, h)
        main_w, main_h = main["size"]
        if w * main_h > h * main_w:
            new_w = h * main_w // main_h
            return (x + (w - new_w) // 2, y, new_w, h)
        new_h = w * main_h // main_w
        return (x, y + (h - new_h) // 2, w, new_h)

    def _on_frame_arrival(self, stop_count: int, frame: _Frame):
        """A frame reaches memory (or is lost): picamera2's event loop, in the clock's thread."""
        with self._lock:
            if stop_count != self.stop_count or not self.started:
                return
            self._expose_next_frame()
            if not self._frame_lands(frame):
                return
            self._completed.append(CompletedRequest(_SimRequest(frame, self._render), self))
            self._rig.frames_delivered += 1
            finished = self._run_jobs()
            while len(self._completed) > self._max_queue_len:
                self._completed.pop(0).release()
            self._wake.notify_all()
        for job in finished:
            job.signal()

    def _frame_lands(self, frame: _Frame) -> bool:
        """Whether the frame reaches a buffer: no fault, and a buffer free to take it."""
        if self._lost or self._rig._hung:
            return False
        if self._blackout_until_ns is not None:
            if frame.arrives_at_ns <= self._blackout_until_ns:
                return False
            self._blackout_until_ns = None
        if frame.sensor_timestamp_ns < self._no_buffer_before_ns:
            return False
        return self._buffers_in_use < self.camera_config["buffer_count"]

    def _frames_can_arrive(self) -> bool:
        return (self.started and not self._lost and not self._rig._hung
                and self._blackout_until_ns != math.inf
                and self._buffers_in_use < self.camera_config["buffer_count"])

    def _buffer_taken(self):
        with self._lock:
            self._buffers_in_use += 1

    def _buffer_returned(self, request: CompletedRequest):
        with self._lock:
            if request.stop_count != self.stop_count or not self.started:
                return
            if self._buffers_in_use >= self.camera_config["buffer_count"]:
                # Frames being read out right now had no buffer to go to.
                self._no_buffer_before_ns = self._clock.monotonic_ns()
            self._buffers_in_use -= 1
            self._wake.notify_all()

    def _render(self, frame: _Frame, stream_config: dict) -> np.ndarray:
        """A stream's buffer for a frame: the scene at mid-exposure, packed as the hardware does."""
        width, height = stream_config["size"]
        image = self._rig.scene.render_bgr(frame.mid_exposure_ns, (width, height))
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise ValueError(f"scene.render_bgr returned {image.shape} {image.dtype}, "
                             f"expected ({height}, {width}, 3) uint8")
        if abs(frame.brightness - 1.0) > 1e-3:
            image = cv2.convertScaleAbs(image, alpha=frame.brightness)
        if frame.transform.hflip:
            image = image[:, ::-1]
        if frame.transform.vflip:
            image = image[::-1]
        return _pack(np.ascontiguousarray(image), stream_config["format"], stream_config["stride"])

    # -- waiting ---------------------------------------------------------------------------
    def _run_jobs(self) -> list[Job]:
        finished = []
        while self._jobs and self._jobs[0].execute():
            finished.append(self._jobs.pop(0))
        return finished

    def _cancel_jobs(self):
        for job in self._jobs:
            job.cancel()
        self._jobs = []

    def _wait_for_job(self, job: Job, timeout):
        """Advance the clock frame by frame until the job is done; TimeoutError after `timeout`
        seconds. With no timeout and no frame able to arrive, block until something changes."""
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic_ns() + _seconds_to_ns(timeout)
        while not job._future.done():
            with self._lock:
                if deadline is None and not self._frames_can_arrive():
                    self._wake.wait()
                    continue
                next_arrival = self._next_arrival_ns if self.started else None
            clock.advance_to(_earliest(next_arrival, deadline))
            if not job._future.done() and deadline is not None and clock.monotonic_ns() >= deadline:
                raise TimeoutError(f"no frame from the camera within {timeout} s")

    # -- faults (called by the rig) --------------------------------------------------------
    def _lose(self):
        with self._lock:
            self._lost = True
            self._wake.notify_all()

    def _clear_faults(self):
        with self._lock:
            self._blackout_until_ns = None
            self._wake.notify_all()

    # -- files -----------------------------------------------------------------------------
    def _exif_bytes(self, metadata: dict, exif_data: Optional[dict]) -> bytes:
        """picamera2's EXIF, dated by the rig's wall clock (the simulated 'now')."""
        if "AnalogueGain" not in metadata or "DigitalGain" not in metadata:
            return b""
        now = datetime.fromtimestamp(self._clock.wall_ns() / NS_PER_S).strftime("%Y:%m:%d %H:%M:%S")
        zero_ifd = {piexif.ImageIFD.Make: "Raspberry Pi",
                    piexif.ImageIFD.Model: self._rig.camera_id,
                    piexif.ImageIFD.Software: "Picamera2",
                    piexif.ImageIFD.DateTime: now}
        total_gain = metadata["AnalogueGain"] * metadata["DigitalGain"]
        exif_ifd = {piexif.ExifIFD.DateTimeOriginal: now,
                    piexif.ExifIFD.ExposureTime: (metadata["ExposureTime"], 1000000),
                    piexif.ExifIFD.ISOSpeedRatings: int(total_gain * 100)}
        return piexif.dump({"0th": zero_ifd, "Exif": exif_ifd} | (exif_data or {}))


# --------------------------------------------------------------------------------------------
# The rig
# --------------------------------------------------------------------------------------------

class CameraRig:
    """One simulated camera module on a CSI port, watching `scene` on `clock`.

    Pass ``rig.picamera2_class`` to the firmware; inject faults through the rig.
    ``cameras`` lists every Picamera2 opened from the rig (closed ones too);
    ``frames_delivered`` counts frames that reached a buffer, on all of them.
    """

    def __init__(self, scene: Scene, clock, *, model: str = "imx477",
                 sensor_resolution=(4056, 3040), present: bool = True, autofocus: bool = False):
        if not (hasattr(clock, "call_at") and hasattr(clock, "advance_to")):
            raise TypeError("CameraRig needs a clock with call_at/advance_to "
                            "(trapd.clock.VirtualClock or RealtimeClock)")
        self.scene = scene
        self.clock = clock
        self.model = model
        self.autofocus = autofocus
        self.present = present
        self.cameras: list[Picamera2] = []
        self.frames_delivered = 0
        self._spec = sensor_spec(model, tuple(sensor_resolution))
        self._open_failures: list[str] = []
        self._hung = False
        self._timeouts_pending = 0
        self._lock = threading.RLock()
        self._picamera2_class = type("Picamera2", (Picamera2,), {
            "__module__": __name__,
            "__doc__": f"Picamera2 bound to a simulated {model} camera.",
            "_rig": self,
            "global_camera_info": staticmethod(self._camera_info),
        })

    @property
    def picamera2_class(self) -> type:
        return self._picamera2_class

    @property
    def camera_id(self) -> str:
        """libcamera's id for the camera (picamera2 writes it as the EXIF Model)."""
        return f"/base/soc/i2c0mux/i2c@1/{self.model}@{self._spec.i2c_address}"

    # -- faults ----------------------------------------------------------------------------
    def fail_next_opens(self, n: int, message: str = BUSY_MESSAGE) -> None:
        """The next n Picamera2() constructions raise RuntimeError(message)."""
        with self._lock:
            self._open_failures.extend([message] * n)

    def hang(self) -> None:
        """No frame lands from now on (a libcamera frontend timeout) until clear_faults()."""
        self._hung = True

    def timeout_next(self, n: int) -> None:
        """The next n captures get no frame: TimeoutError after their numeric `wait` (without
        one, no frame until clear_faults()); then frames flow again. As on a Pi, the timed-out
        job stays queued and takes the next frame unless cancel_all_and_flush() is called."""
        with self._lock:
            self._timeouts_pending += n

    def unplug(self) -> None:
        """The camera vanishes: no new opens, and open cameras never deliver again."""
        self.present = False
        for camera in self._open_cameras():
            camera._lose()

    def plug_in(self) -> None:
        """The camera is back for new opens (cameras open across the unplug stay dead)."""
        self.present = True

    def clear_faults(self) -> None:
        """End hang(), pending timeout_next() and fail_next_opens() faults."""
        with self._lock:
            self._hung = False
            self._timeouts_pending = 0
            self._open_failures.clear()
        for camera in self._open_cameras():
            camera._clear_faults()

    # -- used by Picamera2 -----------------------------------------------------------------
    def _camera_info(self) -> list:
        if not self.present:
            return []
        return [{"Model": self.model, "Location": 2, "Rotation": self._spec.rotation,
                 "Id": self.camera_id, "Num": 0}]

    def _properties(self) -> dict:
        w, h = self._spec.resolution
        order = self._spec.bayer_format[1:5]
        return {"Model": self.model, "UnitCellSize": self._spec.unit_cell_nm, "Location": 2,
                "Rotation": self._spec.rotation, "ColorFilterArrangement": CFA_ORDERS.get(order, 0),
                "PixelArraySize": (w, h), "PixelArrayActiveAreas": [(0, 0, w, h)],
                "ScalerCropMaximum": (0, 0, w, h)}

    def _check_can_open(self, camera_num) -> None:
        with self._lock:
            if not self.present or camera_num != 0:
                raise RuntimeError(f"No camera number {camera_num} found")
            if self._open_failures:
                raise RuntimeError(self._open_failures.pop(0))
            if self._open_cameras():
                raise RuntimeError(BUSY_MESSAGE)      # libcamera: "Device or resource busy"

    def _register(self, camera: Picamera2) -> None:
        with self._lock:
            self.cameras.append(camera)

    def _open_cameras(self) -> list[Picamera2]:
        return [c for c in self.cameras if c.is_open and not c._lost]

    def _take_timeout(self) -> bool:
        with self._lock:
            if self._timeouts_pending <= 0:
                return False
            self._timeouts_pending -= 1
            return True


# --------------------------------------------------------------------------------------------
# Helpers: configuration
# --------------------------------------------------------------------------------------------

def _initial_stream(defaults: dict, updates: Optional[dict], ignore=()) -> Optional[dict]:
    """picamera2's _make_initial_stream_config: defaults overlaid with the caller's keys."""
    if updates is None:
        return None
    stream = dict(defaults)
    for key, value in updates.items():
        if key in VALID_STREAM_KEYS:
            stream[key] = value
        elif key not in ignore:
            raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {VALID_STREAM_KEYS}")
    return stream


def _require_simulated_formats(config: dict) -> None:
    for name in ("main", "lores"):
        stream = config[name]
        if stream is not None and stream["format"] not in BYTES_PER_PIXEL:
            raise RuntimeError(f"hw_sim does not simulate the {stream['format']} format ({name})")


def _sensor_output_size(config: dict) -> tuple[int, int]:
    sensor = config.get("sensor") or {}
    if sensor.get("output_size"):
        return tuple(sensor["output_size"])
    if config["raw"] is not None and config["raw"].get("size"):
        return tuple(config["raw"]["size"])
    return tuple(config["main"]["size"])


def _add_strides(stream: dict) -> None:
    width, height = stream["size"]
    stride = _align_up(width * BYTES_PER_PIXEL[stream["format"]], STRIDE_ALIGN)
    stream["stride"] = stride
    stream["framesize"] = stride * height * 3 // 2 if stream["format"] in YUV_FORMATS else stride * height


def _configure_raw_stream(raw: dict, spec: SensorSpec, mode: SensorMode) -> None:
    width, height = mode.size
    stride = _align_up(width * spec.bit_depth // 8, RAW_STRIDE_ALIGN)
    raw.update(format=spec.bayer_format, size=mode.size, stride=stride, framesize=stride * height)


def _is_raw(fmt: str) -> bool:
    bayer = fmt.split("_")[0]
    return bayer[:5] in ("SRGGB", "SGRBG", "SGBRG", "SBGGR") or bayer in ("R8", "R10", "R12", "R16") \
        or "PISP_COMP" in fmt


def _frame_rates_to_durations(rate) -> tuple[int, int]:
    if isinstance(rate, (tuple, list)):
        return (int(1e6 / rate[1]), int(1e6 / rate[0]))
    return (int(1e6 / rate), int(1e6 / rate))


@lru_cache(maxsize=256)
def _awb_gains(colour_temperature: int) -> tuple[float, float]:
    """Red and blue white-balance gains a Pi would pick at this colour temperature (approx.)."""
    mired = 1e6 / max(colour_temperature, 1000) - 200
    red = min(max(2.3 - 0.00526 * mired, 0.5), 8.0)
    blue = min(max(1.7 + 0.009 * mired, 0.5), 8.0)
    return (round(red, 4), round(blue, 4))


# --------------------------------------------------------------------------------------------
# Helpers: pixels and files
# --------------------------------------------------------------------------------------------

def _pack(bgr: np.ndarray, fmt: str, stride: int) -> np.ndarray:
    """The 1-D buffer the ISP would write for this image: rows padded to `stride`."""
    if fmt in YUV_FORMATS:
        return _pack_yuv420(bgr, stride, swap_uv=fmt == "YVU420")
    pixels = {
        "RGB888": lambda: bgr,
        "BGR888": lambda: bgr[..., ::-1],
        "XBGR8888": lambda: np.dstack([bgr[..., ::-1], np.full(bgr.shape[:2], 255, np.uint8)]),
        "XRGB8888": lambda: np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)]),
    }[fmt]()
    height, width = bgr.shape[:2]
    rows = np.zeros((height, stride), np.uint8)
    rows[:, :width * pixels.shape[2]] = pixels.reshape(height, -1)
    return rows.reshape(-1)


def _pack_yuv420(bgr: np.ndarray, stride: int, swap_uv: bool = False) -> np.ndarray:
    """Planar 4:2:0, full-range BT.601: Y at `stride`, then U and V at stride/2."""
    height, width = bgr.shape[:2]
    ycrcb = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)
    chroma = cv2.resize(ycrcb[..., 1:], (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    u, v = chroma[..., 1], chroma[..., 0]
    if swap_uv:
        u, v = v, u
    buffer = np.zeros(height * stride * 3 // 2, np.uint8)
    y_size, uv_size = height * stride, (height // 2) * (stride // 2)
    buffer[:y_size].reshape(height, stride)[:, :width] = ycrcb[..., 0]
    buffer[y_size:y_size + uv_size].reshape(height // 2, stride // 2)[:, :width // 2] = u
    buffer[y_size + uv_size:].reshape(height // 2, stride // 2)[:, :width // 2] = v
    return buffer


def _shape_buffer(buffer: np.ndarray, config: dict) -> np.ndarray:
    """picamera2's _make_array_shared: the buffer as an image-shaped view, padding cut off."""
    fmt = config["format"]
    width, height = config["size"]
    stride = config["stride"]
    if fmt in YUV_FORMATS:
        return buffer.reshape((height * 3 // 2, stride))
    channels = BYTES_PER_PIXEL[fmt]
    return buffer.reshape((height, stride))[:, :width * channels].reshape((height, width, channels))


def _pil_mode(fmt: str) -> str:
    mode = PIL_MODES.get(fmt)
    if mode is None:
        raise RuntimeError(f"Stream format {fmt} not supported for PIL images")
    return mode


def _format_str(file_output, format) -> str:
    """picamera2's _get_format_str, quirks included (a Path gives '.jpg', with the dot)."""
    if isinstance(format, str):
        return format.lower()
    if isinstance(file_output, str):
        return file_output.split(".")[-1].lower()
    if isinstance(file_output, Path):
        return file_output.suffix.lower()
    raise RuntimeError("Cannot determine format to save")


def _encode_jpeg(array: np.ndarray, config: dict, quality: int) -> bytes:
    fmt = config["format"]
    if fmt == "YUV420":
        width, height = config["size"]
        y = array[:height, :width]
        reshaped = array.reshape((array.shape[0] * 2, array.strides[0] // 2))
        u = reshaped[2 * height: 2 * height + height // 2, :width // 2]
        v = reshaped[2 * height + height // 2:, :width // 2]
        return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality)
    return simplejpeg.encode_jpeg(np.ascontiguousarray(array), quality, SIMPLEJPEG_COLOURSPACES[fmt], "420")


def _write_jpeg(file_output, jpeg: bytes, exif: bytes) -> None:
    """Write the JPEG with the EXIF APP1 segment spliced in after SOI."""
    if exif:
        jpeg = jpeg[:2] + bytes.fromhex("ffe1") + (len(exif) + 2).to_bytes(2, "big") + exif + jpeg[2:]
    if isinstance(file_output, io.BytesIO):
        file_output.write(jpeg)
    else:
        with open(file_output, "wb") as f:
            f.write(jpeg)


def _save_with_pil(image: Image.Image, file_output, format, options: dict) -> None:
    """picamera2's Helpers.save for non-JPEG formats (and for Path outputs: no EXIF)."""
    if _format_str(file_output, format) == "png" and image.mode == "RGBX":
        image = image.convert(mode="RGBA")
    image.save(file_output, compress_level=options.get("compress_level", 1),
               quality=options.get("quality", 90), format=format)


# --------------------------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------------------------

def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _seconds_to_ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _earliest(*times: Optional[float]) -> int:
    return int(min(t for t in times if t is not None))
