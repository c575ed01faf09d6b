"""`trapd offload DEST`: killed (SIGKILL) at many points and resumed, it ends
with every image on the drive exactly once, matching its SHA-256, marked
offloaded; nothing on the card is deleted without --free, and then only
verified copies."""

import errno
import hashlib
import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import camtrap_validator, copy_queue, trapd
from trapd.config import DEFAULT_CONFIG_PATH, load_config
from trapd.errors import OffloadError
from trapd.storage import Store

# Runs `trapd offload` and SIGKILLs itself at the nth passage through one point.
KILLER = textwrap.dedent("""
    import os, signal, sys
    import trapd.export as export
    import trapd.offload as offload
    from trapd.cli import main
    from trapd.storage import Store

    point, nth, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    seen = [0]

    def die_at_nth():
        seen[0] += 1
        if seen[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    def before(owner, name):
        real = getattr(owner, name)
        def wrapper(*a, **k):
            die_at_nth()
            return real(*a, **k)
        setattr(owner, name, wrapper)

    def after(owner, name):
        real = getattr(owner, name)
        def wrapper(*a, **k):
            result = real(*a, **k)
            die_at_nth()
            return result
        setattr(owner, name, wrapper)

    if point == "mid-copy":              # half the bytes of a .partial written
        real_write = offload._write_synced
        def half_then_die(path, data):
            seen[0] += 1
            if seen[0] == nth:
                path.write_bytes(data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            real_write(path, data)
        offload._write_synced = half_then_die
    elif point == "before-rename":       # verified .partial, not yet renamed
        before(offload.os, "replace")
    elif point == "before-mark":         # renamed into place, index not yet told
        before(Store, "mark_offloaded")
    elif point == "after-mark":
        after(Store, "mark_offloaded")
    elif point == "package":             # while writing the Camtrap DP files
        before(export, "_write_atomically")
    elif point == "free":                # marked freed, card file not yet deleted
        after(Store, "mark_freed")
    sys.exit(main(["offload", *args]))
""")
POINTS = ("mid-copy", "before-rename", "before-mark", "after-mark", "package")


def killed_offload(point, nth, storage, dest, *extra):
    result = subprocess.run([sys.executable, "-c", KILLER, point, str(nth), str(dest),
                             "--storage", str(storage), *extra],
                            capture_output=True, text=True, timeout=120)
    return result.returncode


def saved(storage):
    db = sqlite3.connect(storage / "queue.db")
    return db.execute("SELECT file, sha256, state, offload_path FROM frames"
                      " WHERE file IS NOT NULL ORDER BY id").fetchall()


def assert_every_image_on_the_drive_once_and_verified(storage, dest, states=("offloaded",)):
    frames = saved(storage)
    on_drive = sorted(p for p in dest.rglob("*") if p.is_file() and p.suffix != ".csv"
                      and p.name != "datapackage.json")
    assert [p.name for p in on_drive if p.suffix == ".jpg"] == \
        sorted(p.name for p in on_drive), "stray .partial or other files left on the drive"
    assert sorted(p.name for p in on_drive) == sorted(f[0].rsplit("/", 1)[1] for f in frames)
    for file, digest, state, offload_path in frames:
        assert state in states, (file, state)
        assert hashlib.sha256((dest / offload_path).read_bytes()).hexdigest() == digest


@pytest.fixture
def queue_and_drive(sim_queue, tmp_path):
    storage = copy_queue(sim_queue("default")["storage"], tmp_path / "card")
    dest = tmp_path / "drive"
    dest.mkdir()
    return storage, dest


def test_killed_at_every_kind_of_point_then_resumed_each_image_is_copied_once(queue_and_drive):
    storage, dest = queue_and_drive
    total = len(saved(storage))
    for point, nth in [("mid-copy", 1), ("before-rename", 4), ("before-mark", 7),
                       ("after-mark", 11), ("mid-copy", 3), ("before-mark", 1)]:
        assert killed_offload(point, nth, storage, dest) == -signal.SIGKILL, point
    # the last kill left one verified copy on the drive that the index does not know of
    unmarked = [f for f in saved(storage) if f[2] == "pending" and
                (dest / "LOL-A017-2026-11" / "media" / f[0].rsplit("/", 1)[1]).exists()]
    assert len(unmarked) == 1
    result = trapd("offload", dest, "--storage", storage)
    assert re.search(r"images copied and verified .*, 1 already there", result.stdout)
    assert_every_image_on_the_drive_once_and_verified(storage, dest)
    assert len(list((storage / "images").rglob("*.jpg"))) == total   # nothing deleted
    subprocess.run([sys.executable, str(camtrap_validator()),
                    str(dest / "LOL-A017-2026-11"), "--strict", "--check-media"], check=True,
                   capture_output=True)


