"""trapd as a systemd service: the unit passes systemd's own checks, the
watchdog is fed only while frames arrive, the install script stages a unit
that verifies."""

import os
import re
from pathlib import Path
import socket
import subprocess
import sys

import pytest

from conftest import REPO, require_tool
from trapd.daemon import Daemon
from trapd.health import CAMERA_UNAVAILABLE
from trapd.watchdog import watchdog_interval_ns

VENV_TRAPD = os.path.join(os.path.dirname(sys.executable), "trapd")
UNITS = sorted((REPO / "systemd").glob("*.service"))


def local_unit(unit, tmp_path):
    """The unit with ExecStart at this checkout's venv (verify checks the binary exists)."""
    local = tmp_path / unit.name
    local.write_text(unit.read_text().replace("/opt/trapd/.venv/bin/trapd", VENV_TRAPD))
    return local


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_every_unit_passes_systemd_analyze_verify(unit, tmp_path):
    analyze = require_tool("systemd-analyze")
    result = subprocess.run([analyze, "verify", "--man=no", str(local_unit(unit, tmp_path))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_service_exposure_is_at_most_2(tmp_path):
    analyze = require_tool("systemd-analyze")
    unit = local_unit(REPO / "systemd" / "trapd.service", tmp_path)
    result = subprocess.run([analyze, "security", "--offline=true", str(unit)],
                            capture_output=True, text=True)
    found = re.search(r"Overall exposure level for trapd.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout


def test_the_hardening_keeps_camera_and_gpio_devices_reachable():
    unit = (REPO / "systemd" / "trapd.service").read_text()
    for device in ("char-gpiochip", "char-video4linux", "char-media", "char-dma_heap"):
        assert f"DeviceAllow={device} rw" in unit
    assert not re.search(r"^PrivateDevices=yes", unit, re.M) and "SupplementaryGroups=video gpio" in unit
    assert re.search(r"^WatchdogSec=\d+", unit, re.M) and "Restart=on-failure" in unit


def test_systemd_never_gives_up_on_the_trap_nor_reboots_it():
    """A reboot heals neither a corrupt card nor a dead camera: the restart
    policy decided in docs/reliability.md, "Restart policy"."""
    unit = (REPO / "systemd" / "trapd.service").read_text()   # verify checks it (above)
    assert re.search(r"^StartLimitIntervalSec=0$", unit, re.M)
    assert not re.search(r"^(StartLimitAction|FailureAction)=", unit, re.M)
    assert re.search(r"^RestartPreventExitStatus=2$", unit, re.M)


def test_watchdog_usec_for_another_pid_is_ignored():
    assert watchdog_interval_ns({"WATCHDOG_USEC": "4000000"}) == 4_000_000_000
    assert watchdog_interval_ns({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval_ns({"WATCHDOG_USEC": "nonsense"}) is None
    assert watchdog_interval_ns({}) is None


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        monkeypatch.setenv("WATCHDOG_USEC", "2000000")      # WatchdogSec=2
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield server


def received(server) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(server.recv(256).decode())
        except BlockingIOError:
            return messages


def run_and_listen(daemon, clock, server, seconds) -> list[str]:
    """Run the daemon for `seconds` of virtual time, reading the socket every
    second as systemd would (a datagram socket queues only ~10 messages)."""
    messages = []
    for _ in range(seconds):
        end = clock.monotonic_ns() + 1_000_000_000
        daemon.run(until=lambda: clock.monotonic_ns() >= end)
        messages += received(server)
    return messages


def test_watchdog_pings_while_frames_arrive_and_stop_when_the_camera_hangs(bench, notify_socket,
                                                                           caplog):
    b = bench()
    daemon = Daemon(None, b.config, b.trap)
    healthy = run_and_listen(daemon, b.clock, notify_socket, 10)
    assert healthy[0] == "READY=1"
    assert 9 <= healthy.count("WATCHDOG=1") <= 11          # every 1 s of 10 (half of 2 s)
    b.rig.hang()                                            # libcamera stops delivering
    hung = run_and_listen(daemon, b.clock, notify_socket, 30)
    assert hung.count("WATCHDOG=1") <= 1                    # so systemd restarts us within 2 s
    assert b.trap.store.health.is_set(CAMERA_UNAVAILABLE)   # (the camera's back-off goes on)
    assert caplog.text.count("not pinging systemd") == 1    # said once, not every tick
    b.rig.clear_faults()
    # Frames again at the camera's next attempt (its back-off had reached 16 s): fed again.
    recovered = run_and_listen(daemon, b.clock, notify_socket, 25)
    assert recovered.count("WATCHDOG=1") >= 5
    assert not b.trap.store.health.is_set(CAMERA_UNAVAILABLE)


def test_install_script_stages_a_unit_that_verifies_and_a_valid_config(tmp_path):
    analyze = require_tool("systemd-analyze")
    env = dict(os.environ, DESTDIR=str(tmp_path), PREFIX=str(REPO))
    venv_bin = os.path.dirname(sys.executable)
    if not VENV_TRAPD.startswith(str(REPO)):
        pytest.skip("the venv is not inside the checkout")
    install = subprocess.run([REPO / "scripts" / "install.sh"], env=env, capture_output=True,
                             text=True)
    assert install.returncode == 0, install.stderr
    assert "useradd" in install.stdout and "video,gpio" in install.stdout
    unit = tmp_path / "etc/systemd/system/trapd.service"
    config = tmp_path / "etc/trapd/config.yaml"
    verify = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                            text=True)
    assert verify.returncode == 0, verify.stderr
    assert oct(config.stat().st_mode & 0o777) == oct(0o640)
    check = subprocess.run([os.path.join(venv_bin, "trapd"), "check-config", str(config)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "root: /var/lib/trapd" in config.read_text()
    removed = subprocess.run([REPO / "scripts" / "install.sh", "--uninstall"], env=env,
                             capture_output=True, text=True)
    assert removed.returncode == 0 and not unit.exists() and config.exists()


def test_sd_notify_reaches_an_abstract_namespace_socket(monkeypatch):
    from trapd.daemon import sd_notify
    name = f"trapd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)       # as systemd passes it
        assert sd_notify("WATCHDOG=1")
        assert server.recv(64) == b"WATCHDOG=1"


def test_the_fleet_drop_in_opens_ip_and_still_passes_verify(tmp_path):
    """With fleet.enabled the uploader needs IP: the drop-in adds it, nothing else."""
    analyze = require_tool("systemd-analyze")
    drop_in = (REPO / "systemd" / "trapd.service.d" / "fleet.conf").read_text()
    assert "AF_INET AF_INET6" in drop_in and "IPAddressAllow=" in drop_in
    unit = local_unit(REPO / "systemd" / "trapd.service", tmp_path)
    unit.write_text(unit.read_text() + "\n" + drop_in)     # as systemd merges a drop-in
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_install_with_fleet_stages_the_drop_in(tmp_path):
    subprocess.run(["sh", str(REPO / "scripts" / "install.sh")], check=True, capture_output=True,
                   env={**os.environ, "DESTDIR": str(tmp_path), "FLEET": "1"})
    staged = tmp_path / "etc/systemd/system/trapd.service.d/fleet.conf"
    assert staged.read_text() == (REPO / "systemd" / "trapd.service.d" / "fleet.conf").read_text()


def security_report(unit: Path) -> tuple[set[str], float]:
    """systemd-analyze security's failed checks (e.g. 'ProtectClock=') and overall exposure."""
    result = subprocess.run([require_tool("systemd-analyze"), "security", "--offline=true", str(unit)],
                            capture_output=True, text=True)
    failed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("✗")}
    found = re.search(r"Overall exposure level for [\w.-]+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout[-400:] + result.stderr
    return failed, float(found.group(1))


def test_the_setup_drop_in_adds_only_the_clock_and_keeps_exposure_at_most_2(tmp_path):
    """With setup.enabled the daemon sets the clock from the page: the drop-in allows
    exactly that (CAP_SYS_TIME, the clock calls), and the unit still verifies."""
    (tmp_path / "base").mkdir()
    base_failed, base_exposure = security_report(
        local_unit(REPO / "systemd" / "trapd.service", tmp_path / "base"))
    unit = local_unit(REPO / "systemd" / "trapd.service", tmp_path)
    unit.write_text(unit.read_text() + "\n" + (REPO / "systemd" / "trapd.service.d" / "setup.conf").read_text())
    verify = subprocess.run([require_tool("systemd-analyze"), "verify", "--man=no", str(unit)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    failed, exposure = security_report(unit)
    # @clock is part of @privileged, and the capability is ambient: both are the clock too.
    assert failed - base_failed == {"ProtectClock=", "CapabilityBoundingSet=~CAP_SYS_TIME",
                                    "AmbientCapabilities=", "SystemCallFilter=~@clock",
                                    "SystemCallFilter=~@privileged"}
    assert base_exposure < exposure <= 2.0


def test_install_with_setup_stages_the_page_unit_and_the_clock_drop_in(tmp_path):
    subprocess.run(["sh", str(REPO / "scripts" / "install.sh")], check=True, capture_output=True,
                   env={**os.environ, "DESTDIR": str(tmp_path), "SETUP": "1", "PREFIX": "/srv/trapd"})
    systemd_dir = tmp_path / "etc/systemd/system"
    assert (systemd_dir / "trapd.service.d/setup.conf").read_text() == \
        (REPO / "systemd" / "trapd.service.d" / "setup.conf").read_text()
    page_unit = (systemd_dir / "trapd-setup.service").read_text()
    assert "ExecStart=/srv/trapd/.venv/bin/trapd setup-page" in page_unit
    assert not (systemd_dir / "trapd.service.d/fleet.conf").exists()
