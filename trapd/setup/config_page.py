"""What the setup page changes in config.yaml: the YAML itself, the station's
position, a new deployment id. Every change is checked with check-config's own
functions (the same rules, the same messages with line numbers) and written with
config_edit's checked write, which keeps the old file as config.yaml.previous."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from trapd.check_config import identity_problem, storage_warnings
from trapd.cli_deployment import write_new_deployment
from trapd.config import config_folder, parse_config_lines
from trapd.config_edit import ConfigEditError, replace_text, set_values
from trapd.errors import ConfigError
from trapd.schema import read_text

MAX_CONFIG_BYTES = 256 * 1024      # config.yaml is a few kB; anything near this is a mistake


@dataclass
class Checked:
    """check-config's verdict on a text: problems (each its message and line) or none."""
    problems: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict:
        return {"ok": self.ok, "problems": self.problems, "warnings": self.warnings}


def read_config_text(path: str) -> str:
    return read_text(path, path, ConfigError)


def check_config_text(text: str, path: str) -> Checked:
    """The text as `trapd check-config` would judge it if it were the file at `path`."""
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        return Checked([{"line": None, "message": f"{path}: longer than "
                         f"{MAX_CONFIG_BYTES // 1024} kB: is this config.yaml?"}])
    try:
        config, key_lines = parse_config_lines(text, path, config_folder(path))
    except ConfigError as error:
        return Checked([_problem(p) for p in error.problems])
    mismatch = identity_problem(config, key_lines.get("fleet.telemetry.cert_file"), path)
    if mismatch:
        return Checked([{"line": key_lines.get("fleet.telemetry.cert_file"), "message": mismatch}])
    return Checked(warnings=storage_warnings(config, key_lines.get("storage.root"), path))


def _problem(problem) -> dict:
    return {"line": getattr(problem, "line", None), "message": str(problem)}


def write_config_text(text: str, path: str) -> Checked:
    """Check, then write keeping .previous; nothing is written unless it is OK."""
    checked = check_config_text(text, path)
    if checked.ok:
        _write(lambda: replace_text(path, text), checked, path)
    return checked


def set_location(path: str, latitude: float, longitude: float, accuracy_m: float) -> Checked:
    """station.location from the phone's GPS fix; its accuracy becomes uncertainty_m
    (a whole number of metres, at least 1, as the config asks)."""
    values = {"station.location.latitude": round(float(latitude), 6),
              "station.location.longitude": round(float(longitude), 6),
              "station.location.uncertainty_m": max(1, round(float(accuracy_m)))}
    return _set(path, values)


def start_deployment(path: str, new_id: str) -> Checked:
    """A new station.deployment_id, written as `trapd deployment start` writes it (the
    daemon has checked it against the card first, and starts it at its reload)."""
    checked = Checked()
    _write(lambda: write_new_deployment(path, new_id), checked, path)
    return checked


def _set(path: str, values: dict) -> Checked:
    checked = Checked()
    _write(lambda: set_values(path, values), checked, path)
    return checked


def _write(write, checked: Checked, path: str) -> None:
    try:
        write()
    except ConfigError as error:
        checked.problems = [_problem(p) for p in error.problems]
    except (ConfigEditError, OSError) as exc:
        checked.problems = [{"line": None, "message": str(exc)}]


def previous_path(path: str) -> str:
    return os.fspath(path) + ".previous"
