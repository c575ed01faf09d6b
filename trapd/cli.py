"""`trapd` command line: run, sim, check-config, status, verify, export, offload, retime, sync
(status, init, setup, setup-page, deployment and fleet-watch live in their own modules).

One function per command; the work is done in the modules they call.

Whatever goes wrong on purpose (a TrapdError) or by the user's hand (Ctrl-C)
ends in one line on stderr naming the file, never in a traceback. Files a
command will write are checked before it starts the work.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from trapd.cli_deployment import deployment_command
from trapd.cli_status import open_store as _open_store
from trapd.cli_status import status_command as _status
from trapd.errors import ConfigError, ExportError, HardwareError, TrapdError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2
EXIT_HARDWARE = 3
EXIT_INTERRUPTED = 128 + signal.SIGINT   # 130, as shells report a Ctrl-C


class OutputPathError(TrapdError, OSError):
    """A file a command was asked to write cannot be written there."""


def _writable_file(path: str, what: str) -> Path:
    """`path` if a file can be written there (checked before the work starts)."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        raise OutputPathError(f"cannot write the {what} {path}: it is a directory")
    if not folder.is_dir():
        raise OutputPathError(f"cannot write the {what} {path}: there is no folder {folder}")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise OutputPathError(f"cannot write the {what} {path}: permission denied")
    return target


def _write_output(path: Path, data: bytes | str, what: str) -> None:
    try:
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
    except OSError as exc:
        raise OutputPathError(f"cannot write the {what} {path}: {exc.strerror or exc}") from None


def _add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="config.yaml to use (default: the shipped one)")
    parser.add_argument("--storage", help="storage root (default: storage.root in the config)")


