"""`trapd deployment end | start NEW_ID`, and the deployment line of `trapd status`."""

from __future__ import annotations

import time
from pathlib import Path

from trapd.errors import StorageError

EXIT_OK = 0


def deployment_command(args, open_store) -> int:
    """`trapd deployment end|start NEW_ID`."""
    if args.action == "start":
        return _start_deployment(args, open_store)
    from trapd.config import load_config
    from trapd.deployments import end_deployment
    config = load_config(args.config)
    store = open_store(args, config)
    deployment_id = config.station.deployment_id
    try:
        if not end_deployment(store, deployment_id, time.time_ns()):
            raise StorageError(f"deployment {deployment_id} was never started on this card "
                               "(the daemon records it when it first runs)")
    finally:
        store.close()
    print(f"deployment {deployment_id} ended now; exports give this as its end")
    return EXIT_OK


def _start_deployment(args, open_store) -> int:
    from trapd.config import DEFAULT_CONFIG_PATH, load_config
    from trapd.config_edit import ConfigEditError, set_values
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
    if args.new_id == old or args.new_id in used:
        raise ConfigEditError(f"deployment {args.new_id} already ran on this card: a new "
                              "deployment needs a new id")
    values = {"station.deployment_id": args.new_id}
    for option, key, kind in (("latitude", "latitude", float), ("longitude", "longitude", float),
                              ("elevation", "elevation_m", float),
                              ("uncertainty", "uncertainty_m", int)):
        if getattr(args, option) is not None:
            values[f"station.location.{key}"] = kind(getattr(args, option))
    written = set_values(path, values)
    print(f"{written}: deployment {args.new_id} (was {old}); the previous file is "
          f"{written.name}.previous. It starts when trapd restarts or reloads "
          f"(sudo systemctl reload trapd), which ends {old} on the card.")
    return EXIT_OK


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
