"""Stand-ins for the libcamera Python types picamera2 hands out: Transform and ColorSpace
(in configurations), and the granted configuration picamera2 keeps as
``Picamera2.libcamera_config`` (CameraConfiguration, StreamConfiguration, Size, PixelFormat).

Colour spaces are granted as libcamera's Raspberry Pi pipeline handler grants them
(RPiCameraConfiguration::validateColorSpaces): every non-raw stream shares one of sYCC,
SMPTE170M or Rec709, the first whose primaries and transfer function match what was asked
(sYCC when none does); YUV streams get it whole, RGB streams without a YCbCr encoding and
at full range, raw streams get RAW.
"""

from __future__ import annotations

import enum


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
    """libcamera.ColorSpace: primaries, transfer function, YCbCr encoding and range. str()
    gives libcamera's name ("sYCC", "SMPTE170M", "Rec709" ...) as under picamera2; repr() the
    constructor as picamera2's source writes it ("libcamera.ColorSpace.Sycc()"), so that
    signatures compare with picamera2's."""

    class Primaries(enum.Enum):
        Raw = 0
        Smpte170m = 1
        Rec709 = 2
        Rec2020 = 3

    class TransferFunction(enum.Enum):
        Linear = 0
        Srgb = 1
        Rec709 = 2

    class YcbcrEncoding(enum.Enum):
        Null = 0            # libcamera's YcbcrEncoding::None
        Rec601 = 1
        Rec709 = 2
        Rec2020 = 3

    class Range(enum.Enum):
        Full = 0
        Limited = 1

    def __init__(self, primaries, transferFunction=None, ycbcrEncoding=None, range=None):
        if isinstance(primaries, ColorSpace):       # libcamera's copy constructor
            primaries, transferFunction, ycbcrEncoding, range = primaries._fields
        self.primaries = primaries
        self.transferFunction = transferFunction
        self.ycbcrEncoding = ycbcrEncoding
        self.range = range

    @staticmethod
    def Raw():
        return ColorSpace(*_PRESETS["RAW"][1])

    @staticmethod
    def Srgb():
        return ColorSpace(*_PRESETS["sRGB"][1])

    @staticmethod
    def Sycc():
        return ColorSpace(*_PRESETS["sYCC"][1])

    @staticmethod
    def Smpte170m():
        return ColorSpace(*_PRESETS["SMPTE170M"][1])

    @staticmethod
    def Rec709():
        return ColorSpace(*_PRESETS["Rec709"][1])

    @staticmethod
    def Rec2020():
        return ColorSpace(*_PRESETS["Rec2020"][1])

    @property
    def _fields(self) -> tuple:
        return (self.primaries, self.transferFunction, self.ycbcrEncoding, self.range)

    def __eq__(self, other):
        return isinstance(other, ColorSpace) and self._fields == other._fields

    def __hash__(self):
        return hash(self._fields)

    def __str__(self):
        for name, (_, fields) in _PRESETS.items():
            if fields == self._fields:
                return name
        return "/".join(_FIELD_NAMES.get(f, f.name) for f in self._fields)

    def __repr__(self):
        for method, fields in _PRESETS.values():
            if fields == self._fields:
                return f"libcamera.ColorSpace.{method}()"
        return f"libcamera.ColorSpace({', '.join(str(f) for f in self._fields)})"


P, T, E, R = ColorSpace.Primaries, ColorSpace.TransferFunction, ColorSpace.YcbcrEncoding, ColorSpace.Range
_PRESETS = {     # libcamera's name: (the static method, the fields)
    "RAW": ("Raw", (P.Raw, T.Linear, E.Null, R.Full)),
    "sRGB": ("Srgb", (P.Rec709, T.Srgb, E.Null, R.Full)),
    "sYCC": ("Sycc", (P.Rec709, T.Srgb, E.Rec601, R.Full)),
    "SMPTE170M": ("Smpte170m", (P.Smpte170m, T.Rec709, E.Rec601, R.Limited)),
    "Rec709": ("Rec709", (P.Rec709, T.Rec709, E.Rec709, R.Limited)),
    "Rec2020": ("Rec2020", (P.Rec2020, T.Rec709, E.Rec2020, R.Limited)),
}
_FIELD_NAMES = {P.Raw: "RAW", P.Smpte170m: "SMPTE170M", T.Srgb: "sRGB", E.Null: "None"}
# What the Pi's ISP outputs (libcamera's Raspberry Pi pipeline handler: validColorSpaces).
PI_COLOUR_SPACES = ("sYCC", "SMPTE170M", "Rec709")
del P, T, E, R


