"""A simulated trap whose daemon loop runs in a thread and serves the setup link
(virtual time, gpiozero's MockFactory): the `linked` fixture of the setup link's tests."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import Bench, config_dict
from trapd.config import load_config
from trapd.daemon import Daemon
from trapd.setup.link import LinkClient
from trapd.setup.secret import create_secret
from trapd.setup.service import start_setup

BUTTON_PIN, LED_PIN = 22, 23


def wait_until(predicate, what: str, timeout_s: float = 60.0):
    """Poll (real time) until `predicate()` is true; fail naming `what`. Not a timing assert:
    the limit only keeps a broken run from hanging."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:g} s"
        time.sleep(0.01)
    return value


class LinkedTrap:
    """A simulated trap whose daemon loop runs in a thread, serving the setup link."""

    def __init__(self, tmp_path: Path, setup: dict | None = None, overrides: dict | None = None,
                 animals=()) -> None:
        # A short folder: a Unix socket's path is limited to 107 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="trapd-link-"))
        self.socket = self.folder / "setup.sock"
        secret_file = self.folder / "secret"
        self.secret = create_secret(secret_file)[0].encode()
        settings = {"setup": {"enabled": True, "link_socket": str(self.socket),
                              "secret_file": str(secret_file), "after_boot_s": 0,
                              **(setup or {})},
                    "hardware": {"status_led_pin": LED_PIN}, **(overrides or {})}
        self.config_path = tmp_path / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config_dict(tmp_path, settings)))
        self.bench = Bench(tmp_path, settings, animals)
        self.clock = self.bench.clock
        self.daemon = Daemon(str(self.config_path), load_config(self.config_path), self.bench.trap)
        self.setup = start_setup(self.daemon, self.bench.factory)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.daemon.run,
                                        kwargs={"until": self._stop.is_set}, daemon=True)

    def start(self) -> "LinkedTrap":
        self._thread.start()
        return self

    def client(self, secret: bytes | None = None) -> LinkClient:
        return LinkClient(self.socket, self.secret if secret is None else secret)

    def pir_pulse_in(self, seconds: float) -> int:
        """A PIR pulse `seconds` of virtual time from now; its monotonic time."""
        return self.bench.pir_pulse_at(seconds)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(60)
        self.setup.stop()
        self.bench.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def linked(tmp_path):
    traps = []

    def make(**kwargs) -> LinkedTrap:
        traps.append(LinkedTrap(tmp_path, **kwargs))
        return traps[-1]

    yield make
    for trap in traps:
        trap.stop()
