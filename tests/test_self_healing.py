"""Damage the card, the index or the folders under the trap: it must heal, keep
every committed photo, never reuse an event number, and touch nothing outside
its storage root (issue 13, points 1-5)."""

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess

import pytest

from conftest import copy_queue, trapd
from trapd.health import INDEX_FULL, STORAGE_FULL, read_health
from trapd.storage import DB_NAME, IMAGES_DIR, QUARANTINE_DIR, Store

ROW = ("file", "event_number", "sequence", "capture_wall_ns", "sensor_timestamp_ns",
       "pre_trigger", "round(score, 5)", "media_id", "sha256", "size_bytes")


def saved_rows(root) -> dict:
    """Every saved photo's index facts, by file (read with SQLite itself)."""
    db = sqlite3.connect(f"file:{root / DB_NAME}?mode=ro", uri=True)
    try:
        rows = db.execute(f"SELECT {', '.join(ROW)} FROM frames WHERE file IS NOT NULL")
        return {r[0]: r for r in rows}
    finally:
        db.close()


def highest_event(root) -> int:
    db = sqlite3.connect(f"file:{root / DB_NAME}?mode=ro", uri=True)
    try:
        return db.execute("SELECT MAX(number) FROM events").fetchone()[0]
    finally:
        db.close()


@pytest.fixture
def queue(sim_queue, tmp_path):
    """A private copy of a finished `trapd sim default` run's storage."""
    return copy_queue(sim_queue("default")["storage"], tmp_path / "storage")


