"""`trapd setup [--minutes N] [--secret]`: open setup mode on the running trap
(the LED shows the trap's status code), or make and print the setup secret."""

from __future__ import annotations

import datetime as dt
import sys

from trapd.errors import TrapdError

NS = 1_000_000_000


class SetupOff(TrapdError):
    """setup.enabled is false."""


def add_parser(commands) -> None:
    p = commands.add_parser("setup", help="open setup mode on the running trap (the setup page "
                            "and the LED code), or make and print its setup secret")
    p.add_argument("--config", help="config.yaml to use (default: the shipped one)")
    p.add_argument("--minutes", type=float,
                   help="how long setup mode stays on (default: setup.session_s)")
    p.add_argument("--secret", action="store_true",
                   help="print the setup secret, making it first if there is none (chmod 600)")
    p.set_defaults(handler=main)


def main(args) -> int:
    from trapd.config import DEFAULT_CONFIG_PATH, load_config
    from trapd.setup.secret import create_secret, read_secret

    config = load_config(args.config)
    setup = config.setup
    if args.secret:
        secret, made = create_secret(setup.secret_file)
        print(f"setup secret {'made and ' if made else ''}kept in {setup.secret_file} (chmod 600):",
              file=sys.stderr)
        print(secret)
        return 0
    if not setup.enabled:
        raise SetupOff(f"setup is off in {args.config or DEFAULT_CONFIG_PATH} (setup.enabled: false)")
    if args.minutes is not None and not 0 < args.minutes <= 24 * 60:
        raise SetupOff("--minutes: from more than 0 to 1440 (a day)")
    from trapd.setup.link import LinkClient
    seconds = args.minutes * 60 if args.minutes is not None else setup.session_s
    client = LinkClient(setup.link_socket, read_secret(setup.secret_file))
    try:
        mode = client.open_setup(seconds)
    finally:
        client.close()
    until = dt.datetime.fromtimestamp(mode["until_wall_ns"] / NS, config.time.tz)
    print(f"setup mode on until {until:%H:%M:%S} ({config.time.utc_offset}): "
          f"http://{_host(setup.bind_address)}:{setup.port}/ (the LED shows the status code)")
    return 0


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
