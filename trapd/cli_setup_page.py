"""`trapd setup-page`: the technician's phone page, served only while the daemon's
setup mode is on (systemd/trapd-setup.service runs it)."""

from __future__ import annotations

import logging
import signal
import threading

from trapd.errors import TrapdError

log = logging.getLogger("trapd.setup.page")


class SetupPageError(TrapdError, ValueError):
    """The page cannot be served as asked (e.g. an unusable certificate)."""


def add_parser(commands) -> None:
    p = commands.add_parser("setup-page", help="serve the setup page for a phone while setup "
                            "mode is on (setup: in config.yaml)")
    p.add_argument("--config", help="config.yaml to use (default: the shipped one)")
    p.add_argument("--bind", help="address to listen on (default: setup.bind_address)")
    p.add_argument("--port", type=int, help="port (default: setup.port)")
    p.add_argument("--secret-file", help="the per-trap secret (default: setup.secret_file)")
    p.add_argument("--link-socket", help="the daemon's setup link (default: setup.link_socket)")
    p.add_argument("--tls-cert", help="serve https with this certificate (PEM); phones give "
                   "the page their GPS only over https")
    p.add_argument("--tls-key", help="the certificate's private key (PEM)")
    p.set_defaults(handler=main)


def _settings(args, config) -> dict:
    """Each page setting from its option, else from the config's setup section."""
    setup = config.setup
    return {"enabled": setup.enabled,
            "bind": args.bind or setup.bind_address, "port": args.port or setup.port,
            "secret_file": args.secret_file or setup.secret_file,
            "link_socket": args.link_socket or setup.link_socket}


def main(args) -> int:
    from trapd.config import DEFAULT_CONFIG_PATH, load_config
    from trapd.setup.app import create_app
    from trapd.setup.linkpool import LinkPool
    from trapd.setup.secret import read_secret
    from trapd.setup.server import PageServer, serve_while_setup_mode

    config_path = args.config or str(DEFAULT_CONFIG_PATH)
    settings = _settings(args, load_config(config_path))
    if not settings["enabled"]:
        print("trapd: the setup page is off (setup.enabled: false in the config)")
        return 0
    secret = read_secret(settings["secret_file"])     # SecretError: one line, exit 1
    connect = _link_connector(settings["link_socket"], secret)
    tls = _tls_files(args.tls_cert, args.tls_key)
    server = PageServer(lambda: create_app(config_path, secret, connect),
                        settings["bind"], settings["port"], tls)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    modes = LinkPool(connect)
    log.info("setup page: waiting for setup mode (link %s)", settings["link_socket"])
    serve_while_setup_mode(server, lambda: modes.call("mode"), stop)
    modes.close()
    return 0


def _link_connector(socket_path: str, secret: bytes):
    from trapd.setup.link import LinkClient
    return lambda: LinkClient(socket_path, secret)


def _tls_files(cert: str | None, key: str | None) -> tuple[str, str] | None:
    """(cert, key) checked now, so a bad pair is one line at start and not a
    failure later, when setup mode opens."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise SetupPageError("https needs both --tls-cert and --tls-key")
    import ssl
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise SetupPageError(f"cannot use the certificate {cert} with the key {key}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    return cert, key