def granted_colour_space(asked: ColorSpace) -> ColorSpace:
    """The colour space a Pi gives YUV streams for `asked`: the first of sYCC, SMPTE170M and
    Rec709 with the same primaries and transfer function, else sYCC."""
    for name in PI_COLOUR_SPACES:
        valid = ColorSpace(*_PRESETS[name][1])
        if (valid.primaries, valid.transferFunction) == (asked.primaries, asked.transferFunction):
            return valid
    return ColorSpace.Sycc()


def rgb_version(colour_space: ColorSpace) -> ColorSpace:
    """What an RGB stream gets: no YCbCr encoding, full range."""
    rgb = ColorSpace(colour_space)
    rgb.ycbcrEncoding = ColorSpace.YcbcrEncoding.Null
    rgb.range = ColorSpace.Range.Full
    return rgb


# --------------------------------------------------------------------------------------------
# The granted configuration (Picamera2.libcamera_config)
# --------------------------------------------------------------------------------------------

class Size:
    """libcamera.Size."""

    def __init__(self, width: int, height: int):
        self.width = width
        self.height = height

    def to_tuple(self) -> tuple[int, int]:      # added by picamera2
        return (self.width, self.height)

    def __eq__(self, other):
        return isinstance(other, Size) and self.to_tuple() == other.to_tuple()

    def __hash__(self):
        return hash(self.to_tuple())

    def __str__(self):
        return f"{self.width}x{self.height}"

    __repr__ = __str__


class PixelFormat:
    """libcamera.PixelFormat: str() gives the name picamera2 uses ("YUV420", "SBGGR12_CSI2P")."""

    def __init__(self, name: str):
        self._name = name

    def __eq__(self, other):
        return isinstance(other, PixelFormat) and self._name == other._name

    def __hash__(self):
        return hash(self._name)

    def __str__(self):
        return self._name

    __repr__ = __str__


class StreamConfiguration:
    """libcamera.StreamConfiguration as configured: what libcamera granted for one stream."""

    def __init__(self, stream: dict, buffer_count: int, color_space: ColorSpace):
        self.size = Size(*stream["size"])
        self.pixel_format = PixelFormat(stream["format"])
        self.stride = stream["stride"]
        self.frame_size = stream["framesize"]
        self.buffer_count = buffer_count
        self.color_space = color_space

    def __str__(self):
        return f"{self.size}-{self.pixel_format}/{self.color_space}"

    __repr__ = __str__


class SensorConfiguration:
    """libcamera.SensorConfiguration: the sensor mode picked."""

    def __init__(self, bit_depth: int, output_size: tuple[int, int]):
        self.bit_depth = bit_depth
        self.output_size = Size(*output_size)


class CameraConfiguration:
    """libcamera.CameraConfiguration: main first, then lores, then raw (picamera2's order)."""

    def __init__(self, streams: list[StreamConfiguration], sensor_config: SensorConfiguration):
        self._streams = list(streams)
        self.sensor_config = sensor_config

    def at(self, index: int) -> StreamConfiguration:
        return self._streams[index]

    @property
    def size(self) -> int:
        return len(self._streams)

    @property
    def empty(self) -> bool:
        return not self._streams

    def __iter__(self):
        return iter(self._streams)

    def __len__(self):
        return len(self._streams)

    def __repr__(self):
        return f"<libcamera.CameraConfiguration {self._streams}>"
