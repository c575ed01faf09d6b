"""`trapd check-config`: every problem in a config file, or OK, a summary the
technician can check against the station, and warnings about settings that
are valid but would lose photos (a storage root in RAM)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from trapd.config import DEFAULT_CONFIG_PATH, Config, load_config_lines
from trapd.config_fleet import insecure_links
from trapd.errors import ConfigError, StorageError

MOUNTINFO = Path("/proc/self/mountinfo")
# File systems that live in memory: whatever is written there is gone at reboot.
MEMORY_FILESYSTEMS = ("tmpfs", "ramfs")


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def _mounts(mountinfo: str) -> list[Mount]:
    mounts = []
    for line in mountinfo.splitlines():
        before, separator, after = line.partition(" - ")
        fields, fs_fields = before.split(), after.split()
        if separator and len(fields) >= 5 and fs_fields:
            mounts.append(Mount(_unescape(fields[4]), fs_fields[0]))
    return mounts


def _nearest_existing(path: str) -> str:
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    return os.path.realpath(existing)


def mount_of(path: str, mountinfo: str | None = None) -> Mount | None:
    """The mount holding `path`, or the nearest of its ancestors that exists
    (a root not made yet is made there). None if /proc cannot be read."""
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text()
        except OSError:
            return None
    where = _nearest_existing(path)
    best, best_length = None, -1
    for mount in _mounts(mountinfo):   # a later line is mounted over an earlier one
        prefix = mount.point.rstrip("/")
        inside = where == mount.point or where.startswith(prefix + "/")
        if inside and len(prefix) >= best_length:
            best, best_length = mount, len(prefix)
    return best


def storage_warnings(config: Config, line: int | None = None, source: str = "",
                     mountinfo: str | None = None) -> list[str]:
    """Valid settings that would still lose photos; [] when there are none."""
    root = config.storage.root
    mount = mount_of(root, mountinfo)
    if mount is None or mount.fstype not in MEMORY_FILESYSTEMS:
        return []
    where = f"{source}:{line}: " if source and line else f"{source}: " if source else ""
    return [f"warning: {where}storage.root {root} is on {mount.fstype} (memory, mounted at "
            f"{mount.point}): photos saved there are lost at every reboot or power cut; "
            "choose a folder on the SD card or a drive, e.g. /var/lib/trapd"]


def _gpio_text(pin: int | None) -> str:
    return "none" if pin is None else f"GPIO {pin}"


def config_summary(cfg: Config) -> str:
    """A few lines a technician can check against the station in front of them."""
    station, location, hardware = cfg.station, cfg.station.location, cfg.hardware
    camera, burst, storage = hardware.camera, cfg.burst, cfg.storage
    elevation = "not set" if location.elevation_m is None else f"{location.elevation_m:g} m"
    return "\n".join(
        [
            f"station {station.station_id}, deployment {station.deployment_id}, "
            f"owner {station.owner or 'not set'}",
            f"location {location.latitude}, {location.longitude} (±{location.uncertainty_m} m), "
            f"elevation {elevation}, UTC offset {cfg.time.utc_offset}",
            f"PIR on {_gpio_text(hardware.pir_pin)}, IR lamp {_gpio_text(hardware.ir_lamp_pin)}, "
            f"status LED {_gpio_text(hardware.status_led_pin)}",
            f"camera main {camera.main_size[0]}x{camera.main_size[1]}, "
            f"lores {camera.lores_size[0]}x{camera.lores_size[1]}, {camera.frame_rate:g} fps, "
            f"rotation {camera.rotation_deg}°",
            f"burst {burst.frames} frames every {burst.interval_s:g} s, "
            f"{burst.pre_trigger_frames} pre-trigger frames",
            f"storage {storage.root} (keep {storage.min_free_mb} MB free)",
        ]
    )


def deployment_on_card(config: Config) -> str:
    """Whether this config's deployment is open on the card at storage.root, read only."""
    from trapd.deployments import deployment_record, recorded_deployments
    from trapd.storage import DB_NAME, Store

    deployment_id = config.station.deployment_id
    root = Path(config.storage.root)
    if not (root / DB_NAME).exists():
        return f"deployment {deployment_id}: new (no queue at {root} yet; starts when trapd runs)"
    try:
        store = Store(root, config.storage.min_free_mb, recover=False)
    except (StorageError, sqlite3.Error) as exc:
        return f"deployment {deployment_id}: the queue at {root} cannot be read ({exc})"
    try:
        record = deployment_record(store, deployment_id)
        others = [d for d in recorded_deployments(store) if d != deployment_id]
    finally:
        store.close()
    if record is None:
        text = f"deployment {deployment_id}: new on this card (starts when trapd runs)"
    elif record.end_kind:
        text = (f"deployment {deployment_id}: ENDED ({record.end_kind}) on this card: give a "
                "new station.deployment_id for a new deployment")
    else:
        text = f"deployment {deployment_id}: open on this card"
    return text + (f"; earlier on this card: {', '.join(others)}" if others else "")


def identity_problem(config: Config, line: int | None, source: str) -> str | None:
    """The telemetry certificate names another station (or cannot be read), when
    the fleet would use it; None when it is this station's."""
    telemetry = config.fleet.telemetry
    if not (config.fleet.enabled and telemetry.cert_file and telemetry.broker_url
            and telemetry.broker_url.startswith("mqtts://")):
        return None
    from trapd.fleet.secrets import FleetError, require_identity
    try:
        require_identity(telemetry.cert_file, config.station.station_id)
    except FleetError as exc:
        where = f"{source}:{line}" if line else source
        return f"{where}: fleet.telemetry.cert_file: {exc}"
    return None


def check_config_main(path: str | None) -> int:
    """`trapd check-config [PATH]`: print every problem, or OK and a summary
    (and any warnings: exit 0 all the same)."""
    shown = str(DEFAULT_CONFIG_PATH) if path is None else path
    try:
        config, key_lines = load_config_lines(path)
    except ConfigError as error:
        for problem in error.problems:
            print(problem)
        print(f"{len(error.problems)} problem(s) in {shown}")
        return 1
    mismatch = identity_problem(config, key_lines.get("fleet.telemetry.cert_file"), shown)
    if mismatch:
        print(mismatch)
        print(f"1 problem(s) in {shown}")
        return 1
    print(f"{shown}: OK")
    print(config_summary(config))
    print(deployment_on_card(config))
    for warning in storage_warnings(config, key_lines.get("storage.root"), shown):
        print(warning)
    if config.setup.enabled:
        from trapd.setup.secret import secret_problem
        problem = secret_problem(config.setup.secret_file)
        if problem:
            line = key_lines.get("setup.secret_file")
            print(f"warning: {shown}{f':{line}' if line else ''}: setup.secret_file: {problem} "
                  "(the trap runs without the setup page until it is fixed)")
    for link in insecure_links(config.fleet):
        print(f"warning: {shown}: {link} is not encrypted (allow_insecure: true): anyone on the "
              "network can read and alter what passes; use TLS in the field")
    return 0
