"""Honest time: clock sync state and wall-clock jumps recorded per event, a
sim with an unsynchronised clock stepped back a day, and `trapd retime`."""

import csv
import datetime as dt
import hashlib
import sqlite3
import subprocess
import sys

import pytest

from conftest import NS, camtrap_validator, trapd
from trapd.moon import moon_phase
from trapd.timekeeping import WallClockWatch, parse_shift


def utc_ns(*ymdhm):
    return int(dt.datetime(*ymdhm, tzinfo=dt.timezone.utc).timestamp()) * NS


def test_a_wall_clock_step_is_seen_and_slewing_is_not():
    watch = WallClockWatch()
    assert watch.observe(0, 1_000 * NS) == 0
    assert watch.observe(NS // 10, 1_000 * NS + NS // 10 + 50_000) == 0      # 0.5 ms/s slew
    assert watch.observe(2 * NS // 10, 1_000 * NS - 86_400 * NS) == pytest.approx(-86_400 * NS,
                                                                                   abs=NS)
    assert watch.observe(3 * NS // 10, 1_000 * NS - 86_400 * NS + NS // 10) == 0


@pytest.mark.parametrize("text, seconds", [("+1d2h", 93_600), ("-86400s", -86_400),
                                           ("-30m", -1_800), ("+01:30:00", 5_400)])
def test_shift_durations(text, seconds):
    assert parse_shift(text) == seconds * NS


@pytest.mark.parametrize("text", ["1h", "+", "+1x", "+1:70", ""])
def test_a_malformed_shift_is_refused_with_the_accepted_forms(text):
    with pytest.raises(ValueError, match=r"\+1h"):
        parse_shift(text)


@pytest.mark.parametrize("when, phase", [((2024, 1, 25, 17, 54), "Full"),
                                         ((2024, 1, 11, 11, 57), "New"),
                                         ((2024, 1, 18, 3, 53), "First Quarter"),
                                         ((2024, 2, 2, 23, 18), "Last Quarter")])
def test_moon_phase_on_published_dates(when, phase):
    assert moon_phase(utc_ns(*when)).name == phase


def test_a_trap_on_an_unsynchronised_clock_records_it_per_event(bench):
    b = bench()
    b.clock.synchronised = False
    b.pir_pulse_at(1.0)
    b.run_for(6)
    b.clock.step_wall(3600 * NS, synchronised=True)       # NTP's first sync
    b.pir_pulse_at(1.0)
    b.run_for(6)
    rows = b.trap.store._db.execute(
        "SELECT clock_synced, wall_jump_ns FROM events ORDER BY number").fetchall()
    assert rows[0] == (0, 0)
    assert rows[1][0] == 1 and rows[1][1] == pytest.approx(3600 * NS, abs=NS)


# --- the must-show: unsynchronised clock stepped back a day mid-run ---------
@pytest.fixture(scope="module")
def unsynced(sim_queue, tmp_path_factory):
    sim = sim_queue("unsynced-clock")
    package = tmp_path_factory.mktemp("unsynced") / "package"
    trapd("export", "--camtrap-dp", package, "--storage", sim["storage"])
    return sim, package


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_jump_and_the_unsynced_clock_are_in_the_index(unsynced):
    sim, _ = unsynced
    db = sqlite3.connect(sim["storage"] / "queue.db")
    events = db.execute("SELECT number, trigger_monotonic_ns, trigger_wall_ns, clock_synced,"
                        " wall_jump_ns FROM events ORDER BY number").fetchall()
    assert len(events) >= 3
    assert all(e[3] == 0 for e in events)
    jumps = [e[4] for e in events if e[4]]
    assert jumps == [pytest.approx(-86_400 * NS, abs=NS)]
    # event numbers follow real (monotonic) order although wall time went back a day
    assert [e[1] for e in events] == sorted(e[1] for e in events)
    assert any(later[2] < earlier[2] for earlier, later in zip(events, events[1:]))


def test_no_file_name_collides_through_the_jump(unsynced):
    sim, _ = unsynced
    names = [p.name for p in (sim["storage"] / "images").rglob("*.jpg")]
    assert len(names) == len(set(names)) == sim["report"]["summary"]["images_stored"]


def test_the_export_says_timestamp_issues_and_keeps_capture_order(unsynced):
    _, package = unsynced
    [deployment] = rows(package / "deployments.csv")
    assert deployment["timestampIssues"] == "true"
    assert "-24:00:00" in deployment["deploymentComments"]
    media = rows(package / "media.csv")
    events = [m["fileName"].split("_E")[1][:6] for m in media]
    assert events == sorted(events)                    # capture order ...
    stamps = [m["timestamp"] for m in media]
    assert stamps != sorted(stamps)                    # ... which the wall clock contradicts
    result = subprocess.run([sys.executable, str(camtrap_validator()), str(package),
                             "--strict", "--check-media"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_retime_shifts_the_package_and_leaves_the_images_alone(unsynced, tmp_path):
    import shutil
    _, original = unsynced
    package = shutil.copytree(original, tmp_path / "package")
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
               for p in (package / "media").iterdir()}
    before = rows(package / "media.csv")
    trapd("retime", "--shift=+1d", package)
    after = rows(package / "media.csv")
    for old, new in zip(before, after):
        assert dt.datetime.fromisoformat(new["timestamp"]) - \
            dt.datetime.fromisoformat(old["timestamp"]) == dt.timedelta(days=1)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (package / "media").iterdir()} == digests
    assert "shifted +24:00:00" in rows(package / "deployments.csv")[0]["deploymentComments"]
    result = subprocess.run([sys.executable, str(camtrap_validator()), str(package),
                             "--strict", "--check-media"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_export_shift_option_moves_times_too(sim_queue, tmp_path):
    storage = sim_queue("unsynced-clock")["storage"]
    trapd("export", "--camtrap-dp", tmp_path / "a", "--storage", storage)
    trapd("export", "--camtrap-dp", tmp_path / "b", "--shift=-01:00:00", "--storage", storage)
    a, b = rows(tmp_path / "a" / "media.csv"), rows(tmp_path / "b" / "media.csv")
    assert [dt.datetime.fromisoformat(x["timestamp"]) - dt.datetime.fromisoformat(y["timestamp"])
            for x, y in zip(a, b)] == [dt.timedelta(hours=1)] * len(a)
