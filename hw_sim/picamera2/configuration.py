"""Configurations: picamera2's configuration dicts (creation, alignment, checking), what
configure() fills in (strides, frame sizes, the raw stream, the colour space granted) and the
libcamera configuration it keeps (``Picamera2.libcamera_config``)."""

from __future__ import annotations

from typing import Optional

from .libcamera_types import (
    CameraConfiguration, ColorSpace, SensorConfiguration, StreamConfiguration, Transform,
    granted_colour_space, rgb_version)

STRIDE_ALIGN = 64                # bytes; configure() rounds every image row up to this
RAW_STRIDE_ALIGN = 32

YUV_FORMATS = ("YUV420", "YVU420")
RGB_FORMATS = ("RGB888", "BGR888", "XBGR8888", "XRGB8888")
BYTES_PER_PIXEL = {"YUV420": 1, "YVU420": 1, "RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4}
# What picamera2 itself accepts (formats.is_YUV / is_RGB); only *_FORMATS above are rendered.
PICAMERA2_YUV_FORMATS = ("NV12", "NV21", "YUV420", "YVU420", "YUYV", "YVYU", "UYVY", "VYUY")
PICAMERA2_RGB_FORMATS = RGB_FORMATS + ("RGB161616", "BGR161616")
VALID_STREAM_KEYS = ("format", "size", "stride", "preserve_ar")
RAW_STREAM_IGNORED_KEYS = ("bit_depth", "crop_limits", "exposure_limits", "fps", "unpacked")

# picamera2's defaults per use case: the main stream, and the controls it adds.
PREVIEW_MAIN = {"format": "XBGR8888", "size": (640, 480), "preserve_ar": True}
PREVIEW_CONTROLS = {"NoiseReductionMode": 3, "FrameDurationLimits": (100, 83333)}
STILL_CONTROLS = {"NoiseReductionMode": 2, "FrameDurationLimits": (100, 1000000 * 1000)}
VIDEO_MAIN = {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}
VIDEO_CONTROLS = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)}


# --------------------------------------------------------------------------------------------
# Creating configurations (picamera2's create_*_configuration)
# --------------------------------------------------------------------------------------------

def initial_stream(defaults: dict, updates: Optional[dict], ignore=()) -> Optional[dict]:
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


def make_configuration(use_case, main_defaults, main, lores, raw, transform, colour_space,
                       buffer_count, controls, display, encode, queue, sensor, default_controls,
                       sensor_format, advertised) -> dict:
    """The dict a create_*_configuration returns. Like picamera2, the use case's default
    controls are added only on a camera advertising NoiseReductionMode and
    FrameDurationLimits."""
    main = initial_stream(main_defaults, main)
    align_stream(main, optimal=False)
    lores = initial_stream({"format": "YUV420", "size": main["size"], "preserve_ar": False}, lores)
    if lores is not None:
        align_stream(lores, optimal=False)
    raw = initial_stream({"format": sensor_format, "size": main["size"]}, raw, RAW_STREAM_IGNORED_KEYS)
    if colour_space is None:
        small = main["size"][0] < 1280 or main["size"][1] < 720
        colour_space = ColorSpace.Smpte170m() if small else ColorSpace.Rec709()
    config = {"use_case": use_case, "transform": transform, "colour_space": colour_space,
              "buffer_count": buffer_count, "queue": queue, "main": main, "lores": lores,
              "raw": raw, "controls": dict(controls), "sensor": sensor}
    if "NoiseReductionMode" in advertised and "FrameDurationLimits" in advertised:
        config["controls"] = default_controls | controls
    for name, stream in (("Display", display), ("Encode", encode)):
        if stream is not None and config.get(stream) is None:
            raise RuntimeError(f"{name} stream {stream} was not defined")
    config["display"] = display
    config["encode"] = encode
    return config


def align_stream(stream_config, optimal=True) -> None:
    """picamera2's align_stream on VC4 (Pi 4)."""
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


# --------------------------------------------------------------------------------------------
# Checking configurations (configure() refuses what picamera2 refuses)
# --------------------------------------------------------------------------------------------

