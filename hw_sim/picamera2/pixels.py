"""Pixels and files: the buffers the ISP writes (row padding, plane layout), picamera2's view
of them as arrays, and its JPEG/EXIF and PIL saving."""

from __future__ import annotations

import io
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import piexif
import simplejpeg
from PIL import Image

from .configuration import BYTES_PER_PIXEL, YUV_FORMATS
from .libcamera_types import ColorSpace

NS_PER_S = 1_000_000_000
PIL_MODES = {"RGB888": "BGR", "BGR888": "RGB", "XBGR8888": "RGBX", "XRGB8888": "BGRX"}
SIMPLEJPEG_COLOURSPACES = {"XBGR8888": "RGBX", "XRGB8888": "BGRX", "BGR888": "RGB", "RGB888": "BGR"}
Encoding, Range = ColorSpace.YcbcrEncoding, ColorSpace.Range
LUMA_WEIGHTS = {Encoding.Rec601: (0.299, 0.114), Encoding.Rec709: (0.2126, 0.0722),     # Kr, Kb
                Encoding.Rec2020: (0.2627, 0.0593)}


# --------------------------------------------------------------------------------------------
# Buffers
# --------------------------------------------------------------------------------------------

def pack(bgr: np.ndarray, fmt: str, stride: int, colour_space: ColorSpace) -> np.ndarray:
    """The 1-D buffer the ISP would write for this image: rows padded to `stride`; YUV in the
    range and matrix of `colour_space`."""
    if fmt in YUV_FORMATS:
        return pack_yuv420(bgr, stride, colour_space, swap_uv=fmt == "YVU420")
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


def pack_yuv420(bgr: np.ndarray, stride: int, colour_space: ColorSpace,
                swap_uv: bool = False) -> np.ndarray:
    """Planar 4:2:0: Y at `stride`, then U and V at stride/2 (chroma averaged over 2x2)."""
    height, width = bgr.shape[:2]
    ycrcb = to_ycrcb(bgr, colour_space)
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


def to_ycrcb(bgr: np.ndarray, colour_space: ColorSpace) -> np.ndarray:
    """(h, w, 3) Y, Cr, Cb in the YCbCr encoding and range of `colour_space`. Full-range
    BT.601 (sYCC, what JPEG holds) is OpenCV's own conversion; the others one matrix multiply
    with offsets (cv2.transform, rounded and saturated to uint8)."""
    if (colour_space.ycbcrEncoding, colour_space.range) == (Encoding.Rec601, Range.Full):
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)
    return cv2.transform(bgr, ycrcb_matrix(colour_space.ycbcrEncoding, colour_space.range))


@lru_cache(maxsize=16)
def ycrcb_matrix(encoding: ColorSpace.YcbcrEncoding, range_: ColorSpace.Range) -> np.ndarray:
    """3x4 matrix from [B, G, R, 1] to [Y, Cr, Cb] (the standard formulas: Y' = Kr R + Kg G +
    Kb B; Cb, Cr = (B - Y') / (2 (1 - Kb)), (R - Y') / (2 (1 - Kr)); limited range puts Y' in
    16-235 and Cb, Cr in 16-240 around 128)."""
    if encoding not in LUMA_WEIGHTS:
        raise RuntimeError(f"hw_sim cannot render YUV without a YCbCr encoding ({encoding})")
    kr, kb = LUMA_WEIGHTS[encoding]
    luma = np.array([kb, 1 - kr - kb, kr])                     # B, G, R
    y_scale, c_scale, y_offset = (219 / 255, 224 / 255, 16) if range_ == Range.Limited else (1, 1, 0)
    cr = (np.array([0, 0, 1]) - luma) / (2 * (1 - kr))
    cb = (np.array([1, 0, 0]) - luma) / (2 * (1 - kb))
    return np.array([[*(y_scale * luma), y_offset],
                     [*(c_scale * cr), 128],
                     [*(c_scale * cb), 128]], np.float32)


def shape_buffer(buffer: np.ndarray, config: dict) -> np.ndarray:
    """picamera2's _make_array_shared: the buffer as an image-shaped view, padding cut off."""
    fmt = config["format"]
    width, height = config["size"]
    stride = config["stride"]
    if fmt in YUV_FORMATS:
        return buffer.reshape((height * 3 // 2, stride))
    channels = BYTES_PER_PIXEL[fmt]
    return buffer.reshape((height, stride))[:, :width * channels].reshape((height, width, channels))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

def pil_mode(fmt: str) -> str:
    mode = PIL_MODES.get(fmt)
    if mode is None:
        raise RuntimeError(f"Stream format {fmt} not supported for PIL images")
    return mode


def format_str(file_output, format) -> str:
    """picamera2's _get_format_str, quirks included (a Path gives '.jpg', with the dot)."""
    if isinstance(format, str):
        return format.lower()
    if isinstance(file_output, str):
        return file_output.split(".")[-1].lower()
    if isinstance(file_output, Path):
        return file_output.suffix.lower()
    raise RuntimeError("Cannot determine format to save")


def encode_jpeg(array: np.ndarray, config: dict, quality: int) -> bytes:
    fmt = config["format"]
    if fmt == "YUV420":
        width, height = config["size"]
        y = array[:height, :width]
        reshaped = array.reshape((array.shape[0] * 2, array.strides[0] // 2))
        u = reshaped[2 * height: 2 * height + height // 2, :width // 2]
        v = reshaped[2 * height + height // 2:, :width // 2]
        return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality)
    return simplejpeg.encode_jpeg(np.ascontiguousarray(array), quality, SIMPLEJPEG_COLOURSPACES[fmt], "420")


def exif_bytes(metadata: dict, exif_data: Optional[dict], wall_ns: int, camera_id: str) -> bytes:
    """picamera2's EXIF, dated by `wall_ns` (the rig clock's 'now')."""
    if "AnalogueGain" not in metadata or "DigitalGain" not in metadata:
        return b""
    now = datetime.fromtimestamp(wall_ns / NS_PER_S).strftime("%Y:%m:%d %H:%M:%S")
    zero_ifd = {piexif.ImageIFD.Make: "Raspberry Pi",
                piexif.ImageIFD.Model: camera_id,
                piexif.ImageIFD.Software: "Picamera2",
                piexif.ImageIFD.DateTime: now}
    total_gain = metadata["AnalogueGain"] * metadata["DigitalGain"]
    exif_ifd = {piexif.ExifIFD.DateTimeOriginal: now,
                piexif.ExifIFD.ExposureTime: (metadata["ExposureTime"], 1000000),
                piexif.ExifIFD.ISOSpeedRatings: int(total_gain * 100)}
    return piexif.dump({"0th": zero_ifd, "Exif": exif_ifd} | (exif_data or {}))


def write_jpeg(file_output, jpeg: bytes, exif: bytes) -> None:
    """Write the JPEG with the EXIF APP1 segment spliced in after SOI."""
    if exif:
        jpeg = jpeg[:2] + bytes.fromhex("ffe1") + (len(exif) + 2).to_bytes(2, "big") + exif + jpeg[2:]
    if isinstance(file_output, io.BytesIO):
        file_output.write(jpeg)
    else:
        with open(file_output, "wb") as f:
            f.write(jpeg)


def save_with_pil(image: Image.Image, file_output, format, options: dict) -> None:
    """picamera2's Helpers.save for non-JPEG formats (and for Path outputs: no EXIF)."""
    if format_str(file_output, format) == "png" and image.mode == "RGBX":
        image = image.convert(mode="RGBA")
    image.save(file_output, compress_level=options.get("compress_level", 1),
               quality=options.get("quality", 90), format=format)
