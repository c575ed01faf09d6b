"""`trapd init`: a station's config.yaml from a template and its row of a stations CSV.

The CSV is what a project keeps for its fleet, one row per station, as a spreadsheet
exports it: UTF-8 with or without a byte-order mark, comma, semicolon or tab between
cells, and in a semicolon file decimal commas. Every row is checked with check-config's
rules (trapd/config.py) before any file is written, and a mistake is reported by the
CSV's line and column as well as by the config line it would have made. The values
are set into the template with trapd/config_edit.py, so its comments stay.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from trapd.config import config_folder, parse_config_lines
from trapd.config_edit import replace_text, with_values
from trapd.errors import ConfigError, TrapdError
from trapd.schema import read_text

# CSV column -> the config key it sets.
COLUMNS = {
    "station_id": "station.station_id",
    "deployment_id": "station.deployment_id",
    "latitude": "station.location.latitude",
    "longitude": "station.location.longitude",
    "camera_height_m": "station.camera.height_m",
    "camera_heading_deg": "station.camera.heading_deg",
    "elevation_m": "station.location.elevation_m",
    "uncertainty_m": "station.location.uncertainty_m",
    "camera_tilt_deg": "station.camera.tilt_deg",
    "location_publish": "station.location.publish",
}
REQUIRED_COLUMNS = ("station_id", "deployment_id", "latitude", "longitude",
                    "camera_height_m", "camera_heading_deg")
TEXT_COLUMNS = ("station_id", "deployment_id", "location_publish")
# Ids that must differ between stations: two rows with one of them are a copy-paste slip.
UNIQUE_COLUMNS = ("station_id", "deployment_id")
DELIMITERS = (",", ";", "\t")

_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


class StationsError(TrapdError, ValueError):
    """The stations CSV, or a station's row of it, is wrong: nothing was written."""


@dataclass(frozen=True)
class StationRow:
    line: int                   # the CSV line the row ends on, 1-based
    cells: dict[str, str]       # column -> the cell's text, stripped

    @property
    def station_id(self) -> str:
        return self.cells["station_id"]


@dataclass(frozen=True)
class StationsTable:
    source: str                 # the CSV path as given, for messages
    rows: tuple[StationRow, ...]

    def row(self, station_id: str) -> StationRow:
        for row in self.rows:
            if row.station_id == station_id:
                return row
        known = ", ".join(r.station_id for r in self.rows[:20])
        more = ", ..." if len(self.rows) > 20 else ""
        raise StationsError(f"{self.source} has no station {station_id} "
                            f"(its stations: {known}{more})")


@dataclass(frozen=True)
class Template:
    source: str
    text: str
    key_lines: dict[str, int]   # config key -> its line in the template


@dataclass(frozen=True)
class PlannedConfig:
    """One station's config.yaml, checked, not yet written."""
    station_id: str
    deployment_id: str
    path: Path
    text: str


# --------------------------------------------------------------------------
# Reading the CSV
# --------------------------------------------------------------------------


def read_stations(path: str | os.PathLike) -> StationsTable:
    source = os.fspath(path)
    text = _decode(source)
    delimiter = _sniff_delimiter(text, source)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise StationsError(f"{source} is empty: it needs a header line naming the columns "
                            f"{', '.join(REQUIRED_COLUMNS)}")
    names = _column_names(header, source)
    rows = []
    for cells in reader:
        if any(cell.strip() for cell in cells):     # spreadsheets export empty rows too
            rows.append(_row(cells, names, source, reader.line_num))
    if not rows:
        raise StationsError(f"{source} has a header but no stations")
    table = StationsTable(source, tuple(rows))
    for column in UNIQUE_COLUMNS:
        _refuse_duplicates(table, column)
    return table


def _decode(source: str) -> str:
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise StationsError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")     # drops the byte-order mark spreadsheets write
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise StationsError(f"{source} line {line} is not UTF-8: save it from the spreadsheet "
                            "as 'CSV UTF-8'") from None


def _sniff_delimiter(text: str, source: str) -> str:
    """The delimiter that splits the header into the most known column names."""
    first_line = text.partition("\n")[0]

    def known(delimiter: str) -> int:
        header = next(csv.reader([first_line], delimiter=delimiter), [])
        return sum(_normal(name) in COLUMNS for name in header)

    best = max(DELIMITERS, key=known)
    if known(best) == 0:
        raise StationsError(f"{source} line 1 is not a header: it names none of the columns "
                            f"{', '.join(COLUMNS)}")
    return best


def _normal(name: str) -> str:
    return name.strip().lower()


def _column_names(header: list[str], source: str) -> list[str]:
    names = [_normal(name) for name in header]
    for position, name in enumerate(names):
        if name and name not in COLUMNS:
            raise StationsError(f"{source} line 1: unknown column {header[position].strip()!r}; "
                                f"known columns: {', '.join(COLUMNS)}")
        if name and name in names[:position]:
            raise StationsError(f"{source} line 1: column {name} appears twice")
    missing = [column for column in REQUIRED_COLUMNS if column not in names]
    if missing:
        raise StationsError(f"{source} line 1: no column {', '.join(missing)} (needed: "
                            f"{', '.join(REQUIRED_COLUMNS)})")
    return names


