"""The process around the pipeline: signals, config reload, systemd."""

import os
import signal
import socket
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, config_dict, require_tool
from trapd.config import load_config
from trapd.daemon import Daemon, sd_notify


@pytest.fixture
def daemon_on_bench(bench, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict(tmp_path, {"burst": {"frames": 4}})))
    b = bench({"burst": {"frames": 4}})
    daemon = Daemon(str(path), load_config(path), b.trap)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    daemon.install_signal_handlers()
    yield daemon, b, path
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def run_frames(daemon, frames):
    steps = iter(range(frames))
    return daemon.run(until=lambda: next(steps, None) is None)


def test_sighup_with_a_bad_config_keeps_the_running_one(daemon_on_bench, caplog, tmp_path):
    daemon, b, path = daemon_on_bench
    for attempt in range(3):
        path.write_text(path.read_text().replace("frames: 4", "frames: many")
                        if attempt % 2 == 0 else "station: [broken\n")
        os.kill(os.getpid(), signal.SIGHUP)
        run_frames(daemon, 5)
        assert daemon.config.burst.frames == 4 and b.trap.config.burst.frames == 4
        path.write_text(yaml.safe_dump(config_dict(tmp_path, {"burst": {"frames": 4}})))
    assert caplog.text.count("config reload refused") == 3
    assert "burst.frames" in caplog.text


def test_sighup_with_a_good_config_applies_it(daemon_on_bench, tmp_path):
    daemon, b, path = daemon_on_bench
    path.write_text(yaml.safe_dump(config_dict(tmp_path, {"burst": {"frames": 7}})))
    os.kill(os.getpid(), signal.SIGHUP)
    run_frames(daemon, 5)
    assert b.trap.config.burst.frames == 7
    b.pir_pulse_at(0.2)
    run_frames(daemon, 60)
    assert len([f for f in b.events[0].frames if not f.pre_trigger]) == 7


def test_sigterm_finishes_the_event_in_flight_and_exits_0(daemon_on_bench):
    daemon, b, _ = daemon_on_bench
    run_frames(daemon, 10)
    b.pir_pulse_at(0.1)
    for _ in range(5):                  # into the burst
        b.trap.step()
    assert b.trap.in_event
    os.kill(os.getpid(), signal.SIGTERM)
    assert daemon.run() == 0
    assert not b.trap.in_event
    assert len([f for f in b.events[0].frames if not f.pre_trigger]) == 4


def test_sd_notify_sends_ready_to_the_notify_socket(tmp_path, monkeypatch):
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert sd_notify("READY=1")
        assert server.recv(64) == b"READY=1"


def test_sd_notify_without_systemd_does_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False


def test_the_unit_file_passes_systemd_analyze_verify(tmp_path):
    analyze = require_tool("systemd-analyze")
    unit = (REPO / "systemd" / "trapd.service").read_text()
    trapd_bin = os.path.join(os.path.dirname(sys.executable), "trapd")
    local = tmp_path / "trapd.service"            # same unit, ExecStart at this checkout's venv
    local.write_text(unit.replace("/opt/trapd/.venv/bin/trapd", trapd_bin))
    result = subprocess.run([analyze, "verify", "--man=no", str(local)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Type=notify" in unit and "ExecReload=" in unit


def test_work_handed_to_a_busy_loop_that_times_out_is_never_done_later(daemon_on_bench,
                                                                        monkeypatch):
    import threading
    import time

    from trapd.errors import TrapdError
    daemon, b, _ = daemon_on_bench
    real_step = b.trap.step

    def slow_step():            # an event keeping the loop busy for a while
        time.sleep(0.3)
        real_step()

    monkeypatch.setattr(b.trap, "step", slow_step)
    stop = threading.Event()
    loop = threading.Thread(target=daemon.run, kwargs={"until": stop.is_set}, daemon=True)
    loop.start()
    try:
        while not daemon._looping:
            time.sleep(0.01)
        done = []
        with pytest.raises(TrapdError, match="nothing was done"):
            daemon.in_loop(lambda: done.append("ended the deployment"), wait_s=0.05)
        assert daemon.in_loop(lambda: "next", wait_s=10) == "next"   # the loop went round
        assert done == []
    finally:
        stop.set()
        loop.join(30)
