"""station.location.publish: with `omit` no image and no export file holds the
station's coordinates; `rounded` publishes a 0.1 degree cell with an
uncertainty that covers it."""

import csv
import json
import subprocess
import sys

import piexif
import pytest

from conftest import camtrap_validator, require_tool, trapd
from trapd.config import DEFAULT_CONFIG_PATH, load_config
from trapd.location import ROUNDED, for_export

SHIPPED = load_config(DEFAULT_CONFIG_PATH).station.location   # 43.1056 N, 131.4569 E
# The coordinates and every finer-than-a-degree rendering of them a file could hold.
GIVEAWAYS = [b"43.1", b"131.4", b"131.5", b"43 deg", b"131 deg"]


def omit_sim(sim_queue):
    return sim_queue("unsynced-clock", {"station": {"location": {"publish": "omit"}}})


def test_with_omit_no_image_has_gps(sim_queue):
    exiftool = require_tool("exiftool")
    images = sorted((omit_sim(sim_queue)["storage"] / "images").rglob("*.jpg"))
    assert images
    out = subprocess.run([exiftool, "-j", "-G1", "-a", "-gps:all", *map(str, images)],
                         capture_output=True, text=True, check=True).stdout
    assert all(set(tags) == {"SourceFile"} for tags in json.loads(out))
    for image in images:
        assert not any(g in image.read_bytes() for g in GIVEAWAYS), image


def test_with_omit_no_export_file_holds_the_coordinates(sim_queue, tmp_path):
    sim = omit_sim(sim_queue)
    package = tmp_path / "package"
    trapd("export", "--camtrap-dp", package, "--storage", sim["storage"],
          "--config", sim["config"])
    files = [p for p in package.rglob("*") if p.is_file()]
    assert len(files) > 4
    for path in files:
        data = path.read_bytes()
        assert not any(g in data for g in GIVEAWAYS), (path, [g for g in GIVEAWAYS if g in data])
    with open(package / "deployments.csv", newline="") as f:
        [deployment] = list(csv.DictReader(f))
    assert (deployment["latitude"], deployment["longitude"]) == ("43.0", "131.0")
    assert int(deployment["coordinateUncertainty"]) > 55_000     # covers the 1 degree cell
    assert "elevation" not in deployment["deploymentTags"]
    subprocess.run([sys.executable, str(camtrap_validator()), str(package), "--strict",
                    "--check-media"], check=True, capture_output=True)


def test_omit_applies_to_images_taken_before_the_setting_changed(sim_queue, tmp_path):
    """Images tagged with exact GPS, exported under `omit`: the package's copies
    lose their GPS; the card's originals keep theirs."""
    exact = sim_queue("default")
    config = tmp_path / "omit.yaml"
    config.write_text(exact["config"].read_text().replace("publish: exact", "publish: omit"))
    trapd("export", "--camtrap-dp", tmp_path / "package", "--storage", exact["storage"],
          "--config", config)
    exported = sorted((tmp_path / "package" / "media").iterdir())
    assert exported and all(not piexif.load(p.read_bytes())["GPS"] for p in exported)
    original = next((exact["storage"] / "images").rglob(exported[0].name))
    assert piexif.load(original.read_bytes())["GPS"]


def test_rounded_publishes_a_cell_and_widens_the_uncertainty(sim_queue, tmp_path):
    sim = sim_queue("unsynced-clock", {"station": {"location": {"publish": "rounded"}}})
    image = next((sim["storage"] / "images").rglob("*.jpg"))
    gps = piexif.load(image.read_bytes())["GPS"]
    degrees = [gps[piexif.GPSIFD.GPSLatitude], gps[piexif.GPSIFD.GPSLongitude]]
    assert [sum(n / d / 60 ** i for i, (n, d) in enumerate(v)) for v in degrees] == \
        [pytest.approx(43.1), pytest.approx(131.5)]
    assert piexif.GPSIFD.GPSAltitude not in gps
    trapd("export", "--camtrap-dp", tmp_path / "package", "--storage", sim["storage"],
          "--config", sim["config"])
    with open(tmp_path / "package" / "deployments.csv", newline="") as f:
        [deployment] = list(csv.DictReader(f))
    expected = for_export(SHIPPED.latitude, SHIPPED.longitude, None, SHIPPED.uncertainty_m, ROUNDED)
    assert (deployment["latitude"], deployment["longitude"]) == ("43.1", "131.5")
    assert int(deployment["coordinateUncertainty"]) == expected.uncertainty_m
    # the true position lies inside the published circle
    assert 5_000 < expected.uncertainty_m < 8_000
    descriptor = json.loads((tmp_path / "package" / "datapackage.json").read_text())
    assert descriptor["coordinatePrecision"] == 0.1
