"""A card that fills up: saving stops at the floor (one log line, a status
flag), PIR events are still recorded without images, nothing partial is
indexed, nothing is deleted, and saving resumes when space returns.

The card is a real 8 MB tmpfs where the machine lets us mount one (root in
CI); elsewhere (or with TRAPD_TEST_INJECT_ENOSPC=1) the write layer is given an
8 MB budget and raises ENOSPC."""

import errno
import logging
import os
import subprocess
from collections import namedtuple

import pytest

from trapd import storage

CARD_MB = 8
FLOOR_MB = 2
MB = 1024 * 1024


class InjectedCard:
    """The write layer sees a card of CARD_MB: disk_usage reports what our
    files use, writes past the size fail with ENOSPC."""

    def __init__(self, root, monkeypatch):
        self.root = root
        real_write = storage._write_durably
        usage = namedtuple("usage", "total used free")

        def used():
            return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())

        def disk_usage(_path):
            return usage(CARD_MB * MB, used(), max(CARD_MB * MB - used(), 0))

        def write_durably(path, data):
            if used() + len(data) > CARD_MB * MB:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_write(path, data)

        monkeypatch.setattr(storage.shutil, "disk_usage", disk_usage)
        monkeypatch.setattr(storage, "_write_durably", write_durably)


@pytest.fixture
def card(tmp_path, monkeypatch):
    mount_point = tmp_path / "card"
    mount_point.mkdir()
    mounted = os.environ.get("TRAPD_TEST_INJECT_ENOSPC") != "1" and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={CARD_MB}m,mode=0755",
                              "tmpfs", str(mount_point)], capture_output=True).returncode == 0
    if not mounted:
        InjectedCard(mount_point, monkeypatch)
    yield mount_point
    if mounted:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_with_events(b, until, limit=80):
    for _ in range(limit):
        if until():
            return
        b.pir_pulse_at(0.1, 0.3)
        b.run_for(2.5)
    raise AssertionError("the card never filled")


def test_a_full_card_stops_saving_keeps_recording_events_and_resumes(bench, card, caplog):
    ballast = card / "ballast.bin"          # someone else's data, freed later
    ballast.write_bytes(b"\0" * (CARD_MB * MB // 2))
    b = bench({"storage": {"root": str(card / "trapd"), "min_free_mb": FLOOR_MB},
               "filter": {"enabled": False}, "burst": {"frames": 5, "interval_s": 0.2}})
    caplog.set_level(logging.INFO)
    b.run_for(1)
    fill_with_events(b, until=lambda: b.trap.store.full)
    saved_before_full = {f.file for e in b.events for f in e.frames if f.file}
    assert saved_before_full
    assert caplog.text.count("storage full") == 1           # one clear line, not one per frame
    assert b.trap.store.status()["below_floor"]

    events_when_full = len(b.events)
    for _ in range(3):                                      # animals pass while the card is full
        b.pir_pulse_at(0.1, 0.3)
        b.run_for(2.5)
    while_full = b.events[events_when_full:]
    assert len(while_full) == 3
    assert all(f.file is None for e in while_full for f in e.frames)
    assert caplog.text.count("storage full") == 1
    statuses = b.trap.store.status()
    assert statuses["frames"].get("not_saved", 0) >= 3 * 5

    ballast.unlink()                                        # space returns
    b.pir_pulse_at(0.1, 0.3)
    b.run_for(2.5)
    assert any(f.file for f in b.events[-1].frames)
    assert "saving resumes" in caplog.text
    assert not b.trap.store.status()["below_floor"]

    assert b.trap.store.verify() == []                      # nothing partial indexed
    assert not list(card.rglob("*.tmp"))
    assert all((b.trap.store.root / f).exists() for f in saved_before_full)   # nothing lost


def test_enospc_during_a_write_indexes_no_partial_file(tmp_path, monkeypatch, caplog):
    from test_storage import jpeg, open_event, record
    store = storage.Store(tmp_path, min_free_mb=0)
    event = open_event(store)
    kept = store.add_frame(record(event, 1), jpeg(1), "d/1.jpg")
    real_write = os.write

    def write_half_then_enospc(fd, data):
        if len(data) > 100:
            real_write(fd, bytes(data[:100]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(storage.os, "write", write_half_then_enospc)
    assert store.add_frame(record(event, 2), jpeg(2), "d/2.jpg") is None
    monkeypatch.undo()
    assert "No space left" in caplog.text
    assert store.verify() == [] and not list(tmp_path.rglob("*.tmp"))
    assert store.status()["frames"] == {"pending": 1, "not_saved": 1}
    assert (tmp_path / kept).exists()
