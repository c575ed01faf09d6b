"""Power cuts that lose the page cache: the trap's storage on LazyFS, which
drops every byte not fsync'd (or tears a write) at the cut. A short seeded run
of bench/lazyfs.py: no committed image lost, nothing broken reachable, no
event number reused. LazyFS is built from ../shared/vendor/lazyfs by
scripts/lazyfs.sh (cached); without FUSE or ../shared the test skips (fails
where CI sets TRAPD_REQUIRE_TOOLS / TRAPD_REQUIRE_SHARED)."""

import os
import sys
from pathlib import Path

from conftest import REPO, require_shared, require_tool
from requirements import missing

sys.path.insert(0, str(REPO / "bench"))
import lazyfs as lazyfs_bench  # noqa: E402


def lazyfs_or_skip() -> None:
    require_shared("vendor/lazyfs/lazyfs-a47a5ba.tar.xz")
    if not Path("/dev/fuse").exists():
        missing("/dev/fuse absent: FUSE mounts do not work here", "TRAPD_REQUIRE_TOOLS")
    require_tool("fusermount3")
    try:
        lazyfs_bench.lazyfs_binary()
    except lazyfs_bench.LazyFSUnavailable as exc:
        if exc.requirement == "build":
            raise
        missing(str(exc), "TRAPD_REQUIRE_SHARED" if exc.requirement == "shared"
                else "TRAPD_REQUIRE_TOOLS")


def test_power_cuts_that_drop_unsynced_data_lose_no_committed_image():
    lazyfs_or_skip()
    result = lazyfs_bench.powercut_on_lazyfs(cycles=10, seed=7)
    summary = {k: v for k, v in result.items() if k != "problems"}
    assert result["problems"] == [], summary
    assert result["cycles"] == 10 and result["kills"] == 10
    assert sum(result["cuts"].values()) == 10
    assert result["cuts_dropping_unsynced_data"] >= 1, summary   # the cuts really lost data
    assert result["images_committed"] > 10, summary
    assert result["images_lost"] == 0
    assert result["verify_problems"] == 0
    assert result["numbers_reused"] == 0


def test_lazyfs_drops_what_was_not_fsynced_and_keeps_what_was():
    """The premise of the power cuts above: a clear-cache loses exactly the unsynced bytes."""
    lazyfs_or_skip()
    with lazyfs_bench.mounted(cache_size="8mb") as (mount, lazyfs):
        with open(mount / "photo.jpg", "wb") as f:
            f.write(b"synced" * 1000)
            f.flush()
            os.fsync(f.fileno())
            f.write(b"lost" * 1000)
        (mount / "note.txt").write_bytes(b"never synced")
        unsynced, files = lazyfs.unsynced_report()
        lazyfs.clear_cache()
        assert (mount / "photo.jpg").read_bytes() == b"synced" * 1000
        assert (mount / "note.txt").read_bytes() == b""      # the name stays, the data goes
    assert unsynced >= 4000 + 12 and {"photo.jpg", "note.txt"} <= set(files)
    assert not lazyfs_bench.is_mounted(mount)
