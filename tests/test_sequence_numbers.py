"""Issue 15 point 6: true sequence numbers. A photo carries only what is true
when it is saved (its sequence number and event id): a PIR re-trigger can
still extend the burst, so no "of m" total. The index records the event's
number of saved images when it closes, and exports carry the true "n of m"
in media.csv's exifData and in the copied images."""

import csv
import json
import sqlite3
import subprocess

import pytest

from conftest import require_tool, trapd, write_config
from test_metadata import CAPTURE, STATION, encode_frame
from trapd.metadata import build_exif, build_xmp, tag_jpeg, with_sequence_total
from trapd.storage import Store

from test_storage import jpeg, open_event, record

EXTENDED = {"burst": {"frames": 4, "interval_s": 0.5, "pre_trigger_frames": 1},
            "filter": {"enabled": False}}


def exiftool(*paths):
    tool = require_tool("exiftool")
    out = subprocess.run([tool, "-j", "-n", "-G1", "-a", *map(str, paths)],
                         capture_output=True, text=True, check=True).stdout
    return {tags["SourceFile"]: tags for tags in json.loads(out)}


def validation_warnings(paths):
    tool = require_tool("exiftool")
    out = subprocess.run([tool, "-validate", "-warning", "-a", "-s", *map(str, paths)],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith("Warning")]


@pytest.fixture
def extended_event(bench, tmp_path):
    """One PIR event extended by a second pulse mid-burst (more images than the
    burst planned when the first were saved), exported with `trapd export`."""
    b = bench(EXTENDED)
    b.run_for(1)
    b.pir_pulse_at(0.2, 0.3)
    b.pir_pulse_at(1.4, 0.3)            # the animal moves again: the burst is extended
    b.run_for(6)
    assert len(b.events) == 1
    root = b.trap.store.root
    b.close()
    db = sqlite3.connect(root / "queue.db")
    db.row_factory = sqlite3.Row
    frames = db.execute("SELECT f.sequence, f.file, e.event_id FROM frames f"
                        " JOIN events e ON e.number = f.event_number"
                        " WHERE f.file IS NOT NULL ORDER BY f.sequence").fetchall()
    assert len(frames) > 1 + 4         # pre-trigger + the 4 planned, and more
    config = write_config(tmp_path / "config.yaml", tmp_path, EXTENDED)
    package = tmp_path / "package"
    trapd("export", "--camtrap-dp", package, "--storage", root, "--config", config)
    return root, frames, package


def test_the_card_photos_carry_their_sequence_number_but_no_total(extended_event):
    root, frames, _ = extended_event
    tags = exiftool(*(root / f["file"] for f in frames))
    for f in frames:
        t = tags[str(root / f["file"])]
        assert t["XMP-trap:EventSequence"] == t["XMP-trap:Sequence"] == f["sequence"]
        assert "XMP-trap:EventLength" not in t
        assert t["XMP-trap:EventID"] == f["event_id"]
        assert " of " not in t["IFD0:ImageDescription"]
        assert f"{f['event_id']} {f['sequence']} pir" in t["IFD0:ImageDescription"]
        assert f";seq={f['sequence']};" in t["ExifIFD:UserComment"]


def test_the_index_records_the_events_saved_images(extended_event):
    root, frames, _ = extended_event
    db = sqlite3.connect(root / "queue.db")
    assert db.execute("SELECT event_id, saved_images FROM events").fetchall() == \
        [(frames[0]["event_id"], len(frames))]


def test_export_carries_the_true_n_of_m_in_media_csv_and_the_copies(extended_event):
    _, frames, package = extended_event
    m = len(frames)
    with open(package / "media.csv", newline="", encoding="utf-8") as f:
        media = list(csv.DictReader(f))
    assert len(media) == m
    for n, row in enumerate(media, 1):
        xmp = json.loads(row["exifData"])["XMP-trap"]
        assert (xmp["Sequence"], xmp["EventLength"], xmp["EventSequence"]) == (f"{n} of {m}", m, n)
    copies = [package / row["filePath"] for row in media]
    tags = exiftool(*copies)
    for n, copy in enumerate(copies, 1):
        t = tags[str(copy)]
        assert t["XMP-trap:Sequence"] == f"{n} of {m}"
        assert t["XMP-trap:EventLength"] == m
        assert t["IFD0:ImageDescription"].endswith(f" {frames[0]['event_id']} {n} of {m} pir")
        assert f";seq={n}/{m};" in t["ExifIFD:UserComment"]
    assert validation_warnings(copies) == []