def check_stream_config(stream_config, name) -> None:
    if type(stream_config) is not dict:
        raise RuntimeError(name + " stream should be a dictionary")
    for key in ("format", "size"):
        if key not in stream_config:
            raise RuntimeError(f"{key} not found in {name} stream")
    fmt = stream_config["format"]
    if type(fmt) is not str:
        raise RuntimeError("format in " + name + " stream should be a string")
    if name == "raw":
        if not is_raw(fmt):
            raise RuntimeError("Unrecognised raw format " + fmt)
    elif fmt not in PICAMERA2_YUV_FORMATS + PICAMERA2_RGB_FORMATS + ("MJPEG",):
        raise RuntimeError("Bad format " + fmt + " in stream " + name)
    size = stream_config["size"]
    if type(size) is not tuple or len(size) != 2:
        raise RuntimeError("size in " + name + " stream should be (width, height)")
    if size[0] % 2 or size[1] % 2:
        raise RuntimeError("width and height should be even")


def check_camera_config(camera_config, check_stream=check_stream_config) -> None:
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
    check_stream(camera_config["main"], "main")
    lores = camera_config["lores"]
    if lores is not None:
        check_stream(lores, "lores")
        main_w, main_h = camera_config["main"]["size"]
        if lores["size"][0] > main_w or lores["size"][1] > main_h:
            raise RuntimeError("lores stream dimensions may not exceed main stream")
        if lores["format"] not in PICAMERA2_YUV_FORMATS:
            raise RuntimeError("lores stream must be YUV")
    if camera_config["raw"] is not None:
        check_stream(camera_config["raw"], "raw")


def check_display_and_encode(config: dict) -> None:
    for name in ("display", "encode"):
        stream = config[name]
        if stream is not None and stream not in config:
            raise RuntimeError(f"{name.capitalize()} stream {stream} was not defined")


def require_simulated_formats(config: dict) -> None:
    for name in ("main", "lores"):
        stream = config[name]
        if stream is not None and stream["format"] not in BYTES_PER_PIXEL:
            raise RuntimeError(f"hw_sim does not simulate the {stream['format']} format ({name})")


def is_raw(fmt: str) -> bool:
    bayer = fmt.split("_")[0]
    return bayer[:5] in ("SRGGB", "SGRBG", "SGBRG", "SBGGR") or bayer in ("R8", "R10", "R12", "R16") \
        or "PISP_COMP" in fmt


# --------------------------------------------------------------------------------------------
# What configure() fills in
# --------------------------------------------------------------------------------------------

def sensor_output_size(config: dict) -> tuple[int, int]:
    """The size picamera2 scores sensor modes against."""
    sensor = config.get("sensor") or {}
    if sensor.get("output_size"):
        return tuple(sensor["output_size"])
    if config["raw"] is not None and config["raw"].get("size"):
        return tuple(config["raw"]["size"])
    return tuple(config["main"]["size"])


def add_strides(stream: dict) -> None:
    width, height = stream["size"]
    stride = align_up(width * BYTES_PER_PIXEL[stream["format"]], STRIDE_ALIGN)
    stream["stride"] = stride
    stream["framesize"] = stride * height * 3 // 2 if stream["format"] in YUV_FORMATS else stride * height


def configure_raw_stream(raw: dict, bayer_format: str, bit_depth: int, mode_size) -> None:
    width, height = mode_size
    stride = align_up(width * bit_depth // 8, RAW_STRIDE_ALIGN)
    raw.update(format=bayer_format, size=mode_size, stride=stride, framesize=stride * height)


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def grant_colour_space(config: dict) -> None:
    """configure(): the colour space the Pi grants replaces the one asked (picamera2 reads it
    back from libcamera's main stream)."""
    config["colour_space"] = granted_colour_space(config["colour_space"])


def libcamera_configuration(config: dict, granted_buffers: int) -> CameraConfiguration:
    """What libcamera granted for a configured `config`: main, lores, raw in picamera2's order,
    each with `granted_buffers` buffers and its stream's colour space."""
    colour_space = config["colour_space"]
    streams = []
    for name in ("main", "lores", "raw"):
        stream = config[name]
        if stream is None:
            continue
        if name == "raw":
            stream_colour_space = ColorSpace.Raw()
        elif stream["format"] in PICAMERA2_RGB_FORMATS:
            stream_colour_space = rgb_version(colour_space)
        else:
            stream_colour_space = ColorSpace(colour_space)
        streams.append(StreamConfiguration(stream, granted_buffers, stream_colour_space))
    sensor = config["sensor"]
    return CameraConfiguration(streams, SensorConfiguration(sensor["bit_depth"], sensor["output_size"]))