def test_killed_while_writing_the_package_then_resumed_the_package_validates(queue_and_drive):
    storage, dest = queue_and_drive
    assert killed_offload("package", 2, storage, dest) == -signal.SIGKILL
    trapd("offload", dest, "--storage", storage)
    assert_every_image_on_the_drive_once_and_verified(storage, dest)
    assert not list(dest.rglob("*.tmp"))
    subprocess.run([sys.executable, str(camtrap_validator()),
                    str(dest / "LOL-A017-2026-11"), "--strict", "--check-media"], check=True,
                   capture_output=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_killed_at_random_points_then_resumed_ends_complete(queue_and_drive, seed):
    storage, dest = queue_and_drive
    rng = random.Random(seed)
    for _ in range(5):
        killed_offload(rng.choice(POINTS), rng.randint(1, 8), storage, dest)
    trapd("offload", dest, "--storage", storage)
    assert_every_image_on_the_drive_once_and_verified(storage, dest)


def test_free_deletes_only_verified_copies_and_survives_a_kill(queue_and_drive):
    storage, dest = queue_and_drive
    trapd("offload", dest, "--storage", storage)
    # the drive loses one copy: that image must stay on the card
    lost = dest / saved(storage)[2][3]
    lost.unlink()
    assert killed_offload("free", 5, storage, dest, "--free") == -signal.SIGKILL
    result = trapd("offload", dest, "--storage", storage, "--free", check=False)
    assert result.returncode == 1 and lost.name in result.stdout and "kept on the card" in result.stdout
    on_card = [p.name for p in (storage / "images").rglob("*.jpg")]
    assert on_card == [lost.name]
    states = [f[2] for f in saved(storage)]
    assert states.count("offloaded") == 1 and states.count("freed") == len(states) - 1
    assert "every indexed image is complete" in trapd("verify", "--storage", storage).stdout


def test_a_missing_destination_is_a_clear_error(sim_queue, tmp_path):
    result = trapd("offload", tmp_path / "not-mounted", "--storage",
                   sim_queue("default")["storage"], check=False)
    assert result.returncode == 1
    assert "not-mounted" in result.stderr and "mounted" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_corrupt_card_image_is_named_and_not_marked(queue_and_drive):
    storage, dest = queue_and_drive
    victim = storage / saved(storage)[3][0]
    victim.write_bytes(b"\xff\xd8 not really")
    result = trapd("offload", dest, "--storage", storage, check=False)
    assert result.returncode == 1 and victim.name in result.stdout
    states = {f[0]: f[2] for f in saved(storage)}
    assert states.pop(str(victim.relative_to(storage))) == "pending"
    assert set(states.values()) == {"offloaded"}


def test_a_full_drive_stops_with_a_clear_error_and_keeps_what_was_verified(
        queue_and_drive, monkeypatch):
    import trapd.offload as offload_module
    storage, dest = queue_and_drive
    real_write, writes = offload_module._write_synced, []

    def fills_up_after_three(path, data):
        writes.append(path)
        if len(writes) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(offload_module, "_write_synced", fills_up_after_three)
    store = Store(storage, min_free_mb=0, recover=False)
    with pytest.raises(OffloadError, match="full"):
        offload_module.offload(store, load_config(DEFAULT_CONFIG_PATH), dest)
    store.close()
    states = [f[2] for f in saved(storage)]
    assert states.count("offloaded") == 3 and states.count("pending") == len(states) - 3
    assert not list(dest.rglob("*.partial"))
    assert len(list((storage / "images").rglob("*.jpg"))) == len(states)


def test_plain_progress_lines_when_not_on_a_terminal(queue_and_drive):
    storage, dest = queue_and_drive
    out = trapd("offload", dest, "--storage", storage).stdout
    total = len(saved(storage))
    assert f"offload: {total}/{total} images" in out and "\r" not in out
    status = json.loads(trapd("status", "--json", "--storage", storage).stdout)
    assert status["frames"]["offloaded"] == total
