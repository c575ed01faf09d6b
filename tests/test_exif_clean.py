"""Issue 15 point 5: standard-clean EXIF. `exiftool -validate -warning -a` finds
nothing to warn about in the photos of a sim run nor in exported copies, and two
readers independent of exiftool and of each other (Pillow, exifread) read the
same capture time, sub-second, offset, GPS position and altitude and camera
serial number as exiftool. piexif.dump, which wrote our EXIF before, gave
"Value for ExifIFD tag 0x829a ExposureTime overlaps IFD" and the like."""

import subprocess

import exifread
import piexif
import pytest
import yaml
from PIL import ExifTags, Image

from conftest import exiftool_tags, require_tool, shipped_config_dict, trapd
from trapd.config import merge_settings
from trapd.daemon import read_serial_number
from trapd.exif_writer import dump_exif
from trapd.metadata import build_exif

from test_metadata import CAPTURE, STATION


def validation_warnings(paths):
    """exiftool -validate -warning -a: {path: [warning lines]} and the files it found OK."""
    exiftool = require_tool("exiftool")
    out = subprocess.run([exiftool, "-validate", "-warning", "-a", "-s", *map(str, paths)],
                         capture_output=True, text=True, check=True).stdout
    warnings, ok, current = {}, set(), str(paths[0]) if len(paths) == 1 else None
    for line in out.splitlines():
        if line.startswith("======== "):
            current = line[len("======== "):]
        elif line.startswith("Warning"):
            warnings.setdefault(current, []).append(line)
        elif line.split(":")[0].strip() == "Validate" and line.split(":", 1)[1].strip() == "OK":
            ok.add(current)
    return warnings, ok


def photos_of(storage):
    photos = sorted((storage / "images").rglob("*.jpg"))
    assert photos
    return photos


@pytest.fixture(scope="module")
def sim(sim_queue):
    return sim_queue("default")


@pytest.fixture(scope="module")
def exported(sim, tmp_path_factory):
    """The default sim exported twice: as configured (exact) and with `publish: rounded`."""
    root = tmp_path_factory.mktemp("exif-clean")
    packages = {"exact": root / "exact"}
    trapd("export", "--camtrap-dp", packages["exact"], "--storage", sim["storage"],
          "--config", sim["config"])
    rounded = root / "rounded.yaml"
    rounded.write_text(yaml.safe_dump(merge_settings(
        shipped_config_dict(), {"station": {"location": {"publish": "rounded"}}})))
    packages["rounded"] = root / "rounded"
    trapd("export", "--camtrap-dp", packages["rounded"], "--storage", sim["storage"],
          "--config", rounded)
    return packages


def test_sim_photos_give_exiftool_no_warnings(sim):
    photos = photos_of(sim["storage"])
    warnings, ok = validation_warnings(photos)
    assert warnings == {}
    assert ok == {str(p) for p in photos}


@pytest.mark.parametrize("publish", ["exact", "rounded"])
def test_exported_copies_give_exiftool_no_warnings(exported, publish):
    copies = sorted((exported[publish] / "media").glob("*.jpg"))
    assert copies
    warnings, ok = validation_warnings(copies)
    assert warnings == {}
    assert ok == {str(p) for p in copies}


def test_a_bare_dump_of_every_tag_we_write_validates(tmp_path):
    """Our writer alone, on a JPEG with nothing else: no overlap, no odd offsets."""
    exif = build_exif(STATION, CAPTURE)
    image = tmp_path / "bare.jpg"
    Image.new("RGB", (64, 48)).save(tmp_path / "plain.jpg", "JPEG")
    piexif.insert(exif, str(tmp_path / "plain.jpg"), str(image))
    warnings, ok = validation_warnings([image])
    assert warnings == {} and ok == {str(image)}


def test_piexif_reads_back_exactly_what_was_written():
    exif = build_exif(STATION, CAPTURE)
    assert dump_exif(piexif.load(exif)) == exif


