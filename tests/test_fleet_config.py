"""The fleet: section: off by default, validated like the rest of config.yaml."""

from __future__ import annotations

import pytest
import yaml

from conftest import shipped_config_dict, trapd
from trapd.config import load_config, parse_config
from trapd.errors import ConfigError


def test_fleet_is_off_in_the_shipped_config():
    config = load_config()
    assert config.fleet.enabled is False and config.fleet.sync.enabled is False
    assert config.fleet.telemetry.broker_url is None


def test_fleet_mistakes_are_reported_with_their_lines(tmp_path):
    data = shipped_config_dict()
    data["fleet"] = {"enabled": True,
                     "telemetry": {"broker_url": "tcp://broker", "max_inflight": 0},
                     "sync": {"enabled": True, "windows": ["22:00-6:00"], "part_size_mb": 1}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = trapd("check-config", path, check=False)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    for key in ("fleet.telemetry.broker_url", "fleet.telemetry.max_inflight",
                "fleet.sync.windows", "fleet.sync.part_size_mb"):
        line = next(l for l in text.splitlines() if key in l)
        assert f"{path.name}:" in line and line.split(":")[1].isdigit()


def test_tls_telemetry_needs_certificate_files():
    data = shipped_config_dict()
    data["fleet"] = {"telemetry": {"broker_url": "mqtts://broker:8883"}}
    with pytest.raises(ConfigError) as error:
        parse_config(yaml.safe_dump(data))
    assert "fleet.telemetry.key_file" in str(error.value)


def test_sync_needs_a_credentials_file():
    data = shipped_config_dict()
    data["fleet"] = {"sync": {"enabled": True}}
    with pytest.raises(ConfigError, match="fleet.sync.credentials_file"):
        parse_config(yaml.safe_dump(data))


def test_plaintext_links_are_refused_unless_allowed_and_then_warned_about(tmp_path):
    data = shipped_config_dict()
    data["fleet"] = {"enabled": True, "telemetry": {"broker_url": "mqtt://broker:1883"},
                     "sync": {"enabled": True, "endpoint_url": "http://store:8333",
                              "credentials_file": "/etc/trapd/s3.cred"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    refused = trapd("check-config", path, check=False)
    assert refused.returncode != 0
    for key, scheme in (("fleet.telemetry.broker_url", "mqtts://"), ("fleet.sync.endpoint_url", "https://")):
        line = next(l for l in refused.stdout.splitlines() if key in l)
        assert line.split(":")[1].isdigit() and scheme in line and "allow_insecure" in line

    data["fleet"]["telemetry"]["allow_insecure"] = data["fleet"]["sync"]["allow_insecure"] = True
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    allowed = trapd("check-config", path)
    warnings = [l for l in allowed.stdout.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 2 and all("not encrypted" in w for w in warnings)

