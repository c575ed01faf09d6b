"""config.yaml section `fleet`: telemetry (MQTT) and image sync (S3); see
trapd/fleet/ and docs/fleet.md. Importable from trapd.config like every section."""

from __future__ import annotations

import re
from dataclasses import dataclass

from trapd.schema import Problem
from trapd.schema import Rule as _Rule
from trapd.schema import Section as _Section
from trapd.schema import flag as _flag
from trapd.schema import integer as _integer
from trapd.schema import number as _number
from trapd.schema import section as _section
from trapd.schema import setting as _setting
from trapd.schema import text as _text

_WINDOW_PATTERN = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")
_PATH_OR_NULL = _Rule(expected="an absolute file path, or null",
                      is_valid=lambda v: isinstance(v, str) and v.startswith("/") and "\0" not in v,
                      nullable=True)
_URL_OR_NULL = lambda schemes: _Rule(  # noqa: E731
    expected=f"a URL starting with {' or '.join(s + '://' for s in schemes)}, or null",
    is_valid=lambda v: isinstance(v, str) and any(v.startswith(s + "://") and len(v) > len(s) + 3
                                                  for s in schemes),
    nullable=True)
_WINDOWS_RULE = _Rule(
    expected="a list of local-time windows 'HH:MM-HH:MM' in quotes, e.g. ['22:00-06:00']; "
             "[] = any time",
    is_valid=lambda v: isinstance(v, list) and all(
        isinstance(w, str) and _WINDOW_PATTERN.fullmatch(w) for w in v),
    convert=tuple)
_NAME_RULE = _text(r"[A-Za-z0-9._-]{1,64}", "1-64 letters, digits, '.', '_' or '-'")


@dataclass(frozen=True)
class TelemetryConfig(_Section):
    # mqtts://host:8883 (TLS with this trap's client certificate); null = no telemetry.
    broker_url: str | None = _setting(_URL_OR_NULL(("mqtts", "mqtt")), None)
    ca_file: str | None = _setting(_PATH_OR_NULL, None)
    cert_file: str | None = _setting(_PATH_OR_NULL, None)
    # Private key, mode 0600.
    key_file: str | None = _setting(_PATH_OR_NULL, None)
    heartbeat_interval_s: int = _setting(_integer(10, 86400, "seconds"), 900)
    max_inflight: int = _setting(_integer(1, 100, "messages"), 10)
    # true lets broker_url be mqtt:// (no TLS: telemetry and identity in clear text).
    allow_insecure: bool = _setting(_flag(), False)

    def validate(self) -> list[Problem]:
        if self.broker_url and self.broker_url.startswith("mqtts://"):
            return [Problem(name, None, None, "a file path: mqtts:// needs the CA, this trap's "
                            "certificate and its key") for name in ("ca_file", "cert_file", "key_file")
                    if getattr(self, name) is None]
        return _plaintext("broker_url", self.broker_url, "mqtt", self.allow_insecure)


@dataclass(frozen=True)
class SyncConfig(_Section):
    enabled: bool = _setting(_flag(), False)
    # S3 endpoint, e.g. https://store.station.lan:8333; null = AWS S3.
    endpoint_url: str | None = _setting(_URL_OR_NULL(("https", "http")), None)
    bucket: str = _setting(_text(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name"),
                           "camtrap-raw")
    region: str = _setting(_NAME_RULE, "us-east-1")
    # File (mode 0600) with aws_access_key_id = ... and aws_secret_access_key = ... lines.
    credentials_file: str | None = _setting(_PATH_OR_NULL, None)
    ca_file: str | None = _setting(_PATH_OR_NULL, None)
    multipart_threshold_mb: int = _setting(_integer(5, 4096, "MB"), 8)
    part_size_mb: int = _setting(_integer(5, 4096, "MB"), 8)
    # Megabytes sent per local day; null = no limit.
    daily_budget_mb: float | None = _setting(_number(0, 1_000_000, "MB", nullable=True), None)
    windows: tuple = _setting(_WINDOWS_RULE, ())
    # Stop syncing below this battery voltage; null = never stop for the battery.
    min_battery_v: float | None = _setting(_number(0, 60, "volts", nullable=True), None)
    interval_s: int = _setting(_integer(10, 86400, "seconds"), 300)
    # true lets endpoint_url be http:// (no TLS: images and signed requests in clear text).
    allow_insecure: bool = _setting(_flag(), False)

    def validate(self) -> list[Problem]:
        problems = _plaintext("endpoint_url", self.endpoint_url, "http", self.allow_insecure)
        if self.enabled and self.credentials_file is None:
            problems.append(Problem("credentials_file", None, None, "a file path when sync is enabled"))
        return problems


def _plaintext(key: str, url: str | None, scheme: str, allowed: bool) -> list[Problem]:
    """A clear-text URL is a mistake unless allow_insecure says it is meant."""
    if url is None or not url.startswith(scheme + "://") or allowed:
        return []
    return [Problem(key, None, url, f"a {scheme}s:// URL (TLS): {scheme}:// sends everything in "
                    f"clear text; set allow_insecure: true beside it only on a closed test network")]


def insecure_links(fleet: "FleetConfig") -> list[str]:
    """The clear-text links allow_insecure lets through, for check-config's warnings."""
    if not fleet.enabled:
        return []
    found = []
    if fleet.telemetry.broker_url and fleet.telemetry.broker_url.startswith("mqtt://"):
        found.append(f"fleet.telemetry.broker_url {fleet.telemetry.broker_url}")
    if fleet.sync.enabled and fleet.sync.endpoint_url and fleet.sync.endpoint_url.startswith("http://"):
        found.append(f"fleet.sync.endpoint_url {fleet.sync.endpoint_url}")
    return found


@dataclass(frozen=True)
class FleetConfig(_Section):
    enabled: bool = _setting(_flag(), False)
    # First part of every object key: <project>/<station>/<deployment>/<YYYY>/<MM>/<DD>/<file>.
    project: str = _setting(_NAME_RULE, "camtrap")
    telemetry: TelemetryConfig = _section(TelemetryConfig)
    sync: SyncConfig = _section(SyncConfig)
