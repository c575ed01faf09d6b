"""Secrets and identity: files readable by their owner only, and a sane clock for TLS.

Secrets never come from config.yaml and are never logged: config names the
files; this module checks their permissions (no group or other bits, i.e.
0600 or 0400) and reads them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trapd.errors import TrapdError
from trapd.timekeeping import kernel_clock_synchronised


class FleetError(TrapdError):
    """A fleet link cannot be set up; the message says what to fix."""


def check_private(path: str | os.PathLike) -> Path:
    """`path` if it exists and only its owner may read it, else FleetError."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise FleetError(f"secret file {path}: {exc.strerror}") from exc
    if stat.S_IMODE(mode) & 0o077:
        raise FleetError(f"secret file {path} is readable by others (mode "
                         f"{stat.S_IMODE(mode):04o}); run: chmod 600 {path}")
    return path


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never show the secret in logs or tracebacks
        return f"S3Credentials(access_key_id={self.access_key_id!r}, secret_access_key=***)"


def read_s3_credentials(path: str | os.PathLike) -> S3Credentials:
    """A 0600 file of `key = value` lines: aws_access_key_id, aws_secret_access_key."""
    values = {}
    for line in check_private(path).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    missing = [k for k in ("aws_access_key_id", "aws_secret_access_key") if not values.get(k)]
    if missing:
        raise FleetError(f"S3 credentials file {path}: missing {', '.join(missing)}")
    return S3Credentials(values["aws_access_key_id"], values["aws_secret_access_key"])


def require_synchronised_clock(is_synced: Callable[[], bool | None] = kernel_clock_synchronised,
                               what: str = "TLS") -> None:
    """FleetError unless the kernel says the clock is disciplined (None = unknown passes)."""
    if is_synced() is False:
        raise FleetError(
            f"{what} not started: the system clock is not synchronised, so certificate "
            "validity dates cannot be checked (a Pi without RTC starts at its last saved "
            "time). Fit an RTC or GPS, or let NTP sync, then retry.")


def certificate_name(cert_file: str | os.PathLike) -> str:
    """The subject common name of a PEM certificate ("" if it has none)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        certificate = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except OSError as exc:
        raise FleetError(f"certificate {cert_file}: {exc.strerror}") from None
    except ValueError:
        raise FleetError(f"certificate {cert_file}: not a PEM certificate") from None
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def require_identity(cert_file: str | os.PathLike, station_id: str) -> None:
    """FleetError unless the certificate names this station: the broker binds the
    client id and topics to the certificate's name, so any other name would see
    every message refused."""
    name = certificate_name(cert_file)
    if name != station_id:
        raise FleetError(f"certificate {cert_file} is issued to {name!r}, not to this station "
                         f"{station_id!r}: the broker would refuse every message; issue one with "
                         f"CN={station_id} (docs/fleet.md) or correct station.station_id")