def _version() -> str:
    """From the installed package's metadata (pyproject.toml's version)."""
    from trapd.metadata import package_version
    return package_version()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trapd", description="Raspberry Pi camera-trap firmware")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"trapd {_version()}",
                        help="print the installed trapd version and exit")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the trap on real hardware")
    run.add_argument("--config", help="config.yaml to use (default: the shipped one)")

    sim = commands.add_parser("sim", help="run the trap on the hardware simulator")
    sim.add_argument("scenario", nargs="?", default="default",
                     help="scenario name in hw_sim/scenarios or a YAML path (default: default)")
    _add_location_options(sim)
    sim.add_argument("--realtime", action="store_true", help="run at wall-clock pace")
    sim.add_argument("--report", help="write the scored run as JSON to this file")
    sim.add_argument("--debug-dir", help="write the filter's view of every event frame as PNGs")

    check = commands.add_parser("check-config", help="validate a config.yaml, listing every problem")
    check.add_argument("path", nargs="?", help="config file (default: the shipped one)")

    status = commands.add_parser("status", help="images and events in the queue, free space")
    _add_location_options(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    evaluate = commands.add_parser("eval-filter", help="measure the empty-frame filter on a labelled manifest")
    evaluate.add_argument("manifest", help="CSV: file,sequence_id,frame_index,label[,role]")
    evaluate.add_argument("--config", help="config.yaml whose filter settings to use")
    evaluate.add_argument("--json", action="store_true", help="print the full result as JSON")
    evaluate.add_argument("--debug-dir", help="write a PNG per frame and a contact sheet per sequence")

    verify = commands.add_parser("verify", help="check every indexed image and every stored JPEG")
    _add_location_options(verify)

    export = commands.add_parser("export", help="write a Camtrap DP 1.0.2 package of a "
                                 "deployment (default: the current one), images or none")
    export.add_argument("--camtrap-dp", required=True, metavar="OUTDIR",
                        help="package directory to write (new, empty, or an earlier export)")
    export.add_argument("--since", metavar="DATE",
                        help="only images taken from this date (YYYY-MM-DD, the deployment's "
                             "local time) or moment (ISO 8601 with offset)")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--deployment", metavar="ID",
                       help="this deployment instead of the current one (station.deployment_id)")
    which.add_argument("--all", action="store_true",
                       help="every deployment on the card, each into OUTDIR/<deployment id>/")
    export.add_argument("--mark-exported", action="store_true",
                        help="mark the exported images 'exported' in the index")
    export.add_argument("--shift", metavar="±DURATION",
                        help="correct a known clock error in the package's times, e.g. "
                             "--shift=-1d or --shift=+01:30:00 (the images are unchanged)")
    _add_location_options(export)

    offload = commands.add_parser("offload", help="copy pending images and a Camtrap DP package "
                                  "to a drive, verified")
    offload.add_argument("dest", help="mounted drive or directory to copy to")
    offload.add_argument("--free", action="store_true",
                         help="then delete from the card the images whose copy verified")
    _add_location_options(offload)

    deployment = commands.add_parser("deployment", help="end the current deployment at pickup, "
                                     "or start a new one (writes config.yaml)")
    deployment.add_argument("action", choices=["end", "start"],
                            help="end: the trap is picked up now (before its card is taken); "
                                 "start NEW_ID: set a new station.deployment_id (and position) "
                                 "in the config, checked, the old file kept as .previous")
    deployment.add_argument("new_id", nargs="?", metavar="NEW_ID",
                            help="with start: the new deployment id")
    for name, what in (("latitude", "degrees north"), ("longitude", "degrees east"),
                       ("elevation", "metres"), ("uncertainty", "metres, GPS accuracy")):
        deployment.add_argument(f"--{name}", type=float, help=f"with start: the new {what}")
    _add_location_options(deployment)

    sync = commands.add_parser("sync", help="upload images not yet in the object store "
                               "(fleet.sync), verified, within budget and windows; then stop")
    _add_location_options(sync)

    from trapd.fleet.watch import add_parser as add_fleet_watch
    add_fleet_watch(commands)
    from trapd.cli_init import add_parser as add_init
    add_init(commands)
    from trapd.cli_setup_page import add_parser as add_setup_page
    add_setup_page(commands)
    from trapd.cli_setup import add_parser as add_setup
    add_setup(commands)

    walk = commands.add_parser("walktest", help="blink the status LED and print each PIR edge "
                               "(aim the sensor)")
    walk.add_argument("--config", help="config.yaml to use (default: the shipped one)")
    walk.add_argument("--seconds", type=float, default=300, help="how long (default 300)")
    walk.add_argument("--sim", action="store_true", help="on the simulator's mock pins")

    snap = commands.add_parser("snapshot", help="take one framed test image with the current settings")
    snap.add_argument("path", nargs="?", help="JPEG to write (default snapshot.jpg; "
                      "with --setup/--pickup the photo goes into the queue instead)")
    snap.add_argument("--config", help="config.yaml to use (default: the shipped one)")
    snap.add_argument("--storage", help="with --setup/--pickup: storage root "
                      "(default: storage.root in the config)")
    marked = snap.add_mutually_exclusive_group()
    marked.add_argument("--setup", action="store_true",
                        help="a marked setup photo, tagged and stored in the queue "
                        "(exported with cameraSetupType setup, never as a detection); "
                        "stop the daemon first, it holds the camera")
    marked.add_argument("--pickup", action="store_true",
                        help="the same, taken when the trap is picked up")
    snap.add_argument("--night", action="store_true", help="with the night exposure time (night.max_exposure_us)")
    snap.add_argument("--sim", action="store_true", help="from the simulated camera")

    retime = commands.add_parser("retime", help="shift every camera time in an exported package")
    retime.add_argument("package", help="Camtrap DP package directory (trapd export output)")
    retime.add_argument("--shift", required=True, metavar="±DURATION",
                        help="e.g. --shift=+1d, --shift=-02:00:00 (use '=' before a minus sign)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # Sub-commands registered by an add_parser(commands) set their own handler.
        return (getattr(args, "handler", None) or COMMANDS[args.command])(args)
    except KeyboardInterrupt:
        print(f"trapd: {args.command} interrupted{INTERRUPTED_NOTE.get(args.command, '')}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        print(f"trapd: invalid config:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HardwareError as exc:
        print(f"trapd: {exc}", file=sys.stderr)
        return EXIT_HARDWARE
    except TrapdError as exc:
        print(f"trapd: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS


def _run(args) -> int:
    from trapd.check_config import storage_warnings
    from trapd.config import DEFAULT_CONFIG_PATH, load_config_lines
    from trapd.daemon import run
    config, key_lines = load_config_lines(args.config)
    for warning in storage_warnings(config, key_lines.get("storage.root"),
                                    args.config or str(DEFAULT_CONFIG_PATH)):
        logging.getLogger("trapd").warning(warning.removeprefix("warning: "))
    return run(args.config)


def _sim(args) -> int:
    from hw_sim.run import run_scenario
    from hw_sim.scenario import ScenarioError, load_scenario
    from trapd.config import load_config
    from trapd.debug_images import DebugImages

    report_path = _writable_file(args.report, "report") if args.report else None
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        for problem in str(exc).splitlines():
            print(f"trapd: {problem}", file=sys.stderr)
        return EXIT_PROBLEMS
    config = load_config(args.config)
    logging.getLogger("trapd.trap").setLevel(logging.WARNING)  # the sim prints its own event lines
    print(_scenario_line(scenario, config))
    debug = DebugImages(args.debug_dir) if args.debug_dir else None
    run = run_scenario(scenario, config, args.storage, args.realtime,
                       on_event=lambda event: print("  " + event.line()), debug=debug,
                       handle_signals=True, config_path=args.config)
    report = run.report()
    if run.stopped_by:
        print(f"stopped by {run.stopped_by}: ran {run.stopped_at_s:g} s of "
              f"{scenario.duration_s:g} s, scored up to there")
    _print_summary(report)
    if report["fleet"] is not None:
        f = report["fleet"]
        print(f"fleet: {f['messages_undelivered']} message(s) not delivered, "
              f"{f['images_not_synced']} image(s) not synced ({f['images_set_aside']} set aside)"
              + (f"; sync paused: {f['sync_paused']}" if f["sync_paused"] else ""))
    if report_path:
        _write_output(report_path, json.dumps(report, indent=1), "report")
        print(f"report written to {report_path}")
    if run.stopped_by:
        return 128 + signal.Signals[run.stopped_by].value
    return EXIT_OK


def _scenario_line(scenario, config) -> str:
    mode = scenario.power_mode or config.power.mode
    footage = scenario.footage
    if footage is None:
        return (f"scenario {scenario.name}: {scenario.duration_s:g} s, "
                f"{len(scenario.animals)} animal passes, power mode {mode}")
    labelled = sum(f.label is not None for f in footage.frames)
    return (f"scenario {scenario.name}: footage {footage.source}, {len(footage.frames)} frames "
            f"({labelled} labelled) at {footage.frame_rate:g} frames/s, played once: "
            f"{scenario.duration_s:g} s, {len(footage.passes)} animal passes, power mode {mode}")


def _print_summary(report: dict) -> None:
    s = report["summary"]
    print(f"summary: {s['events']} events, {s['images_stored']} images stored")
    print(f"  animal frames kept   {s['animal_frames_kept']}/{s['animal_frames']}")
    print(f"  empty frames dropped {s['empty_frames_dropped']}/{s['empty_frames']}")
    if s["unlabelled_frames"]:
        print(f"  unlabelled frames (not scored) {s['unlabelled_frames']}")
    print(f"  animal events lost   {s['animal_events_lost']}/{s['animal_events']}")
    print(f"  animal passes with a stored image {s['animal_passes_stored']}/{s['animal_passes']}")
    by = dict(s["frames_by_reference"])
    unjudged = by.pop("none", 0)
    judged = ", ".join(f"{n} {reference}" for reference, n in sorted(by.items()))
    print(f"  frames judged by     {judged or '-'}; {unjudged} kept with nothing to judge them by")
    print(f"images are in {Path(report['storage_root']).resolve() / 'images'}")


def _check_config(args) -> int:
    from trapd.config import check_config_main
    return check_config_main(args.path)


def _eval_filter(args) -> int:
    from trapd.config import load_config
    from trapd.debug_images import DebugImages
    from trapd.evaluate import evaluate, format_report

    debug = DebugImages(args.debug_dir) if args.debug_dir else None
    report = evaluate(args.manifest, load_config(args.config), debug)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return EXIT_OK


def _shift_ns(text: str | None) -> int:
    from trapd.timekeeping import parse_shift
    try:
        return parse_shift(text) if text else 0
    except ValueError as exc:
        raise ExportError(str(exc)) from None


def _verify(args) -> int:
    store = _open_store(args)
    try:
        problems = store.verify()
    finally:
        store.close()
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {store.root}")
        return EXIT_PROBLEMS
    print(f"{store.root}: every indexed image is complete and every image is indexed")
    return EXIT_OK


def _export(args) -> int:
    from trapd.config import load_config
    from trapd.export import parse_since

    config = load_config(args.config)
    store = _open_store(args, config)
    problems = []
    try:
        since = parse_since(args.since, config.time.tz) if args.since else None
        chosen = _deployments_to_export(args, config, store)
        for deployment_id in chosen:
            outdir = Path(args.camtrap_dp) / deployment_id if args.all else Path(args.camtrap_dp)
            problems += _export_one(args, config, store, deployment_id, since, outdir)
        others = [d for d in store.deployments() if d not in chosen]
    finally:
        store.close()
    if others:
        print(f"not exported: deployment(s) {', '.join(others)} (--deployment ID, or --all)")
    return _print_problems(problems)


def _deployments_to_export(args, config, store) -> list[str]:
    from trapd.deployments import recorded_deployments
    if args.all:
        known = recorded_deployments(store)
        return known + [d for d in store.deployments() if d not in known]
    return [args.deployment or config.station.deployment_id]


def _export_one(args, config, store, deployment_id: str, since, outdir: Path) -> list[str]:
    """One deployment's package: its start, end and gaps as the trap recorded them."""
    from trapd.deployments import as_deployed, deployment_record
    from trapd.export import ExportOptions, export_camtrap_dp
    from trapd.progress import Progress
    from trapd.storage import ON_CARD

    record = deployment_record(store, deployment_id)
    if deployment_id != config.station.deployment_id:
        if record is None:
            raise ExportError(f"deployment {deployment_id} has no record on this card (its "
                              "position is unknown): export it with the config it ran with")
        config = as_deployed(config, record)
    frames = store.saved_frames(ON_CARD, deployment_id, since)
    # a line rewritten with rate and ETA on a terminal; nothing in a pipe or log
    frames = Progress(sys.stdout, "export", plain=False).track(
        frames, name=lambda f: Path(f["file"]).name, size=lambda f: f["size_bytes"] or 0)
    options = ExportOptions(shift_ns=_shift_ns(args.shift), deployment=record)
    result = export_camtrap_dp(config, frames, outdir, options, store.root)
    if args.mark_exported:
        store.mark_exported(result.frame_ids, time.time_ns())
    print(f"{result.outdir}: Camtrap DP {len(result.frame_ids)} images, {result.events} events "
          f"of deployment {deployment_id}")
    return result.problems


def _offload(args) -> int:
    from trapd.config import load_config
    from trapd.offload import offload
    from trapd.progress import Progress

    config = load_config(args.config)
    store = _open_store(args, config)
    try:
        result = offload(store, config, Path(args.dest), free=args.free,
                         progress=Progress(sys.stdout))
    finally:
        store.close()
    return _report(result)


def _report(result) -> int:
    """An offload's or a sync's summary and problems; exit 1 if there were any."""
    print(result.summary())
    return _print_problems(result.problems)


def _print_problems(problems: list[str]) -> int:
    for problem in problems:
        print(problem)
    return EXIT_PROBLEMS if problems else EXIT_OK


def _sync(args) -> int:
    from trapd.config import load_config
    from trapd.fleet.outbox import FleetDb
    from trapd.fleet.sync import Syncer, s3_client

    config = load_config(args.config)
    store = _open_store(args, config)
    db = FleetDb(store.root)
    try:
        result = Syncer(config, store, db, s3_client(config)).run_once()
    finally:
        db.close()
        store.close()
    return _report(result) or (EXIT_PROBLEMS if result.store_problem else EXIT_OK)


def _retime(args) -> int:
    from trapd.export import retime_package
    shift = _shift_ns(args.shift)
    changed = retime_package(Path(args.package), shift)
    print(f"{args.package}: {changed} times shifted by {args.shift}; images unchanged")
    return EXIT_OK


def _walktest(args) -> int:
    from trapd.config import load_config
    from trapd.technician import walktest
    config = load_config(args.config)
    if args.sim:
        from gpiozero.pins.mock import MockFactory
        from trapd.clock import SystemClock
        walktest(config, SystemClock(), MockFactory(), args.seconds)
        return EXIT_OK
    from trapd.daemon import real_hardware
    hardware = real_hardware()
    walktest(config, hardware.clock, hardware.pin_factory, args.seconds)
    return EXIT_OK


def _snapshot(args) -> int:
    from trapd.config import load_config
    from trapd.errors import CameraUnavailable
    from trapd.technician import PICKUP, SETUP, setup_photo, snapshot
    kind = SETUP if args.setup else PICKUP if args.pickup else None
    if kind and args.path:
        raise OutputPathError(f"snapshot --{kind} stores the photo in the image queue; "
                              f"give no PATH (it was {args.path})")
    if args.storage and not kind:
        raise OutputPathError("snapshot --storage goes with --setup or --pickup")
    path = args.path or "snapshot.jpg"
    if not kind:
        _writable_file(path, "snapshot")
    config = load_config(args.config)
    if args.sim:
        from hw_sim.picamera2 import CameraRig
        from hw_sim.scenario import load_scenario
        from hw_sim.scene import Scene
        from trapd.clock import VirtualClock
        clock = VirtualClock()
        picamera2_class = CameraRig(Scene(load_scenario("default"), clock.monotonic_ns()),
                                    clock).picamera2_class
    else:
        from trapd.daemon import real_hardware
        hardware = real_hardware()
        picamera2_class, clock = hardware.picamera2_class, hardware.clock
    if not args.verbose:    # a busy camera is tried 5 times (~15 s); say it once, below
        logging.getLogger("trapd.camera").addFilter(
            lambda record: not record.getMessage().startswith("camera open attempt"))
    try:
        if kind:
            photo = setup_photo(config, picamera2_class, clock, kind, args.storage, args.night)
        else:
            written = snapshot(config, picamera2_class, clock, Path(path), args.night)
    except CameraUnavailable as exc:    # most often: the daemon (trapd.service) holds it
        raise CameraUnavailable(f"{exc} (if the trapd service is running it holds the camera: "
                                "stop it first, e.g. sudo systemctl stop trapd)") from None
    except OSError as exc:   # the folder went away or filled up while the camera worked
        if isinstance(exc, TrapdError):
            raise
        raise OutputPathError(f"cannot write the snapshot {path if not kind else 'to the queue'}"
                              f": {exc.strerror or exc}") from None
    if kind:
        print(f"{kind} photo stored in the queue as event {photo.event_id}: {photo.path}")
    else:
        print(f"snapshot written to {written}")
    return EXIT_OK


def _fleet_watch(args) -> int:
    from trapd.fleet.watch import main as fleet_watch
    return fleet_watch(args)


# What a Ctrl-C leaves, said after "trapd COMMAND interrupted".
INTERRUPTED_NOTE = {
    "offload": ": every image is either copied, verified and marked offloaded, or still "
               "pending on the card; run the same command again to finish",
    "export": ": run it again to write the package whole",
    "sync": ": run it again to finish",
}

COMMANDS = {"run": _run, "sim": _sim, "check-config": _check_config,
            "status": _status, "verify": _verify, "eval-filter": _eval_filter,
            "export": _export, "offload": _offload, "retime": _retime, "sync": _sync,
            "deployment": lambda args: deployment_command(args, _open_store),
            "walktest": _walktest, "snapshot": _snapshot, "fleet-watch": _fleet_watch}

if __name__ == "__main__":
    sys.exit(main())
