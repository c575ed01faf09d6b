"""The EXIF segment writer: our own TIFF writer for piexif's dict layout, in place of
piexif.dump (why: below)."""

from __future__ import annotations

import numbers
import struct

import piexif

EXIF_HEADER = b"Exif\x00\x00"

# Our own TIFF writer for piexif's dict layout ({"0th": {tag: value}, "Exif": ...,
# "GPS": ..., "Interop": ...}; values as piexif.load returns them), replacing
# piexif.dump. piexif 1.1.3 (unmaintained since 2019) lays the segment out wrongly:
# its Exif and GPS IFDs have no 4-byte next-IFD link, so the first value stored
# after them is read as that link ("Value for ExifIFD tag 0x829a ExposureTime
# overlaps IFD" in `exiftool -validate`), and values start at odd offsets. Rather
# than patch its output, or take a new dependency (no maintained pure-Python
# library writes EXIF from scratch without also re-encoding the image), this
# writes what TIFF 6.0 / EXIF 2.32 ask, and no more: entries in ascending tag
# order, every IFD ending in its next-IFD offset (0: no thumbnail IFD), each
# IFD and each value longer than four bytes on a word (even) boundary, values
# after the IFD that points at them, so nothing overlaps. Tag types come from
# piexif's table (piexif.TAGS), and values are taken as piexif.dump took them
# (a number or a tuple; ASCII as bytes, or str as Latin-1; a NUL is added),
# so piexif.load reads back exactly what was written.
_TIFF_HEADER = b"MM\x00\x2a\x00\x00\x00\x08"  # big-endian, first IFD right after
_TIFF_FORMATS = {1: "B", 3: "H", 4: "L", 5: "L", 6: "b", 8: "h", 9: "l", 10: "l", 11: "f",
                 12: "d"}  # TIFF type -> struct code (2 ASCII, 7 UNDEFINED: bytes)
_RATIONAL_TYPES = (5, 10)
_TIFF_LONG = 4
# Sub-IFD -> (the IFD that points at it, the pointer tag), in the order written.
_SUB_IFDS = {"Exif": ("0th", piexif.ImageIFD.ExifTag),
             "GPS": ("0th", piexif.ImageIFD.GPSTag),
             "Interop": ("Exif", piexif.ExifIFD.InteroperabilityTag)}
_POINTER_TAGS = set(_SUB_IFDS.values())  # written by dump_exif, never taken from `ifds`


def dump_exif(ifds: dict) -> bytes:
    """The EXIF APP1 payload (b"Exif\\0\\0" + TIFF) for piexif-style `ifds`.
    Raises ValueError, TypeError or struct.error for a value its tag's EXIF
    type cannot hold, KeyError for a tag piexif does not know. A thumbnail
    ("1st", "thumbnail") is not supported: our images carry none."""
    if ifds.get("1st") or ifds.get("thumbnail"):
        raise ValueError("dump_exif writes no thumbnail (1st) IFD")
    entries = {name: [_tiff_entry(name, tag, value)
                      for tag, value in sorted(ifds.get(name, {}).items())
                      if (name, tag) not in _POINTER_TAGS]
               for name in ("0th", "Exif", "GPS", "Interop")}
    # An Exif IFD is written if it has tags or must point at an Interop IFD.
    present = ["0th"] + [name for name in _SUB_IFDS
                         if entries[name] or (name == "Exif" and entries["Interop"])]
    for name in present[1:]:  # placeholder pointers, filled in once offsets are known
        parent, tag = _SUB_IFDS[name]
        entries[parent].append((tag, _TIFF_LONG, 1, bytes(4)))
        entries[parent].sort(key=lambda entry: entry[0])
    offsets, position = {}, len(_TIFF_HEADER)
    for name in present:
        offsets[name] = position
        position += _ifd_size(entries[name])
    for name in present[1:]:
        parent, tag = _SUB_IFDS[name]
        entries[parent] = [(t, kind, count, struct.pack(">L", offsets[name]) if t == tag else data)
                           for t, kind, count, data in entries[parent]]
    tiff = bytearray(_TIFF_HEADER)
    for name in present:
        tiff += _ifd_bytes(entries[name], offsets[name])
    return EXIF_HEADER + bytes(tiff)


def _tiff_entry(ifd: str, tag: int, value) -> tuple[int, int, int, bytes]:
    """(tag, type, count, value bytes) of one IFD entry."""
    kind = piexif.TAGS[ifd][tag]["type"]
    if kind == 2:  # ASCII
        if isinstance(value, str):
            value = value.encode("latin-1")
        if not isinstance(value, bytes):
            raise ValueError(f"EXIF tag {tag:#06x} takes text, not {type(value).__name__}")
        data = value + b"\x00"
        return tag, kind, len(data), data
    if kind == 7:  # UNDEFINED
        if not isinstance(value, bytes):
            raise ValueError(f"EXIF tag {tag:#06x} takes bytes, not {type(value).__name__}")
        return tag, kind, len(value), value
    if kind not in _TIFF_FORMATS:
        raise ValueError(f"EXIF tag {tag:#06x}: type {kind} is not written")
    if isinstance(value, (numbers.Integral, float)):
        value = (value,)
    values = tuple(value)
    if kind in _RATIONAL_TYPES:
        pairs = (values,) if values and isinstance(values[0], numbers.Integral) else values
        if not pairs or any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"EXIF tag {tag:#06x} takes (numerator, denominator) pairs")
        values = tuple(number for pair in pairs for number in pair)
        count = len(pairs)
    else:
        count = len(values)
    if not count:
        raise ValueError(f"EXIF tag {tag:#06x}: no value")
    return tag, kind, count, struct.pack(">" + _TIFF_FORMATS[kind] * len(values), *values)


def _ifd_size(entries: list) -> int:
    """Bytes of an IFD and the values stored after it (each padded to even)."""
    return 2 + 12 * len(entries) + 4 + sum(len(data) + len(data) % 2
                                           for _, _, _, data in entries if len(data) > 4)


def _ifd_bytes(entries: list, offset: int) -> bytes:
    """An IFD at `offset` (from the TIFF header): its count, entries and
    next-IFD link (0), then the values too long for an entry, word-aligned."""
    table = bytearray(struct.pack(">H", len(entries)))
    values = bytearray()
    value_offset = offset + 2 + 12 * len(entries) + 4
    for tag, kind, count, data in entries:
        table += struct.pack(">HHL", tag, kind, count)
        if len(data) <= 4:
            table += data.ljust(4, b"\x00")
        else:
            table += struct.pack(">L", value_offset + len(values))
            values += data + b"\x00" * (len(data) % 2)
    table += bytes(4)  # no next IFD
    return bytes(table + values)
