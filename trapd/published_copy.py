"""A photo as it may leave the card: its location no finer than
`station.location.publish` allows now.

Photos keep the GPS written when they were taken; the setting can change
after (a station switched from `exact` to `rounded` once poachers were
about). Every copy that leaves the card (export, offload, fleet sync) goes
through `publishable()`, which re-tags the copy rather than refusing it: the
data still reaches the project, the card's original is never touched.

- exact:   the bytes as they are;
- rounded: the photo's own position (not the current config's, which may be a
  later deployment's) snapped to the 0.1 degree cell, altitude removed, the
  horizontal error widened to cover the cell (trapd/location.py); a photo
  already that coarse is left byte for byte;
- omit:    the GPS IFD removed.
Only the EXIF segment changes (trapd writes no location into XMP); the result
is a different file, so callers verify the copy against the hash of the
bytes they wrote, not against the card's index hash.
"""

from __future__ import annotations

import datetime as dt
import io

import piexif

from trapd.location import EXACT, OMIT, ROUNDED_DECIMALS, for_images
from trapd.exif_writer import dump_exif
from trapd.metadata import StationInfo, gps_ifd

_G = piexif.GPSIFD


class NotPublishable(ValueError):
    """The photo's location cannot be read to be generalised; it must not leave as is."""


def publishable(jpeg: bytes, publish: str) -> bytes:
    """`jpeg` with no more location than `publish` allows (the same object if it holds none)."""
    if publish == EXACT:
        return jpeg
    try:
        exif = piexif.load(jpeg)
    except Exception as exc:  # piexif raises InvalidImageDataError, struct.error, ValueError...
        raise NotPublishable(f"its EXIF cannot be read to generalise the location ({exc}); "
                             f"not copied under publish: {publish}") from exc
    gps = exif.get("GPS") or {}
    allowed = allowed_gps(gps, publish)
    if allowed == gps:
        return jpeg
    exif["GPS"] = allowed
    out = io.BytesIO()
    piexif.insert(dump_exif(exif), jpeg, out)   # clean IFDs (piexif.dump overlaps them)
    return out.getvalue()


def allowed_gps(gps: dict, publish: str) -> dict:
    """The GPS IFD a copy may carry under `publish` (`gps` itself if it is no finer)."""
    if publish == EXACT or not gps:
        return gps
    if publish == OMIT:
        return {}
    latitude, longitude = _degrees(gps, "Latitude"), _degrees(gps, "Longitude")
    if latitude is None or longitude is None:
        return {}   # a position that cannot be read cannot be generalised: drop it
    on_grid = all(abs(v - round(v, ROUNDED_DECIMALS)) < 1e-6 for v in (latitude, longitude))
    if on_grid and _G.GPSAltitude not in gps:
        return gps
    error = gps.get(_G.GPSHPositioningError)
    published = for_images(latitude, longitude, None,
                           round(error[0] / error[1]) if error and error[1] else 0, publish)
    heading = gps.get(_G.GPSImgDirection)
    return gps_ifd(StationInfo(
        station_id="", deployment_id="", latitude=published.latitude,
        longitude=published.longitude, elevation_m=None, uncertainty_m=published.uncertainty_m,
        heading_deg=round(heading[0] / heading[1]) if heading and heading[1] else None,
        owner="", license="", serial_number="", camera_model="", utc_offset=dt.timezone.utc))


def _degrees(gps: dict, axis: str) -> float | None:
    value = gps.get(getattr(_G, f"GPS{axis}"))
    ref = gps.get(getattr(_G, f"GPS{axis}Ref"), b"")
    try:
        degrees = sum(n / d / 60 ** i for i, (n, d) in enumerate(value))
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    ref = ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref)
    return -degrees if ref.upper().startswith(("S", "W")) else degrees
