"""`trapd export --camtrap-dp` on sim queues, checked by the team's offline
Camtrap DP validator (--strict --check-media) and by reading the tables."""

import csv
import json
import re
import sqlite3
import subprocess
import sys

import pytest

from conftest import camtrap_validator, copy_queue, trapd

CAMTRAP_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")


def validate(package):
    result = subprocess.run([sys.executable, str(camtrap_validator()), str(package),
                             "--strict", "--check-media"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def scan(jpeg):
    """A JPEG from its start of scan on: the image, without the metadata segments."""
    pos = 2
    while jpeg[pos + 1] != 0xDA:
        pos += 2 + int.from_bytes(jpeg[pos + 2:pos + 4], "big")
    return jpeg[pos:]


def table(package, name):
    with open(package / f"{name}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def default_export(sim_queue, tmp_path_factory):
    sim = sim_queue("default")
    out = tmp_path_factory.mktemp("export") / "package"
    trapd("export", "--camtrap-dp", out, "--storage", sim["storage"], "--config", sim["config"])
    return sim, out


def test_the_export_of_the_default_sim_passes_the_strict_validator(default_export):
    _, package = default_export
    assert "VALID" in validate(package)


def test_media_are_the_stored_images_in_capture_order_with_whole_second_times(default_export):
    sim, package = default_export
    media = table(package, "media")
    assert len(media) == sim["report"]["summary"]["images_stored"]
    assert all(CAMTRAP_TIME.fullmatch(m["timestamp"]) for m in media)
    assert all(m["timestamp"].endswith("+10:00") for m in media)
    names = [m["fileName"] for m in media]
    assert names == sorted(names, key=lambda n: (n.split("_E")[1]))   # event, then sequence
    first = json.loads(media[0]["exifData"])
    assert first["EXIF"]["Make"] == "trapd" and first["XMP-trap"]["TriggerSource"] == "pir"
    assert first["XMP-trap"]["Sequence"] == "1 of " + str(first["XMP-trap"]["EventLength"])
    db = sqlite3.connect(sim["storage"] / "queue.db")
    files = dict(db.execute("SELECT media_id, file FROM frames WHERE file IS NOT NULL"))
    for m in media:   # the card's images, re-tagged with the true "n of m": the same scan
        assert scan((package / m["filePath"]).read_bytes()) \
            == scan((sim["storage"] / files[m["mediaID"]]).read_bytes())


def test_one_unclassified_event_observation_per_event_spanning_its_images(default_export):
    _, package = default_export
    media, observations = table(package, "media"), table(package, "observations")
    events_with_media = {m["fileName"].split("_E")[1][:6] for m in media}
    assert len(observations) == len(events_with_media)
    for o in observations:
        assert (o["observationLevel"], o["observationType"], o["mediaID"]) == \
            ("event", "unclassified", "")
        assert o["eventStart"] <= o["eventEnd"]


def test_deployment_and_descriptor_come_from_the_station_config(default_export):
    _, package = default_export
    [deployment] = table(package, "deployments")
    assert deployment["deploymentID"] == "LOL-A017-2026-11"
    assert (deployment["latitude"], deployment["longitude"]) == ("43.1056", "131.4569")
    assert deployment["coordinateUncertainty"] == "10"
    assert deployment["timestampIssues"] == "false"      # the default scenario's clock is synced
    assert deployment["cameraModel"] == "trapd-Raspberry Pi imx477"
    descriptor = json.loads((package / "datapackage.json").read_text())
    assert descriptor["profile"].endswith("/1.0.2/camtrap-dp-profile.json")
    assert descriptor["project"]["samplingDesign"] == "targeted"
    assert descriptor["contributors"][0]["role"] == "rightsHolder"
    assert descriptor["temporal"] == {"start": "2026-11-26", "end": "2026-11-26"}
    assert descriptor["spatial"]["coordinates"] == [131.4569, 43.1056]


def test_since_and_mark_exported(sim_queue, tmp_path):
    sim = sim_queue("default")
    storage = copy_queue(sim["storage"], tmp_path / "storage")
    since = "2026-11-26T16:21:00+10:00"
    trapd("export", "--camtrap-dp", tmp_path / "late", "--since", since, "--mark-exported",
          "--storage", storage)
    media = table(tmp_path / "late", "media")
    assert media and all(m["timestamp"] >= since for m in media)
    status = json.loads(trapd("status", "--json", "--storage", storage).stdout)
    assert status["frames"]["exported"] == len(media)
    assert status["frames"]["pending"] == sim["report"]["summary"]["images_stored"] - len(media)
    validate(tmp_path / "late")


def test_a_corrupt_image_is_named_left_out_and_the_rest_still_validates(sim_queue, tmp_path):
    storage = copy_queue(sim_queue("default")["storage"], tmp_path / "storage")
    victim = sorted((storage / "images").rglob("*.jpg"))[4]
    victim.write_bytes(victim.read_bytes()[:1000])
    result = trapd("export", "--camtrap-dp", tmp_path / "pkg", "--storage", storage, check=False)
    assert result.returncode == 1
    assert victim.name in result.stdout and "checksum" in result.stdout
    assert victim.name not in (tmp_path / "pkg" / "media.csv").read_text()
    validate(tmp_path / "pkg")


def test_export_refuses_a_directory_holding_other_files(sim_queue, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "thesis.docx").write_text("keep me")
    result = trapd("export", "--camtrap-dp", tmp_path / "pkg",
                   "--storage", sim_queue("default")["storage"], check=False)
    assert result.returncode == 1 and "other files" in result.stderr
    assert (tmp_path / "pkg" / "thesis.docx").read_text() == "keep me"
