"""config.yaml section `setup`: setup mode, the setup page's address and the
link between the daemon and the page (trapd/setup/, docs/setup.md).
Importable from trapd.config like every section."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from trapd.schema import Rule as _Rule
from trapd.schema import Section as _Section
from trapd.schema import flag as _flag
from trapd.schema import integer as _integer
from trapd.schema import setting as _setting


def _is_ip_address(value) -> bool:
    try:
        ipaddress.ip_address(value)
    except (TypeError, ValueError):
        return False
    return True


_ADDRESS_RULE = _Rule(
    expected="an IP address of this trap, in quotes for IPv6, e.g. 10.42.0.1 (its own "
             "Wi-Fi hotspot) or 127.0.0.1 (this machine only)",
    is_valid=_is_ip_address)
# A relative path is taken from the config file's folder (as storage.root is).
_FILE_RULE = _Rule(
    expected="a file path on one line (absolute, or relative to the config file's folder)",
    is_valid=lambda v: isinstance(v, str) and v.strip() != "" and not any(c in v for c in "\0\n"))


@dataclass(frozen=True)
class SetupConfig(_Section):
    # true: setup mode may open (at boot, by button, by `trapd setup`) and the
    # daemon serves the setup link; false: no setup page at all.
    enabled: bool = _setting(_flag(), False)
    bind_address: str = _setting(_ADDRESS_RULE, "10.42.0.1")
    port: int = _setting(_integer(1, 65535, "(TCP port)"), 8080)
    # Setup mode for this long after the daemon starts; 0 = not at boot.
    after_boot_s: int = _setting(_integer(0, 86400, "seconds"), 1800)
    # BCM pin of a push button (to ground) that opens setup mode; null = none.
    button_pin: int | None = _setting(_integer(2, 27, "(BCM GPIO number)", nullable=True), None)
    # How long a button press or `trapd setup` keeps setup mode on.
    session_s: int = _setting(_integer(60, 86400, "seconds"), 1800)
    secret_file: str = _setting(_FILE_RULE, "/var/lib/trapd/setup-secret")
    link_socket: str = _setting(_FILE_RULE, "/run/trapd/setup.sock")
