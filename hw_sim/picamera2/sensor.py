"""The camera module behind a Picamera2: sensor specs and modes, the controls libcamera
advertises, the exposure model (frame timing, auto exposure, gains), per-frame metadata,
autofocus, and rendering a frame's streams from the scene."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional, Protocol

import cv2
import numpy as np

from .libcamera_types import ColorSpace, Transform
from .pixels import pack

AE_SETTLE_FRAMES = 3             # frames after start() before AeLocked reads True
AF_SCAN_NS = 300_000_000         # how long an autofocus scan takes
AF_FOCUSED_LENS_POSITION = 0.5   # dioptres (2 m) where a scan ends up
FOCUS_FOM = 1200                 # constant FocusFoM (not computed from the image)
BLACK_LEVELS = (4096, 4096, 4096, 4096)
COLOUR_CORRECTION_MATRIX = (1.76, -0.54, -0.22, -0.36, 1.74, -0.38, -0.04, -0.62, 1.66)

AF_MODE_MANUAL, AF_MODE_AUTO, AF_MODE_CONTINUOUS = 0, 1, 2
AF_TRIGGER_START, AF_TRIGGER_CANCEL = 0, 1
AF_STATE_IDLE, AF_STATE_SCANNING, AF_STATE_FOCUSED = 0, 1, 2


class Scene(Protocol):
    """What the rig needs from a scene (hw_sim/scene.py implements it)."""

    def render_bgr(self, t_ns: int, size: tuple[int, int]) -> np.ndarray:
        """(h, w, 3) uint8 BGR for size=(w, h), as seen at monotonic time t_ns."""

    def exposure(self, t_ns: int) -> dict:
        """Auto-exposure's answer at t_ns: ExposureTime (µs), AnalogueGain, DigitalGain,
        Lux, ColourTemperature."""


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


def control_ranges(spec: SensorSpec, autofocus: bool, without: tuple[str, ...] = ()) -> dict:
    """camera_controls: name -> (min, max, default), as libcamera advertises them; the
    controls named in `without` are not advertised."""
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
    return {name: limits for name, limits in controls.items() if name not in without}


@lru_cache(maxsize=256)
def awb_gains(colour_temperature: int) -> tuple[float, float]:
    """Red and blue white-balance gains a Pi would pick at this colour temperature (approx.)."""
    mired = 1e6 / max(colour_temperature, 1000) - 200
    red = min(max(2.3 - 0.00526 * mired, 0.5), 8.0)
    blue = min(max(1.7 + 0.009 * mired, 0.5), 8.0)
    return (round(red, 4), round(blue, 4))


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------

@dataclass
class Frame:
    """One sensor frame: when it was exposed and how (fixed when its exposure starts)."""
    sequence: int
    sensor_timestamp_ns: int
    duration_us: int
    exposure_us: int
    analogue_gain: float
    brightness: float              # image gain relative to what the scene rendered
    transform: Transform
    colour_space: ColorSpace       # what YUV streams are rendered in
    metadata: dict = field(default_factory=dict)

    @property
    def arrives_at_ns(self) -> int:
        return self.sensor_timestamp_ns + self.duration_us * 1000

    @property
    def mid_exposure_ns(self) -> int:
        return self.sensor_timestamp_ns - self.exposure_us * 500


class Sensor:
    """The sensor and ISP behind one open camera: exposes frames under the controls set and
    renders their streams. `rig` supplies the scene (read afresh each frame), the spec and
    whether the module has autofocus."""

    def __init__(self, rig, clock, control_ranges: dict):
        self._rig = rig
        self._spec = rig._spec
        self._clock = clock
        self._control_ranges = control_ranges
        self.mode: Optional[SensorMode] = None
        self.controls: dict = {}
        self._ae_hold: Optional[tuple[int, float]] = None
        self._af = {"mode": AF_MODE_MANUAL, "scan_until_ns": None, "lens": 1.0}
        self._sequence = 0
        self.frames_since_start = 0
        self.last_frame: Optional[Frame] = None

    def configure(self, mode: SensorMode, controls: dict) -> None:
        self.mode = mode
        self.controls = controls
        self._ae_hold = None

    def set_controls(self, controls: dict) -> None:
        """Apply validated controls (from the next frame exposed)."""
        if "AeEnable" in controls:
            self._ae_hold = None if controls["AeEnable"] else self._current_exposure()
        self._apply_autofocus_controls(controls)
        self.controls.update(controls)

    # -- exposing a frame ------------------------------------------------------------------
    def expose(self, timestamp_ns: int, camera_config: dict) -> Frame:
        """The frame whose exposure ends at `timestamp_ns`, with its metadata."""
        scene = self._rig.scene.exposure(timestamp_ns)
        shortest, longest = self._frame_duration_limits_us()
        exposure_us, gain = self._exposure_and_gain(scene, longest)
        duration_us = min(max(shortest, exposure_us), longest)
        exposure_us = min(exposure_us, duration_us)
        digital_gain = float(scene["DigitalGain"])
        wanted = scene["ExposureTime"] * scene["AnalogueGain"]
        frame = Frame(self._sequence, timestamp_ns, duration_us, exposure_us, gain,
                      brightness=exposure_us * gain / wanted if wanted else 1.0,
                      transform=camera_config["transform"],
                      colour_space=camera_config["colour_space"])
        frame.metadata = self._metadata(frame, scene, digital_gain, camera_config["main"])
        self._sequence += 1
        self.frames_since_start += 1
        self.last_frame = frame
        return frame

    def render(self, frame: Frame, stream_config: dict) -> np.ndarray:
        """A stream's buffer for a frame: the scene at mid-exposure (or, for a scene of discrete
        frames such as footage, at its SensorTimestamp), packed as the hardware does."""
        width, height = stream_config["size"]
        scene = self._rig.scene
        at_ns = (frame.sensor_timestamp_ns if getattr(scene, "sampled_at_sensor_timestamp", False)
                 else frame.mid_exposure_ns)
        image = scene.render_bgr(at_ns, (width, height))
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise ValueError(f"scene.render_bgr returned {image.shape} {image.dtype}, "
                             f"expected ({height}, {width}, 3) uint8")
        if abs(frame.brightness - 1.0) > 1e-3:
            image = cv2.convertScaleAbs(image, alpha=frame.brightness)
        if frame.transform.hflip:
            image = image[:, ::-1]
        if frame.transform.vflip:
            image = image[::-1]
        return pack(np.ascontiguousarray(image), stream_config["format"], stream_config["stride"],
                    frame.colour_space)

    # -- the exposure model ----------------------------------------------------------------
    def _current_exposure(self) -> tuple[int, float]:
        """The exposure and gain the sensor is using now (what AeEnable=False holds)."""
        frame = self.last_frame
        if frame is None:
            scene = self._rig.scene.exposure(self._clock.monotonic_ns())
            return (int(scene["ExposureTime"]), float(scene["AnalogueGain"]))
        return (frame.exposure_us, frame.analogue_gain)

    def _fixed(self, name) -> Optional[float]:
        """A manual ExposureTime/AnalogueGain (0 means auto), or the value AeEnable=False holds."""
        value = self.controls.get(name)
        if value:
            return value
        if self._ae_hold is not None:
            return self._ae_hold[0 if name == "ExposureTime" else 1]
        return None

    def _frame_duration_limits_us(self) -> tuple[int, int]:
        fastest = self.mode.min_frame_us
        slowest = self._control_ranges.get("FrameDurationLimits", (0, self._spec.exposure_us[1]))[1]
        limits = self.controls.get("FrameDurationLimits")
        if limits is None:
            return fastest, slowest
        low = max(int(limits[0]), fastest)
        return low, max(min(int(limits[1]), slowest), low)

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

    # -- metadata --------------------------------------------------------------------------
    def _metadata(self, frame: Frame, scene: dict, digital_gain: float, main: dict) -> dict:
        colour_temperature = int(scene["ColourTemperature"])
        colour_gains = self.controls.get("ColourGains") or awb_gains(colour_temperature)
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
            "ScalerCrop": tuple(self.controls.get("ScalerCrop") or self._default_scaler_crop(main)),
            "AeLocked": self.frames_since_start >= AE_SETTLE_FRAMES,
            "FrameWallClock": (frame.sensor_timestamp_ns + wall_offset_ns) // 1000,
        }
        if self._spec.reports_temperature:
            metadata["SensorTemperature"] = 40.0
        if self._rig.autofocus:
            metadata.update(self._autofocus_metadata(frame.sensor_timestamp_ns))
        return metadata

    def _default_scaler_crop(self, main: dict) -> tuple[int, int, int, int]:
        """The mode's field of view, cut to main's aspect ratio when main preserves it."""
        x, y, w, h = self.mode.crop
        if not main.get("preserve_ar", True):
            return (x, y, w, h)
        main_w, main_h = main["size"]
        if w * main_h > h * main_w:
            new_w = h * main_w // main_h
            return (x + (w - new_w) // 2, y, new_w, h)
        new_h = w * main_h // main_w
        return (x, y + (h - new_h) // 2, w, new_h)

    # -- autofocus -------------------------------------------------------------------------
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
