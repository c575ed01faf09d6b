"""The queue's contract: atomic files, an index that never points at a broken
JPEG, event numbers never reused, a free-space floor that deletes nothing."""

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import simplejpeg

from trapd.storage import IMAGES_DIR, QUARANTINE_DIR, FrameRecord, Store


def jpeg(seed: int = 0, size=(64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    return simplejpeg.encode_jpeg(rng.integers(0, 255, (size[1], size[0], 3), np.uint8), 85)


def record(event, seq=1, kept=True):
    return FrameRecord(event_number=event.number, sequence=seq, sensor_timestamp_ns=seq,
                       capture_wall_ns=seq, pre_trigger=False, score=0.1, kept=kept,
                       media_id=f"{event.number:016x}{seq:016x}")


def name(number, seq=1):
    """A file name as the trap gives it (recovery touches only such names)."""
    return f"d/ST01_20261203_120000_E{number:06d}_{seq:02d}.jpg"


def open_event(store):
    return store.open_event("ST01", "ST01-D1", "pir", 1, 1)


def test_a_saved_image_is_indexed_and_verifies(tmp_path):
    store = Store(tmp_path, min_free_mb=0)
    event = open_event(store)
    path = store.add_frame(record(event), jpeg(), "2026-11-26/a.jpg")
    assert (tmp_path / path).read_bytes() == jpeg()
    assert store.verify() == []
    db = sqlite3.connect(tmp_path / "queue.db")
    assert db.execute("SELECT state, file FROM frames").fetchall() == [("pending", path)]


def test_files_are_private_to_the_trap_user(tmp_path):
    store = Store(tmp_path, min_free_mb=0)
    path = store.add_frame(record(open_event(store)), jpeg(), "d/a.jpg")
    assert oct((tmp_path / path).stat().st_mode & 0o777) == oct(0o640)
    assert oct((tmp_path / path).parent.stat().st_mode & 0o777) == oct(0o750)


def test_dropped_frames_are_indexed_without_a_file(tmp_path):
    store = Store(tmp_path, min_free_mb=0)
    assert store.add_frame(record(open_event(store), kept=False)) is None
    assert store.status()["frames"] == {"dropped": 1}


def test_event_numbers_are_never_reused_across_restarts(tmp_path):
    store = Store(tmp_path, min_free_mb=0)
    first = [open_event(store).number for _ in range(3)]
    store._db.execute("DELETE FROM events")   # even if rows vanish
    store.close()
    again = Store(tmp_path, min_free_mb=0)
    assert open_event(again).number > max(first)


def test_below_the_floor_nothing_is_saved_or_deleted(tmp_path, caplog):
    store = Store(tmp_path, min_free_mb=0)
    event = open_event(store)
    kept = store.add_frame(record(event, 1), jpeg(1), "d/1.jpg")
    store.min_free_mb = 10**9          # a floor no card reaches
    assert store.add_frame(record(event, 2), jpeg(2), "d/2.jpg") is None
    assert store.add_frame(record(event, 3), jpeg(3), "d/3.jpg") is None
    assert "storage full" in caplog.text and caplog.text.count("storage full") == 1
    assert (tmp_path / kept).exists()
    assert store.status()["frames"] == {"pending": 1, "not_saved": 2}
    assert store.status()["below_floor"]
    store.min_free_mb = 0
    assert store.add_frame(record(event, 4), jpeg(4), "d/4.jpg") is not None


def test_recovery_removes_temporaries_and_quarantines_unindexed_images(tmp_path):
    store = Store(tmp_path, min_free_mb=0)
    event = open_event(store)
    store.add_frame(record(event), jpeg(), "d/indexed.jpg")
    store.close()
    day = tmp_path / IMAGES_DIR / "d"
    half, orphan = tmp_path / IMAGES_DIR / (name(2) + ".tmp"), tmp_path / IMAGES_DIR / name(3)
    half.write_bytes(jpeg()[:100])
    orphan.write_bytes(jpeg(5))     # no trapd tags: it cannot be indexed again
    (day / "someone's.jpg.tmp").write_bytes(b"not ours")
    again = Store(tmp_path, min_free_mb=0)
    assert not half.exists()
    assert (tmp_path / QUARANTINE_DIR / IMAGES_DIR / name(3)).read_bytes() == jpeg(5)
    assert (day / "someone's.jpg.tmp").read_bytes() == b"not ours"   # not ours: untouched
    assert again.verify() == []
    assert again.status()["events"] == {"interrupted": 1}


def test_verify_reports_a_truncated_and_an_unindexed_image(tmp_path):
    store = Store(tmp_path, min_free_mb=0)
    path = store.add_frame(record(open_event(store)), jpeg(), "d/a.jpg")
    (tmp_path / path).write_bytes(jpeg()[:200])
    (tmp_path / IMAGES_DIR / name(9)).write_bytes(jpeg(3))
    problems = store.verify()
    assert any("a.jpg" in p and "truncated" in p for p in problems)
    assert any("E000009_01.jpg" in p and "no index row" in p for p in problems)


WRITER = textwrap.dedent("""
    import sys, numpy as np, simplejpeg
    from trapd.storage import FrameRecord, Store
    store = Store(sys.argv[1], min_free_mb=0)
    big = simplejpeg.encode_jpeg(np.random.default_rng(0).integers(0, 255, (1520, 2028, 3), np.uint8), 95)
    committed = 0
    while True:
        event = store.open_event("ST01", "ST01-D1", "pir", 1, 1)
        for seq in range(1, 4):
            store.add_frame(FrameRecord(event.number, seq, seq, seq, False, 0.1, True,
                                        f"{event.number:016x}{seq:016x}"), big,
                            f"d/ST01_20261203_120000_E{event.number:06d}_{seq:02d}.jpg")
            committed += 1
            if committed == 1:
                print("ready", flush=True)   # one image is in: the kill lands in later writes
""")


@pytest.mark.parametrize("delay_s", [0.05, 0.13, 0.29, 0.41, 0.67])
def test_a_process_killed_mid_write_leaves_no_broken_image_in_the_index(tmp_path, delay_s):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    time.sleep(delay_s)       # a random-ish instant inside the write loop; not a timing assert
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    store = Store(tmp_path, min_free_mb=0)     # start-up recovery, as after a power cut
    assert store.verify() == []
    files = [row[0] for row in store._db.execute("SELECT file FROM frames")]
    assert files, "the image committed before 'ready' must survive"
    for file in files:
        simplejpeg.decode_jpeg((tmp_path / file).read_bytes())
    assert not list((tmp_path / IMAGES_DIR).rglob("*.tmp"))
    last = max(row[0] for row in store._db.execute("SELECT number FROM events"))
    assert open_event(store).number == last + 1


# The schema of the first release, before export/offload/clock columns existed.
FIRST_RELEASE_SCHEMA = """
CREATE TABLE events (number INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    station_id TEXT NOT NULL, deployment_id TEXT NOT NULL, trigger TEXT NOT NULL,
    trigger_monotonic_ns INTEGER NOT NULL, trigger_wall_ns INTEGER NOT NULL,
    ended_wall_ns INTEGER, state TEXT NOT NULL DEFAULT 'open', note TEXT);
CREATE TABLE frames (id INTEGER PRIMARY KEY, event_number INTEGER NOT NULL REFERENCES events(number),
    sequence INTEGER NOT NULL, sensor_timestamp_ns INTEGER NOT NULL,
    capture_wall_ns INTEGER NOT NULL, pre_trigger INTEGER NOT NULL, score REAL,
    kept INTEGER NOT NULL, state TEXT NOT NULL, media_id TEXT UNIQUE, file TEXT UNIQUE,
    size_bytes INTEGER, sha256 TEXT, metadata TEXT, UNIQUE (event_number, sequence));
"""


def test_a_queue_from_the_first_release_opens_with_every_row_kept(tmp_path):
    image = jpeg(7)
    (tmp_path / IMAGES_DIR / "d").mkdir(parents=True)
    (tmp_path / IMAGES_DIR / "d" / "a.jpg").write_bytes(image)
    old = sqlite3.connect(tmp_path / "queue.db")
    old.executescript(FIRST_RELEASE_SCHEMA)
    old.execute("INSERT INTO events VALUES (7, 'ST01-D1-E000007', 'ST01', 'ST01-D1', 'pir',"
                " 1, 2, 3, 'closed', NULL)")
    old.execute("INSERT INTO frames VALUES (1, 7, 1, 1, 2, 0, 0.5, 1, 'pending', 'm1',"
                " 'images/d/a.jpg', ?, ?, NULL)", (len(image), hashlib.sha256(image).hexdigest()))
    old.commit()
    old.close()
    store = Store(tmp_path, min_free_mb=0)
    assert store.verify() == []
    [row] = store.saved_frames(("pending",))
    assert (row["event_id"], row["file"], row["clock_synced"], row["wall_jump_ns"]) == \
        ("ST01-D1-E000007", "images/d/a.jpg", None, 0)
    assert open_event(store).number == 8          # the AUTOINCREMENT history survives
    store.mark_offloaded(row["id"], "/mnt/usb", "ST01-D1/media/a.jpg", 5)
    assert store.status()["frames"] == {"offloaded": 1}
