"""Remote management through the broker: commands to one trap.

An operator publishes `trapd/v1/<station>/cmd/<command>` with a JSON payload
carrying its own `id`. The trap answers on `trapd/v1/<station>/reply`, through
the outbox (so an answer survives a broken link or a restart): first
`{"id", "command", "stage": "ack"}` as soon as the command arrives, then
`{"id", "command", "stage": "result", "ok": true|false, "result" | "error"}`.
Only an operator's certificate may publish commands (the broker's ACL: a trap
may read its own `cmd/#`, never write it, and nothing of another station).

- `status`: the heartbeat, now (its payload is the result).
- `log` `{"lines": N}`: the trap's last N log lines (at most LOG_LINES_KEPT).
- `sync-now`: the image sync runs at once (its outcome shows in the log and heartbeat).
- `snapshot`: the camera's newest view as a small greyscale JPEG (the lores
  stream, base64), taken from what the trap already captures: nothing is asked
  of the camera, so it never delays a PIR event. In standby the camera is off:
  refused, saying so.
- `config` `{"yaml": "<the whole config.yaml>", "confirm_s": 30}`: checked with
  check-config's rules (refused with its messages and line numbers, the running
  config untouched); written with the old file kept as `.previous`; applied as
  SIGHUP applies it (between events); kept only if the trap captures a frame
  within `confirm_s` of the reload (or waits in standby), else the previous file
  is put back and applied again, and the result says so.

Commands run one at a time on the fleet thread, never on the capture thread.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import time
from collections import deque
from typing import Callable

import cv2

from trapd.config_edit import ConfigEditError, replace_text, restore_previous
from trapd.errors import ConfigError
from trapd.fleet.telemetry import iso_utc, topic

log = logging.getLogger(__name__)

LOG_LINES_KEPT = 500
SNAPSHOT_MAX_AGE_S = 2.0
SNAPSHOT_QUALITY = 80
CONFIG_CONFIRM_S = 30.0
CAPTURING_FRAMES = 3
RELOAD_WAIT_S = 60.0     # an event in flight delays the reload (SIGHUP's rule) at most this long
MAX_CONFIRM_S = 600.0


class RecentLog(logging.Handler):
    """The trap's newest log lines, for the `log` command."""

    def __init__(self, capacity: int = LOG_LINES_KEPT) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=capacity)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class CommandRunner:
    def __init__(self, worker, trap=None, config_path: str | None = None,
                 request_reload: Callable[[], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.worker = worker
        self.trap = trap
        self.config_path = config_path
        self.request_reload = request_reload
        self.monotonic = monotonic
        self.recent = RecentLog()
        logging.getLogger("trapd").addHandler(self.recent)
        self._queue: queue.Queue = queue.Queue()

    def close(self) -> None:
        logging.getLogger("trapd").removeHandler(self.recent)

    def submit(self, command: str, payload: bytes) -> None:
        """From the MQTT thread: acknowledge at once, run later on the fleet thread."""
        try:
            args = json.loads(payload or b"{}")
        except ValueError:
            args = None
        if not isinstance(args, dict):
            self._reply({"id": None, "command": command, "stage": "result", "ok": False,
                         "error": "the payload must be a JSON object with an \"id\""})
            return
        self._reply({"id": args.get("id"), "command": command, "stage": "ack"})
        self._queue.put((command, args))

    def run_pending(self) -> None:
        while True:
            try:
                command, args = self._queue.get_nowait()
            except queue.Empty:
                return
            self._reply({"id": args.get("id"), "command": command, "stage": "result",
                         **self._run(command, args)})

    def _run(self, command: str, args: dict) -> dict:
        handler = {"status": self._status, "log": self._log, "sync-now": self._sync_now,
                   "config": self._config, "snapshot": self._snapshot}.get(command)
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}: status, log, snapshot, "
                                          "sync-now or config"}
        try:
            return handler(args)
        except Exception as exc:     # a command must never take the fleet thread down
            log.exception("fleet: command %s failed", command)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def _reply(self, payload: dict) -> None:
        station = self.worker.station_id
        self.worker.db.enqueue(station, topic(station, "reply"), payload, self.worker.wall_ns())

    # -- the commands -----------------------------------------------------------
    def _status(self, args: dict) -> dict:
        msg_id = self.worker.queue_heartbeat()
        return {"ok": True, "result": {"heartbeat_msg_id": msg_id}}

    def _log(self, args: dict) -> dict:
        lines = args.get("lines", 50)
        if not isinstance(lines, int) or not 1 <= lines <= LOG_LINES_KEPT:
            return {"ok": False, "error": f"lines: a whole number from 1 to {LOG_LINES_KEPT}"}
        return {"ok": True, "result": list(self.recent.lines)[-lines:]}

    def _snapshot(self, args: dict) -> dict:
        view = self.trap.latest_view if self.trap else None
        if view is None or self.trap.clock.monotonic_ns() - view[0] > SNAPSHOT_MAX_AGE_S * 1e9:
            return {"ok": False, "error": "no view: the camera is off (standby or outside the "
                                          "operating windows) or not delivering frames"}
        _, wall_ns, lores = view
        ok, jpeg = cv2.imencode(".jpg", lores, [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_QUALITY])
        if not ok:
            return {"ok": False, "error": "the view could not be encoded"}
        return {"ok": True, "result": {"jpeg_base64": base64.b64encode(jpeg.tobytes()).decode("ascii"),
                                       "width": int(lores.shape[1]), "height": int(lores.shape[0]),
                                       "taken": iso_utc(wall_ns)}}

    def _sync_now(self, args: dict) -> dict:
        if not self.worker.make_syncer and not self.worker.syncer:
            return {"ok": False, "error": "image sync is off on this trap (fleet.sync.enabled)"}
        self.worker.sync_soon()
        return {"ok": True, "result": "sync starts now; its outcome shows in the log and heartbeat"}

    def _config(self, args: dict) -> dict:
        text, confirm_s = args.get("yaml"), args.get("confirm_s", CONFIG_CONFIRM_S)
        if not isinstance(text, str):
            return {"ok": False, "error": "config needs \"yaml\": the whole config.yaml as text"}
        if not isinstance(confirm_s, (int, float)) or not 1 <= confirm_s <= MAX_CONFIRM_S:
            return {"ok": False, "error": f"confirm_s: seconds from 1 to {MAX_CONFIRM_S:g}"}
        if self.config_path is None or self.request_reload is None or self.trap is None:
            return {"ok": False, "error": "this trap runs without a config file to change"}
        try:
            replace_text(self.config_path, text)
        except (ConfigError, ConfigEditError) as exc:
            return {"ok": False, "error": f"refused, the running config is unchanged:\n{exc}"}
        if self._applied_and_capturing(confirm_s):
            log.warning("fleet: a new config.yaml came through the broker and is applied")
            return {"ok": True, "result": "applied; the previous file is kept as .previous"}
        restore_previous(self.config_path)
        self.request_reload()
        log.error("fleet: the new config.yaml stopped capture: the previous one is back")
        return {"ok": False, "error": f"rolled back: the trap captured no frame within {confirm_s:g} s "
                                      "of the new config; the previous config is applied again"}

    def _applied_and_capturing(self, confirm_s: float) -> bool:
        """Reloaded, and CAPTURING_FRAMES new frames within `confirm_s` of the
        trap's own clock (a frame or so may slip through before a camera stops),
        or waiting in standby (camera off by design)."""
        from trapd.operating import STANDBY

        trap, running = self.trap, self.trap.config
        self.request_reload()
        give_up = self.monotonic() + confirm_s + RELOAD_WAIT_S     # real time: the reload itself may wait for an event
        reloaded_ns = last = None
        seen = 0
        while self.monotonic() < give_up:
            if trap.config is not running:
                if trap.operating.current_mode() == STANDBY:
                    return True
                if reloaded_ns is None:
                    reloaded_ns, last = trap.clock.monotonic_ns(), trap.last_frame_ns
                frame = trap.last_frame_ns
                if frame != last and frame is not None and frame <= reloaded_ns + confirm_s * 1e9:
                    seen, last = seen + 1, frame
                    if seen >= CAPTURING_FRAMES:
                        return True
                if trap.clock.monotonic_ns() > reloaded_ns + confirm_s * 1e9:
                    return False
            time.sleep(0.02)
        return False
