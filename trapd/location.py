"""What a station's position looks like once published (images and exports).

`station.location.publish`:
- exact:   the configured coordinates, elevation and uncertainty;
- rounded: coordinates snapped to a 0.1 degree grid (about 11 km), elevation
  withheld (with a cell it can pinpoint a ridge), and the uncertainty widened
  to the radius of the cell plus the GPS error, as Camtrap DP asks
  (coordinateUncertainty "especially relevant when coordinates are rounded");
- omit:    images carry no GPS at all. Camtrap DP requires a latitude and
  longitude per deployment, so exports give a 1 degree cell (about 111 km)
  with an uncertainty that covers it; the station's own coordinates appear
  nowhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EXACT, ROUNDED, OMIT = "exact", "rounded", "omit"
PUBLISH_CHOICES = (EXACT, ROUNDED, OMIT)
ROUNDED_DECIMALS = 1
OMITTED_EXPORT_DECIMALS = 0
METRES_PER_DEGREE_LATITUDE = 111_320


@dataclass(frozen=True)
class PublishedLocation:
    latitude: float | None
    longitude: float | None
    elevation_m: float | None
    uncertainty_m: int | None
    precision_deg: float | None  # Camtrap DP coordinatePrecision; None = as measured


def for_images(latitude: float, longitude: float, elevation_m: float | None,
               uncertainty_m: int, publish: str) -> PublishedLocation:
    """The position written into EXIF GPS; all None with `omit`."""
    if publish == OMIT:
        return PublishedLocation(None, None, None, None, None)
    return for_export(latitude, longitude, elevation_m, uncertainty_m, publish)


def for_export(latitude: float, longitude: float, elevation_m: float | None,
               uncertainty_m: int, publish: str) -> PublishedLocation:
    """The position written into a Camtrap DP package (always a position)."""
    if publish == EXACT:
        return PublishedLocation(latitude, longitude, elevation_m, uncertainty_m, None)
    decimals = ROUNDED_DECIMALS if publish == ROUNDED else OMITTED_EXPORT_DECIMALS
    return _snapped(latitude, longitude, uncertainty_m, decimals)


def _snapped(latitude: float, longitude: float, uncertainty_m: int,
             decimals: int) -> PublishedLocation:
    cell_deg = 10.0 ** -decimals
    lat, lon = round(latitude, decimals), round(longitude, decimals)
    # Farthest the true point can be from the cell's centre: half the cell's diagonal,
    # measured at the cell edge nearest the equator (where a degree of longitude is widest).
    half_lat_m = cell_deg / 2 * METRES_PER_DEGREE_LATITUDE
    widest = math.cos(math.radians(max(0.0, abs(lat) - cell_deg / 2)))
    half_lon_m = cell_deg / 2 * METRES_PER_DEGREE_LATITUDE * widest
    radius_m = math.ceil(math.hypot(half_lat_m, half_lon_m)) + uncertainty_m
    if decimals == 0:
        lat, lon = float(int(lat)), float(int(lon))
    return PublishedLocation(lat, lon, None, radius_m, cell_deg)