def test_a_truncated_index_is_set_aside_and_rebuilt_from_the_photos(queue):
    original, highest = saved_rows(queue), highest_event(queue)
    assert len(original) >= 10
    damaged = (queue / DB_NAME).read_bytes()[:len((queue / DB_NAME).read_bytes()) // 2]
    (queue / DB_NAME).write_bytes(damaged)

    store = Store(queue, min_free_mb=0)                  # what the daemon does at start
    kept = [p for p in queue.iterdir() if p.name.startswith(DB_NAME + ".damaged-")]
    assert [p.read_bytes() for p in kept if "-wal" not in p.name] == [damaged]  # set aside, not deleted
    assert store.verify() == []
    assert store.open_event("ST", "D", "pir", 1, 1).number > highest   # no number reused
    store.close()
    assert saved_rows(queue) == original                 # event, sequence, time, score, ... back
    assert "rebuilt from" in read_health(queue)["repairs"][-1]["what"]


@pytest.mark.parametrize("seed", range(30))
def test_random_byte_flips_in_the_index_never_stop_the_trap_or_lose_a_photo(queue, seed):
    original, highest = saved_rows(queue), highest_event(queue)
    data = bytearray((queue / DB_NAME).read_bytes())
    rng = random.Random(seed)
    for _ in range(5):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    (queue / DB_NAME).write_bytes(bytes(data))

    store = Store(queue, min_free_mb=0)
    # A flip that leaves valid text in a checksum column is the index disagreeing
    # with an intact photo: verify says so (and only that).
    assert all("differs from the index checksum" in p for p in store.verify())
    assert store.open_event("ST", "D", "pir", 1, 1).number > highest
    store.close()
    assert set(saved_rows(queue)) == set(original)       # every photo indexed
    for file, row in original.items():
        assert hashlib.sha256((queue / file).read_bytes()).hexdigest() == row[8]


def test_an_undecodable_file_name_is_reported_by_verify_then_healed(queue):
    original = saved_rows(queue)
    name = sorted(original)[0].encode()
    data = (queue / DB_NAME).read_bytes()
    at = data.index(name) + len(name) - 8                 # inside the indexed file name
    (queue / DB_NAME).write_bytes(data[:at] + b"\xff\xfe\xfd" + data[at + 3:])

    reader = Store(queue, min_free_mb=0, recover=False)     # `trapd verify` beside the daemon
    problems = reader.verify()
    reader.close()
    assert len(problems) == 1 and "damaged" in problems[0]

    result = trapd("sim", "default", "--storage", queue)
    assert "Traceback" not in result.stderr
    assert set(original) <= set(saved_rows(queue))


def test_a_deleted_wal_loses_no_photo_and_reuses_no_number(bench, tmp_path):
    b = bench({"filter": {"enabled": False}, "burst": {"frames": 3, "interval_s": 0.2}})
    store = b.trap.store
    store._db.execute("PRAGMA wal_autocheckpoint=0")        # the newest rows stay in the -wal
    for _ in range(2):
        b.pir_pulse_at(0.1, 0.3)
        b.run_for(2)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for _ in range(3):                                       # these rows exist only in the -wal
        b.pir_pulse_at(0.1, 0.3)
        b.run_for(2)
    original, highest = saved_rows(store.root), highest_event(store.root)
    card = tmp_path / "card"             # the card as a power cut left it, -wal deleted after
    shutil.copytree(store.root, card, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    assert len(saved_rows(card)) < len(original)

    again = Store(card, min_free_mb=0)
    assert again.verify() == []
    assert not (card / QUARANTINE_DIR).exists()              # indexed again, not quarantined
    assert again.open_event("ST", "D", "pir", 1, 1).number == highest + 1
    again.close()
    assert saved_rows(card) == original


def test_unreadable_photos_of_the_same_name_are_both_kept_in_quarantine(tmp_path):
    Store(tmp_path, min_free_mb=0).close()
    name = "ST01_20261203_120000_E000004_01.jpg"
    for day, content in (("2026-12-01", b"first"), ("2026-12-02", b"second")):
        (tmp_path / IMAGES_DIR / day).mkdir()
        (tmp_path / IMAGES_DIR / day / name).write_bytes(content)
    Store(tmp_path, min_free_mb=0).close()
    kept = sorted(p.read_bytes() for p in (tmp_path / QUARANTINE_DIR).rglob("*.jpg"))
    assert kept == [b"first", b"second"]


def tree(folder):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def someone_elses_folder(path):
    (path / "holiday").mkdir(parents=True)
    (path / "holiday" / "thesis.tex.tmp").write_text("three years of work")
    (path / "holiday" / "beach.jpg").write_bytes(b"\xff\xd8 a beach \xff\xd9")
    (path / "ST01_20261203_120000_E000001_01.jpg.tmp").write_bytes(b"looks like ours")
    (path / "ST01_20261203_120000_E000002_01.jpg").write_bytes(b"looks like ours too")
    return tree(path)


def test_recovery_and_capture_never_follow_images_linked_out_of_the_root(bench, tmp_path):
    outside = tmp_path / "userpics"
    before = someone_elses_folder(outside)
    root = tmp_path / "storage"
    root.mkdir()
    (root / IMAGES_DIR).symlink_to(outside)
    b = bench({"storage": {"root": str(root)}, "filter": {"enabled": False},
               "burst": {"frames": 2, "interval_s": 0.2}})
    b.pir_pulse_at(0.1, 0.3)
    b.run_for(2)
    assert tree(outside) == before                          # nothing deleted, moved or written
    assert b.trap.store.health.is_set("storage_link")
    assert b.events and all(f.file is None for f in b.events[0].frames)


def test_a_date_folder_linked_out_of_the_root_is_stepped_around(bench, tmp_path):
    outside = tmp_path / "elsewhere"
    before = someone_elses_folder(outside)
    b = bench({"filter": {"enabled": False}, "burst": {"frames": 2, "interval_s": 0.2}})
    images = b.trap.store.root / IMAGES_DIR
    (images / "2026-11-26").symlink_to(outside)            # the bench's capture date
    b.pir_pulse_at(0.1, 0.3)
    b.run_for(2)
    saved = [f.file for f in b.events[0].frames if f.file]
    assert saved and all(f.startswith(f"{IMAGES_DIR}/2026-11-26_1/") for f in saved)
    b.close()
    Store(b.trap.store.root, min_free_mb=0).close()         # recovery walks past the link too
    assert tree(outside) == before


@pytest.fixture
def tiny_card(tmp_path):
    """A real 8 MB tmpfs (root only: CI runs as root)."""
    card = tmp_path / "card"
    card.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(card)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield card
    subprocess.run(["umount", "-l", str(card)], check=False)


def fill(path, size):
    """Another process's file taking `size` bytes, or all the room there is."""
    with open(path, "wb") as f:
        try:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            pass


@pytest.mark.parametrize("floor_mb", [0, 2])
def test_a_card_filled_to_the_last_byte_is_a_state_not_a_crash(bench, tiny_card, floor_mb):
    root = tiny_card / "trapd"
    settings = {"storage": {"root": str(root), "min_free_mb": floor_mb},
                "filter": {"enabled": False}, "burst": {"frames": 5, "interval_s": 0.2}}
    b = bench(settings)
    b.pir_pulse_at(0.1, 0.3)
    b.run_for(2.5)
    saved = {f.file for f in b.events[0].frames if f.file}
    fill(tiny_card / "ballast", 64 * 2**20)                  # someone fills the card completely
    for _ in range(4):                                       # animals pass; nothing can be saved
        b.pir_pulse_at(0.1, 0.3)
        b.run_for(2.5)
    assert len(b.events) == 5
    health = read_health(root)["degraded"]
    assert STORAGE_FULL in health or INDEX_FULL in health
    b.close()

    again = bench(settings)                                   # a restart on the full card
    again.pir_pulse_at(0.1, 0.3)
    again.run_for(2.5)
    assert again.events[-1].frames                          # still capturing and judging
    (tiny_card / "ballast").unlink()                          # space returns
    again.pir_pulse_at(0.1, 0.3)
    again.run_for(2.5)
    assert any(f.file for f in again.events[-1].frames)
    assert again.trap.store.verify() == []
    assert all((root / f).exists() for f in saved)


def test_offload_and_export_never_read_or_delete_through_a_date_folder_linked_out(queue, tmp_path):
    day = sorted((queue / IMAGES_DIR).iterdir())[0]
    outside = tmp_path / "elsewhere"
    shutil.move(day, outside)                               # same photos, now outside the root
    day.symlink_to(outside)
    before = tree(outside)
    (tmp_path / "drive").mkdir()
    result = trapd("offload", tmp_path / "drive", "--free", "--storage", queue, check=False)
    assert "Traceback" not in result.stderr
    assert "out of the storage root" in result.stdout + result.stderr
    assert tree(outside) == before                          # nothing read through it is deleted
    copied = {p.name for p in (tmp_path / "drive").rglob("*.jpg")}
    assert not copied & set(before)                         # none read through the link


def test_the_daemon_stays_up_on_an_unreadable_index_and_says_what_it_did(queue):
    (queue / DB_NAME).write_bytes(random.Random(1).randbytes(64 * 1024))   # not a database
    for suffix in ("-wal", "-shm"):
        (queue / (DB_NAME + suffix)).unlink(missing_ok=True)
    result = trapd("sim", "default", "--storage", queue)     # exit 0, or the fixture fails
    assert "Traceback" not in result.stderr and "rebuilt" in result.stderr
    status = trapd("status", "--storage", queue).stdout
    assert "last repair: index damaged" in status and "rebuilt from" in status


def test_the_daemon_stays_up_on_a_full_card_and_status_says_why(tiny_card):
    storage = tiny_card / "trapd"
    trapd("sim", "default", "--storage", storage)            # a trap that has run on this card
    fill(tiny_card / "ballast", 64 * 2**20)                  # then someone fills it
    result = trapd("sim", "default", "--storage", storage)  # exit 0, or the fixture fails
    assert "Traceback" not in result.stderr
    status = trapd("status", "--storage", storage).stdout
    assert "DEGRADED storage_full" in status and "BELOW FLOOR" in status


def test_a_card_full_before_the_first_start_is_a_state_too(tiny_card):
    fill(tiny_card / "ballast", 64 * 2**20)                  # not even an index fits
    result = trapd("sim", "default", "--storage", tiny_card / "trapd")
    assert "Traceback" not in result.stderr and "degraded: index_full" in result.stderr
    assert "BELOW FLOOR" in trapd("status", "--storage", tiny_card / "trapd").stdout
    (tiny_card / "ballast").unlink()
    trapd("sim", "default", "--storage", tiny_card / "trapd")
    assert "events: none" not in trapd("status", "--storage", tiny_card / "trapd").stdout


def test_an_unusable_shared_memory_file_is_not_taken_for_damage(tmp_path):
    store = Store(tmp_path, min_free_mb=0)
    store.open_event("ST", "D", "pir", 1, 1)
    store.close()
    os.mkfifo(tmp_path / (DB_NAME + "-shm"))           # SQLite cannot size it (SHMOPEN)
    again = Store(tmp_path, min_free_mb=0)
    assert again.open_event("ST", "D", "pir", 1, 1).number == 2     # same index, not rebuilt
    assert not [p for p in tmp_path.iterdir() if ".damaged-" in p.name]
    again.close()
