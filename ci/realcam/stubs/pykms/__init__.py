"""A stand-in for pykms (tomba/kmsxx's Python bindings) in the real-camera lane.

picamera2 always imports its DRM preview, which imports pykms; the lane has no
display, and PyPI's `kms` package is an unrelated project. This stub is just
enough for `import picamera2`: the names exist, and opening a DRM device fails
as it would on a machine without one.
"""

import enum


class PixelFormat(enum.Enum):
    RGB888 = "RG24"
    BGR888 = "BG24"
    YUYV = "YUYV"
    YVYU = "YVYU"
    XRGB8888 = "XR24"
    XBGR8888 = "XB24"
    ARGB8888 = "AR24"
    ABGR8888 = "AB24"
    YUV420 = "YU12"
    YVU420 = "YV12"
    NV12 = "NV12"
    NV21 = "NV21"


class PlaneType(enum.IntEnum):
    Overlay = 1
    Primary = 2
    Cursor = 4


class _NoDisplay:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("pykms stub (trapd real-camera lane): no DRM display")


class Card(_NoDisplay):
    pass


class ResourceManager(_NoDisplay):
    pass


class DumbFramebuffer(_NoDisplay):
    pass


class DmabufFramebuffer(_NoDisplay):
    pass


class AtomicReq(_NoDisplay):
    pass
