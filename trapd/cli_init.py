"""`trapd init --csv stations.csv --station ID | --all`: station config files for a fleet,
from a template and a stations CSV (trapd/station_init.py)."""

from __future__ import annotations

from pathlib import Path

from trapd.config import DEFAULT_CONFIG_PATH
from trapd.station_init import COLUMNS, REQUIRED_COLUMNS, StationsError, plan_configs, \
    read_stations, read_template, write_configs

EXIT_OK = 0


def add_parser(commands) -> None:
    optional = [c for c in COLUMNS if c not in REQUIRED_COLUMNS]
    p = commands.add_parser(
        "init", help="write a station's config.yaml from a template and its row of a stations "
        "CSV, checked with check-config's rules before anything is written",
        description=f"CSV columns: {', '.join(REQUIRED_COLUMNS)}; optional: "
        f"{', '.join(optional)}. An empty cell is null (not measured).")
    p.add_argument("--csv", required=True, help="the stations CSV (UTF-8, with or without BOM; "
                   "comma, semicolon or tab between cells)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--station", metavar="ID", help="the station_id of the row to use")
    which.add_argument("--all", action="store_true", help="every row, each to "
                       "OUT_DIR/<station_id>/config.yaml; none is written if one is wrong")
    p.add_argument("--template", help="config.yaml to start from (default: the shipped one)")
    p.add_argument("--out", help="with --station: the file to write "
                   "(default: OUT_DIR/<station_id>/config.yaml)")
    p.add_argument("--out-dir", default=".", help="folder for <station_id>/config.yaml "
                   "(default: the current one)")
    p.add_argument("--force", action="store_true", help="replace existing files, each kept "
                   "beside it as <name>.previous")
    p.set_defaults(handler=main)


def main(args) -> int:
    if args.out and args.all:
        raise StationsError("--out goes with --station; with --all give --out-dir")
    table = read_stations(args.csv)
    rows = list(table.rows) if args.all else [table.row(args.station)]
    template = read_template(args.template or DEFAULT_CONFIG_PATH)

    def out_for(row) -> Path:
        return Path(args.out) if args.out else Path(args.out_dir) / row.station_id / "config.yaml"

    planned = plan_configs(table, rows, template, out_for)
    for config, replaced in write_configs(planned, args.force):
        kept = f" (the old file kept as {config.path.name}.previous)" if replaced else ""
        print(f"{config.path}: station {config.station_id}, deployment {config.deployment_id}"
              f"{kept}")
    print(f"{len(planned)} config(s) written from the template {template.source}")
    return EXIT_OK