def _pillow(path):
    with Image.open(path) as image:
        exif = image.getexif()
        main, gps = exif.get_ifd(ExifTags.IFD.Exif), exif.get_ifd(ExifTags.IFD.GPSInfo)
    sign = {"N": 1, "E": 1, "S": -1, "W": -1}
    latitude = sign[gps[ExifTags.GPS.GPSLatitudeRef]] * _degrees(gps[ExifTags.GPS.GPSLatitude])
    longitude = sign[gps[ExifTags.GPS.GPSLongitudeRef]] * _degrees(gps[ExifTags.GPS.GPSLongitude])
    altitude = float(gps[ExifTags.GPS.GPSAltitude])
    if gps.get(ExifTags.GPS.GPSAltitudeRef) == b"\x01":
        altitude = -altitude
    return {"DateTimeOriginal": main[ExifTags.Base.DateTimeOriginal],
            "SubSecTimeOriginal": main[ExifTags.Base.SubsecTimeOriginal],
            "OffsetTimeOriginal": main[ExifTags.Base.OffsetTimeOriginal],
            "SerialNumber": main[ExifTags.Base.BodySerialNumber],
            "GPS": (round(latitude, 7), round(longitude, 7), round(altitude, 3))}


def _exifread(path):
    with open(path, "rb") as f:
        tags = exifread.process_file(f, details=False)
    sign = {"N": 1, "E": 1, "S": -1, "W": -1}
    latitude = sign[str(tags["GPS GPSLatitudeRef"])] * _degrees(tags["GPS GPSLatitude"].values)
    longitude = sign[str(tags["GPS GPSLongitudeRef"])] * _degrees(tags["GPS GPSLongitude"].values)
    altitude = float(tags["GPS GPSAltitude"].values[0])
    if tags["GPS GPSAltitudeRef"].values[0] == 1:
        altitude = -altitude
    return {"DateTimeOriginal": str(tags["EXIF DateTimeOriginal"]),
            "SubSecTimeOriginal": str(tags["EXIF SubSecTimeOriginal"]),
            "OffsetTimeOriginal": str(tags["EXIF OffsetTimeOriginal"]),
            "SerialNumber": str(tags["EXIF BodySerialNumber"]),
            "GPS": (round(latitude, 7), round(longitude, 7), round(altitude, 3))}


def _exiftool(path):
    tags = exiftool_tags(path)
    return {"DateTimeOriginal": tags["ExifIFD:DateTimeOriginal"],
            # JSON shows "250" as a number (but "006" as text): back to the text
            "SubSecTimeOriginal": str(tags["ExifIFD:SubSecTimeOriginal"]),
            "OffsetTimeOriginal": tags["ExifIFD:OffsetTimeOriginal"],
            "SerialNumber": str(tags["ExifIFD:SerialNumber"]),
            "GPS": (round(tags["Composite:GPSLatitude"], 7),
                    round(tags["Composite:GPSLongitude"], 7),
                    round(tags["Composite:GPSAltitude"], 3))}


def _degrees(dms):
    d, m, s = (float(v) for v in dms)
    return d + m / 60 + s / 3600


@pytest.mark.parametrize("where", ["card", "export"])
def test_pillow_and_exifread_read_what_exiftool_reads(sim, exported, where):
    photos = photos_of(sim["storage"]) if where == "card" \
        else sorted((exported["exact"] / "media").glob("*.jpg"))
    for photo in photos[:: max(1, len(photos) // 5)]:
        reference = _exiftool(photo)
        assert reference["GPS"] == (43.1056, 131.4569, 320.0)   # the sim's config.yaml
        assert reference["SerialNumber"] == read_serial_number()
        assert reference["OffsetTimeOriginal"] == "+10:00"
        assert _pillow(photo) == reference, photo.name
        assert _exifread(photo) == reference, photo.name