def _row(cells: list[str], names: list[str], source: str, line: int) -> StationRow:
    """A row's named cells; a cell under no name (a trailing delimiter) must be empty."""
    if len(cells) < len(names):
        raise StationsError(f"{source} line {line} has {len(cells)} cells, the header "
                            f"{len(names)}")
    named = {}
    for position, cell in enumerate(cells):
        name = names[position] if position < len(names) else ""
        if name:
            named[name] = cell.strip()
        elif cell.strip():
            raise StationsError(f"{source} line {line}, cell {position + 1}: {cell.strip()!r} "
                                "is under no column name (a delimiter too many, or a decimal "
                                "comma in a comma-separated file?)")
    return StationRow(line, named)


def _refuse_duplicates(table: StationsTable, column: str) -> None:
    first_line: dict[str, int] = {}
    for row in table.rows:
        value = row.cells[column]
        if value in first_line:
            raise StationsError(f"{table.source} lines {first_line[value]} and {row.line}: "
                                f"both have {column} {value}")
        first_line[value] = row.line


# --------------------------------------------------------------------------
# One station's config
# --------------------------------------------------------------------------


def read_template(path: str | os.PathLike) -> Template:
    """The template config, itself valid (ConfigError with its lines if not)."""
    source = os.fspath(path)
    text = read_text(source, source, ConfigError)
    _, key_lines = parse_config_lines(text, source, config_folder(source))
    return Template(source, text, key_lines)


def station_config(table: StationsTable, row: StationRow, template: Template,
                   out: Path) -> PlannedConfig:
    """The template with the row's values, checked as the file `out` would be."""
    text = with_values(template.text, template.source, _row_values(row, template.key_lines))
    try:
        parse_config_lines(text, os.fspath(out), config_folder(out))
    except ConfigError as error:
        raise StationsError("\n".join(_row_problems(table, row, error))) from None
    return PlannedConfig(row.station_id, row.cells["deployment_id"], out, text)


def _row_values(row: StationRow, template_keys: dict[str, int]) -> dict[str, object]:
    values = {COLUMNS[column]: _cell_value(column, cell) for column, cell in row.cells.items()}
    elevation = COLUMNS["elevation_m"]
    # The template's elevation is another place's: without a column it is unknown here.
    if elevation not in values and elevation in template_keys:
        values[elevation] = None
    return values


def _cell_value(column: str, cell: str) -> object:
    """What the cell sets: empty is null (not measured); a number is a number; anything
    else stays text, for the config's rule to reject with its own words."""
    if cell == "":
        return None
    if column in TEXT_COLUMNS:
        return cell
    number = cell.replace(",", ".", 1) if cell.count(",") == 1 and "." not in cell else cell
    if _INTEGER.fullmatch(number):
        return int(number)
    if _DECIMAL.fullmatch(number):
        return float(number)
    return cell


def _row_problems(table: StationsTable, row: StationRow, error: ConfigError) -> list[str]:
    key_columns = {key: column for column, key in COLUMNS.items()}
    lines = []
    for problem in error.problems:
        column = key_columns.get(problem.path)
        if column in row.cells:
            expected = problem.expected.removesuffix(", or null") + \
                (", or empty" if problem.expected.endswith(", or null") else "")
            lines.append(f"{table.source} line {row.line}, column {column}: "
                         f"{row.cells[column]!r} is not {expected}")
            lines.append(f"  config, not written: {problem}")
        else:
            lines.append(f"{table.source} line {row.line} (station {row.station_id}): {problem}")
    return lines


# --------------------------------------------------------------------------
# Planning and writing
# --------------------------------------------------------------------------


def plan_configs(table: StationsTable, rows: list[StationRow], template: Template,
                 out_for) -> list[PlannedConfig]:
    """Every chosen row's config, checked; StationsError listing every bad row."""
    planned, problems = [], []
    for row in rows:
        try:
            planned.append(station_config(table, row, template, Path(out_for(row))))
        except StationsError as exc:
            problems.append(str(exc))
    if problems:
        raise StationsError("\n".join(problems) + "\nnothing written")
    return planned


def write_configs(planned: list[PlannedConfig], force: bool) -> list[tuple[PlannedConfig, bool]]:
    """Write every planned file, or none if one exists and not `force`; with `force` a
    replaced file is kept as .previous. Gives each with whether it replaced a file."""
    existing = [p.path for p in planned if p.path.exists()]
    if existing and not force:
        shown = ", ".join(map(str, existing[:5])) + (", ..." if len(existing) > 5 else "")
        raise StationsError(f"{shown} already exist(s): give --force to replace (each old file "
                            "is kept beside it as <name>.previous); nothing written")
    written = []
    for config in planned:
        try:
            config.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StationsError(f"cannot make the folder {config.path.parent}: "
                                f"{exc.strerror or exc}") from None
        replaced = config.path.exists()
        replace_text(config.path, config.text)
        written.append((config, replaced))
    return written
