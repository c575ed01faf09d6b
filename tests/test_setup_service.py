"""systemd/trapd-setup.service: the setup page's own hardening, measured by
`systemd-analyze security` and kept there by this test (docs/setup.md)."""

import os
import re
import subprocess
import sys

from conftest import REPO, require_tool

UNIT = REPO / "systemd" / "trapd-setup.service"
VENV_TRAPD = os.path.join(os.path.dirname(sys.executable), "trapd")
# Measured with systemd 252 (Debian 12), documented in docs/setup.md.
EXPOSURE_LIMIT = 1.0


def unit_lines() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_setup_unit_exposure_is_at_most_1_0(tmp_path):
    analyze = require_tool("systemd-analyze")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/trapd/.venv/bin/trapd", VENV_TRAPD))
    result = subprocess.run([analyze, "security", "--offline=true", str(unit)],
                            capture_output=True, text=True)
    found = re.search(r"Overall exposure level for trapd-setup.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= EXPOSURE_LIMIT, result.stdout


def test_the_setup_page_reaches_no_device_and_writes_only_the_config_folder():
    unit = unit_lines()
    assert unit["PrivateDevices"] == ["yes"] and "DeviceAllow" not in unit
    assert unit["ProtectSystem"] == ["strict"] and unit["ReadWritePaths"] == ["/etc/trapd"]
    assert unit["CapabilityBoundingSet"] == [""] and unit["NoNewPrivileges"] == ["yes"]
    assert "SupplementaryGroups" not in unit            # not in video or gpio


def test_the_setup_page_talks_only_to_the_link_this_machine_and_the_hotspot():
    unit = unit_lines()
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert unit["IPAddressDeny"] == ["any"]
    assert unit["IPAddressAllow"] == ["localhost 10.42.0.0/24"]
    assert unit["ExecStart"][0].endswith("trapd setup-page --config /etc/trapd/config.yaml")
