"""config.yaml sections `station` (who and where: ids, position, camera mount,
owner) and `project` (what a Camtrap DP export says about the study).
Importable from trapd.config like every section."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trapd.location import EXACT, PUBLISH_CHOICES
from trapd.schema import Rule as _Rule
from trapd.schema import Section as _Section
from trapd.schema import choice as _choice
from trapd.schema import flag as _flag
from trapd.schema import free_text as _free_text
from trapd.schema import integer as _integer
from trapd.schema import is_free_text as _is_free_text
from trapd.schema import number as _number
from trapd.schema import section as _section
from trapd.schema import setting as _setting
from trapd.schema import text as _text

# Free text that goes into every photo's EXIF/XMP (Artist, Copyright,
# CameraOwnerName) must stay far below the 64 KB an EXIF segment can hold,
# or the trap could not tag, and so not save, a single photo.
MAX_NAME_CHARS = 200
# The longest address RFC 5321 lets through.
MAX_EMAIL_CHARS = 254
MAX_CONTRIBUTORS = 50


@dataclass(frozen=True)
class LocationConfig(_Section):
    latitude: float = _setting(_number(-90, 90, "degrees north (WGS84)"))
    longitude: float = _setting(_number(-180, 180, "degrees east (WGS84)"))
    elevation_m: float | None = _setting(_number(-500, 9000, "metres", nullable=True), None)
    uncertainty_m: int = _setting(_integer(1, math.inf, "metres"), 10)
    # How much of the position leaves the trap (images' GPS, exports): see trapd/location.py.
    publish: str = _setting(_choice(PUBLISH_CHOICES), EXACT)


@dataclass(frozen=True)
class CameraMountConfig(_Section):
    height_m: float | None = _setting(_number(0, 20, "metres above ground", nullable=True), None)
    heading_deg: int | None = _setting(_integer(0, 360, "degrees from north", nullable=True), None)
    tilt_deg: int | None = _setting(_integer(-90, 90, "degrees above level", nullable=True), None)


@dataclass(frozen=True)
class StationConfig(_Section):
    station_id: str = _setting(
        _text(
            r"[A-Za-z0-9-]{1,32}",
            "1 to 32 letters A-Z, digits or '-': no spaces, '/', '.' or '_', because it "
            "starts every file name (<station>_<date>_...) and '_' separates the parts",
        )
    )
    deployment_id: str = _setting(
        _text(
            r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}",
            "1 to 64 letters A-Z, digits, '.', '_' or '-', not starting with '.' "
            "(it names a directory)",
        )
    )
    location: LocationConfig = _section(LocationConfig, required=True)
    camera: CameraMountConfig = _section(CameraMountConfig)
    # Person or organisation, for EXIF Artist/Copyright/CameraOwnerName.
    owner: str = _setting(_free_text(MAX_NAME_CHARS, what=" (it goes into every photo)"), "")
    # For EXIF Copyright.
    license: str = _setting(_free_text(MAX_NAME_CHARS, what=" (it goes into every photo)"),
                            "CC-BY-4.0")
    # "auto" = read from the Pi's /proc/cpuinfo at run time.
    serial_number: str = _setting(
        _text(r"[\x20-\x7e]{1,64}", "'auto' or 1 to 64 printable ASCII characters"), "auto"
    )


# Camtrap DP 1.0.2 enumerations (camtrap-dp-profile.json).
SAMPLING_DESIGNS = ("simpleRandom", "systematicRandom", "clusteredRandom", "experimental",
                    "targeted", "opportunistic")
CONTRIBUTOR_ROLES = ("contact", "principalInvestigator", "rightsHolder", "publisher",
                     "contributor")
_CONTRIBUTOR_KEYS = ("title", "role", "email", "organization")
# Data Package licence names, e.g. CC0-1.0 (SPDX identifiers fit).
_LICENSE_NAME = r"[-a-zA-Z0-9._]{1,64}"


@dataclass(frozen=True)
class Contributor:
    title: str
    role: str = "contributor"
    email: str | None = None
    organization: str | None = None


def _is_contributor(entry: Any) -> bool:
    if not isinstance(entry, dict) or not set(entry) <= set(_CONTRIBUTOR_KEYS):
        return False
    title = entry.get("title")
    if not _is_free_text(title, MAX_NAME_CHARS) or not title.strip():
        return False
    if entry.get("role", "contributor") not in CONTRIBUTOR_ROLES:
        return False
    return (entry.get("email") is None or _is_free_text(entry["email"], MAX_EMAIL_CHARS)) and \
        (entry.get("organization") is None or _is_free_text(entry["organization"], MAX_NAME_CHARS))


_CONTRIBUTORS_RULE = _Rule(
    expected=(
        "a list of people or organisations, each '- {title: NAME, role: ROLE}' with optional "
        f"email and organization; ROLE one of {', '.join(CONTRIBUTOR_ROLES)}; texts on one "
        f"line, at most {MAX_NAME_CHARS} characters ({MAX_EMAIL_CHARS} for an email); at most "
        f"{MAX_CONTRIBUTORS} entries"
    ),
    is_valid=lambda v: (isinstance(v, list) and len(v) <= MAX_CONTRIBUTORS
                        and all(_is_contributor(e) for e in v)),
    convert=lambda v: tuple(Contributor(**e) for e in v),
)


@dataclass(frozen=True)
class ProjectConfig(_Section):
    """What a Camtrap DP export says about the study (datapackage.json `project`)."""

    # "" = "Camera trap station <station_id>".
    title: str = _setting(_free_text(MAX_NAME_CHARS), "")
    sampling_design: str = _setting(_choice(SAMPLING_DESIGNS), "opportunistic")
    individual_animals: bool = _setting(_flag(), False)
    # Licence of the exported tables; the images carry station.license.
    data_license: str = _setting(_text(_LICENSE_NAME, "a licence identifier such as CC0-1.0 "
                                       "or CC-BY-4.0 (1 to 64 letters, digits, '.', '_', '-')"), "CC0-1.0")
    # [] = station.owner as rights holder.
    contributors: tuple[Contributor, ...] = _setting(_CONTRIBUTORS_RULE, ())
