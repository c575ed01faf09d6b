"""`trapd deployment end | start NEW_ID`, and the deployment line of `trapd status`.
The checks and messages are shared with the setup page (trapd/setup/deployment.py)."""

from __future__ import annotations

import re
import time
from datetime import date
from pathlib import Path

from trapd.errors import StorageError

EXIT_OK = 0
MONTH_SUFFIX = re.compile(r"(?P<year>(19|20)\d\d)-(?P<month>0[1-9]|1[0-2])$")
NUMBER_SUFFIX = re.compile(r"\d+$")


def deployment_command(args, open_store) -> int:
    """`trapd deployment end|start NEW_ID`."""
    if args.action == "start":
        return _start_deployment(args, open_store)
    from trapd.config import load_config
    config = load_config(args.config)
    store = open_store(args, config)
    try:
        message = end_current_deployment(store, config.station.deployment_id, time.time_ns())
    finally:
        store.close()
    print(message)
    return EXIT_OK


def _start_deployment(args, open_store) -> int:
    from trapd.config import DEFAULT_CONFIG_PATH, load_config
    from trapd.config_edit import ConfigEditError
    from trapd.deployments import recorded_deployments
    from trapd.storage import DB_NAME

    if not args.new_id:
        raise ConfigEditError("trapd deployment start needs the new deployment id, e.g. "
                              "trapd deployment start LOL-A017-2027-05")
    path = args.config or DEFAULT_CONFIG_PATH
    config = load_config(path)
    old = config.station.deployment_id
    root = Path(args.storage or config.storage.root)
    used = []
    if (root / DB_NAME).exists():
        store = open_store(args, config)
        try:
            used = recorded_deployments(store)
        finally:
            store.close()
    check_new_deployment_id(args.new_id, old, used)
    location = {}
    for option, key, kind in (("latitude", "latitude", float), ("longitude", "longitude", float),
                              ("elevation", "elevation_m", float),
                              ("uncertainty", "uncertainty_m", int)):
        if getattr(args, option) is not None:
            location[key] = kind(getattr(args, option))
    written = write_new_deployment(path, args.new_id, location)
    print(f"{written}: deployment {args.new_id} (was {old}); the previous file is "
          f"{written.name}.previous. It starts when trapd restarts or reloads "
          f"(sudo systemctl reload trapd), which ends {old} on the card.")
    return EXIT_OK


# -- shared with the setup page ----------------------------------------------------

def end_current_deployment(store, deployment_id: str, wall_ns: int) -> str:
    """End `deployment_id` at `wall_ns` on this card (the pickup); what to tell the
    technician. StorageError if the card never ran it."""
    from trapd.deployments import end_deployment
    if not end_deployment(store, deployment_id, wall_ns):
        raise StorageError(f"deployment {deployment_id} was never started on this card "
                           "(the daemon records it when it first runs)")
    return f"deployment {deployment_id} ended now; exports give this as its end"


def check_new_deployment_id(new_id: str, current_id: str, used: list[str]) -> None:
    """ConfigEditError unless `new_id` is new on this card."""
    from trapd.config_edit import ConfigEditError
    if new_id == current_id or new_id in used:
        raise ConfigEditError(f"deployment {new_id} already ran on this card: a new "
                              "deployment needs a new id")


def write_new_deployment(path, new_id: str, location: dict | None = None) -> Path:
    """station.deployment_id (and the station.location keys given) written into the
    config at `path` with config_edit's checked write (.previous kept)."""
    from trapd.config_edit import set_values
    values = {"station.deployment_id": new_id}
    values.update({f"station.location.{key}": value for key, value in (location or {}).items()})
    return set_values(path, values)


def next_deployment_id(current_id: str, used: list[str], today: date) -> str:
    """A suggestion for the next deployment's id: one ending in a month (…-2026-11)
    moves to this month, or to the month after its own if that is later; one ending
    in a number counts on; anything else gets -2. Never an id the card ran."""
    month, number = MONTH_SUFFIX.search(current_id), NUMBER_SUFFIX.search(current_id)
    if month:
        after_own = int(month["year"]) * 12 + int(month["month"])      # months since year 0, +1
        start = max(after_own, today.year * 12 + today.month - 1)
        stem = current_id[:month.start()]
        candidates = (f"{stem}{m // 12}-{m % 12 + 1:02d}" for m in range(start, start + 1200))
    elif number:
        width, stem = len(number[0]), current_id[:number.start()]
        candidates = (f"{stem}{n:0{width}d}" for n in range(int(number[0]) + 1, 10**7))
    else:
        candidates = (f"{current_id}-{n}" for n in range(2, 10**7))
    return next(c for c in candidates if c != current_id and c not in used)


def deployment_status(store, config) -> dict | None:
    from trapd.deployments import deployment_record
    record = deployment_record(store, config.station.deployment_id)
    if record is None:
        return None
    tz = config.time.tz
    return {"deployment_id": record.deployment_id,
            "start": _local(record.start_ns, tz), "end": _local(record.end_ns, tz),
            "ended": record.end_kind, "effort_days": round(record.effort_s / 86400, 3),
            "gaps": len(record.gaps)}


def _local(ns: int, tz) -> str:
    from datetime import datetime
    return datetime.fromtimestamp(ns / 1e9, tz).isoformat(timespec="seconds")
