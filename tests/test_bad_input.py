"""Bad input a trap meets in the field: broken configs sent with SIGHUP, a
wall clock stepping a day back and forward, and the promises around it
(private files, no network socket)."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import NS, REPO, config_dict
from trapd.config import load_config
from trapd.daemon import Daemon

DAY_NS = 86_400 * NS

BAD_CONFIGS = [
    "station: [broken\n",                                   # YAML syntax
    "",                                                     # empty file
    "\x00\x01binary",                                       # not text
    None,                                                   # file deleted
    {"burst": {"frames": "many"}},                          # wrong type
    {"burst": {"framez": 5}},                               # unknown key
    {"station": {"station_id": "../../etc"}},               # a path in a file name
    {"storage": {"jpeg_quality": 300}},                     # out of range
    {"hardware": {"camera": {"buffer_count": 2}}},          # cross-field: pre-trigger frames
]


def write_bad(path: Path, tmp_path: Path, bad) -> None:
    if bad is None:
        path.unlink(missing_ok=True)
    elif isinstance(bad, str):
        path.write_text(bad)
    else:
        path.write_text(yaml.safe_dump(config_dict(tmp_path, {"burst": {"frames": 4}} | bad)))


def test_repeated_sighup_with_bad_configs_keeps_the_running_config(bench, tmp_path, caplog):
    path = tmp_path / "config.yaml"
    good = yaml.safe_dump(config_dict(tmp_path, {"burst": {"frames": 4},
                                                 "filter": {"enabled": False}}))
    path.write_text(good)
    b = bench({"burst": {"frames": 4}, "filter": {"enabled": False}})
    daemon = Daemon(str(path), load_config(path), b.trap)
    running = daemon.config
    previous = signal.signal(signal.SIGHUP, daemon.request_reload)
    try:
        for _ in range(2):
            for bad in BAD_CONFIGS:
                write_bad(path, tmp_path, bad)
                os.kill(os.getpid(), signal.SIGHUP)
                steps = iter(range(3))
                daemon.run(until=lambda: next(steps, None) is None)
                assert daemon.config is running and b.trap.config.burst.frames == 4
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert caplog.text.count("config reload refused") == 2 * len(BAD_CONFIGS)
    assert "station.station_id" in caplog.text and "burst.frames" in caplog.text
    b.pir_pulse_at(0.2)                       # still trapping with the running config
    b.run_for(5)
    assert len([f for f in b.events[-1].frames if not f.pre_trigger and f.file]) == 4


def test_a_wall_clock_a_day_back_then_forward_keeps_names_unique_and_order(bench):
    b = bench({"filter": {"enabled": False}, "burst": {"frames": 3, "interval_s": 0.3}})
    b.run_for(1)
    for step_ns in (0, -DAY_NS, 2 * DAY_NS, -DAY_NS):    # back a day, forward, back to start
        b.clock.step_wall(step_ns)
        b.pir_pulse_at(0.1)
        b.run_for(3)
    store = b.trap.store
    rows = store.saved_frames(("pending",))
    files = [r["file"] for r in rows]
    assert len(files) == len(set(files)) == sum(len(e.frames) for e in b.events)
    assert store.verify() == []
    numbers = [r["event_number"] for r in rows]
    assert numbers == sorted(numbers)
    sensor_times = [r["sensor_timestamp_ns"] for r in rows]
    assert sensor_times == sorted(sensor_times)   # event-number order is capture order
    wall_times = [r["capture_wall_ns"] for r in rows]
    assert wall_times != sorted(wall_times)       # ... even though the wall clock went back
    jumps = [j for (j,) in store._db.execute("SELECT wall_jump_ns FROM events ORDER BY number")]
    assert jumps[1] == -DAY_NS and jumps[2] == 2 * DAY_NS


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def network_inodes(pid: int) -> set[str]:
    """Inodes of the process's IP sockets (TCP, UDP, raw; v4 and v6)."""
    inodes = set()
    for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udplite", "udplite6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                inodes.add(line.split()[9])
    return inodes


def test_the_running_daemon_opens_no_network_socket_and_keeps_its_files_private(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_dict(tmp_path, {"filter": {"enabled": False}})))
    storage = tmp_path / "storage"
    log = tmp_path / "trapd.log"
    with open(log, "w") as stderr:
        trap = subprocess.Popen([sys.executable, "-m", "trapd.cli", "sim", "default", "--config",
                                 str(config), "--storage", str(storage), "--realtime"],
                                stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO)
    try:
        seen = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(storage.rglob("*.jpg")):
            assert trap.poll() is None, log.read_text()
            sockets = socket_inodes(trap.pid)
            seen |= sockets
            assert not sockets & network_inodes(trap.pid), "an IP socket is open"
            time.sleep(0.1)
        assert list(storage.rglob("*.jpg")), "no image saved within 60 s"
        sockets = socket_inodes(trap.pid)
        assert not (sockets | seen) & network_inodes(trap.pid)
        unix = Path("/proc/net/unix").read_text()
        assert all(inode in unix.split() for inode in sockets), "a socket that is not AF_UNIX"
    finally:
        trap.kill()
        trap.wait(timeout=60)
    for path in [storage, *storage.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        expected = 0o750 if path.is_dir() else 0o640
        assert mode & ~expected == 0, f"{path.relative_to(tmp_path)} is {oct(mode)}"