# ------------------------------------------------------------ the index
def test_n_counts_saved_images_only_and_m_is_known_once_the_event_closed(tmp_path):
    store = Store(tmp_path, min_free_mb=0)
    event = open_event(store)
    for seq, kept in ((1, True), (2, False), (3, True), (4, True)):   # 2: an empty frame dropped
        store.add_frame(record(event, seq, kept), jpeg(seq) if kept else None,
                        f"d/a{seq}.jpg" if kept else None)
    rows = store.saved_frames(("pending",))
    assert [(r["sequence"], r["image_number"], r["event_images"]) for r in rows] == \
        [(1, 1, None), (3, 2, None), (4, 3, None)]          # open: no total claimed
    store.close_event(event, ended_wall_ns=10)
    rows = store.saved_frames(("pending",))
    assert [(r["sequence"], r["image_number"], r["event_images"]) for r in rows] == \
        [(1, 1, 3), (3, 2, 3), (4, 3, 3)]
    store.close()


def test_an_index_from_before_the_column_is_upgraded_and_still_gives_the_total(tmp_path):
    store = Store(tmp_path, min_free_mb=0)
    event = open_event(store)
    for seq in (1, 2):
        store.add_frame(record(event, seq), jpeg(seq), f"d/a{seq}.jpg")
    store.close_event(event, ended_wall_ns=10)
    store.close()
    old = sqlite3.connect(tmp_path / "queue.db")   # as an older trapd left the card
    old.execute("ALTER TABLE events DROP COLUMN saved_images")
    old.close()
    store = Store(tmp_path, min_free_mb=0)
    assert [(r["image_number"], r["event_images"]) for r in store.saved_frames(("pending",))] \
        == [(1, 2), (2, 2)]
    store.close()
    columns = [r[1] for r in sqlite3.connect(tmp_path / "queue.db").execute(
        "PRAGMA table_info(events)")]
    assert "saved_images" in columns


# ------------------------------------------------------------ the tags
def test_with_sequence_total_changes_only_the_sequence_fields(tmp_path):
    without_total = CAPTURE.__class__(**{**CAPTURE.__dict__, "event_length": None})
    card = tag_jpeg(encode_frame(), build_exif(STATION, without_total),
                    build_xmp(STATION, without_total))
    (tmp_path / "card.jpg").write_bytes(card)
    (tmp_path / "copy.jpg").write_bytes(with_sequence_total(card, CAPTURE.event_id, 2, 5))
    tags = exiftool(tmp_path / "card.jpg", tmp_path / "copy.jpg")
    before, after = tags[str(tmp_path / "card.jpg")], tags[str(tmp_path / "copy.jpg")]
    assert (before["XMP-trap:Sequence"], before.get("XMP-trap:EventLength")) == (2, None)
    assert (after["XMP-trap:Sequence"], after["XMP-trap:EventLength"]) == ("2 of 5", 5)
    assert after["IFD0:ImageDescription"] == "LOL-A017 LOL-A017-E000123 2 of 5 pir"
    assert after["ExifIFD:UserComment"] == before["ExifIFD:UserComment"].replace(
        ";seq=2;", ";seq=2/5;")
    changed = {"XMP-trap:Sequence", "XMP-trap:EventLength", "IFD0:ImageDescription",
               "ExifIFD:UserComment", "SourceFile", "System:FileName", "System:FileSize",
               "System:FileModifyDate", "System:FileAccessDate", "System:FileInodeChangeDate"}
    assert {k: v for k, v in after.items() if k not in changed} == \
        {k: v for k, v in before.items() if k not in changed}
    assert validation_warnings([tmp_path / "card.jpg", tmp_path / "copy.jpg"]) == []
