"""The daemon's side of setup: setup mode, and what the link's calls do.

Hooks into the running trap without slowing it: PIR edges (the trigger's
listener: one append), triggers taken (which event an edge opened), finished
events (the trap's on_event), frames (the preview tap: a reference, a copy
at most 5 times a second while someone watches). Everything else (queries,
encoding, waiting) runs on the link's threads.
"""

from __future__ import annotations

import logging

from trapd.errors import TrapdError
from trapd.health_summary import health_summary, now_from_trap
from trapd.setup.deployment import DeploymentCalls, PhotoTap
from trapd.setup.feeds import Feed
from trapd.setup.link import LinkServer
from trapd.setup.mode import COMMAND, SetupMode
from trapd.setup.preview import PreviewTap
from trapd.setup.secret import read_secret

log = logging.getLogger(__name__)

MAX_WAIT_S = 30.0            # longest long-poll
MAX_SESSION_S = 86400
CLOCK_SOURCE = "setup page"


class SetupService:
    def __init__(self, daemon, mode: SetupMode) -> None:
        self.daemon = daemon
        self.trap = daemon.trap
        self.mode = mode
        self.edges = Feed()
        self.events = Feed()
        self.preview_tap = PreviewTap(self.trap)
        self.photo_tap = PhotoTap(self.trap)
        self.deployment = DeploymentCalls(daemon, self.photo_tap)
        self._previous_on_event = None

    # -- hooks -----------------------------------------------------------------
    def attach(self) -> None:
        trap = self.trap
        trap.frame_tap = self._frame_tap
        trap.on_trigger = self._on_trigger
        trap.pir.edge_listeners.append(self._on_edge)
        self._previous_on_event = trap.on_event

        def on_event(report) -> None:
            if self._previous_on_event:
                self._previous_on_event(report)
            self._on_event(report)

        trap.on_event = on_event
        self.mode.on_open = lambda why: self.daemon.show_status_code()

    def detach(self) -> None:
        trap = self.trap
        trap.frame_tap = trap.on_trigger = None
        if self._on_edge in trap.pir.edge_listeners:
            trap.pir.edge_listeners.remove(self._on_edge)
        trap.on_event = self._previous_on_event
        self.mode.on_open = None

    def _frame_tap(self, frame) -> None:
        # On the trap's thread: a failure here must cost the live view, never capture.
        try:
            self.preview_tap(frame)
            self.photo_tap(frame)
        except Exception:
            log.exception("setup link: the live view failed on a camera frame; it is off "
                          "until trapd restarts, capture goes on")
            self.trap.frame_tap = None

    def _on_edge(self, trigger) -> None:
        self.edges.add({"wall_ns": trigger.t_wall_ns, "event_id": None,
                        "_monotonic_ns": trigger.t_monotonic_ns})
        led = self.trap.status_led
        if led is not None and self.mode.active:
            led.flash()

    def _on_trigger(self, trigger, event_id: str) -> None:
        """The trap took `trigger` into `event_id`: so did the edges since it."""
        try:
            self.edges.update(lambda e: e["event_id"] is None
                              and e["_monotonic_ns"] >= trigger.t_monotonic_ns,
                              {"event_id": event_id})
        except Exception:       # on the trap's thread, as _frame_tap
            log.exception("setup link: the walk test failed to name an edge's event; "
                          "capture goes on")

    def _on_event(self, report) -> None:
        self.events.add({"event_id": report.event_id, "trigger": report.trigger,
                         "frames": len(report.frames), "kept": sum(f.kept for f in report.frames),
                         "files": [f.file for f in report.frames if f.file], "note": report.note})

    # -- the link's calls (each on a link thread) --------------------------------
    def call(self, name: str, kwargs: dict):
        handler = CALLS.get(name)
        if handler is None:
            raise ValueError(f"unknown call {name!r}")
        return handler(self, **kwargs)

    def get_mode(self) -> dict:
        return self.mode.state()

    def open_setup(self, seconds: float) -> dict:
        if not isinstance(seconds, (int, float)) or not 1 <= seconds <= MAX_SESSION_S:
            raise ValueError(f"seconds: from 1 to {MAX_SESSION_S}")
        return self.mode.open(COMMAND, seconds)

    def health(self) -> dict:
        return health_summary(self.daemon.config, self.trap.store.root, now_from_trap(self.trap))

    def preview(self, max_width: int = 640) -> dict:
        return self.preview_tap.preview(int(max_width))

    def get_edges(self, after_seq: int = 0, wait_s: float = 0.0) -> dict:
        return _without_private(self.edges.after(int(after_seq), min(float(wait_s), MAX_WAIT_S), "edges"),
                                "edges")

    def get_events(self, after_seq: int = 0, wait_s: float = 0.0) -> dict:
        return self.events.after(int(after_seq), min(float(wait_s), MAX_WAIT_S), "events")

    def set_clock(self, wall_ns: int, confirmed_by: str) -> dict:
        if not isinstance(wall_ns, int) or not isinstance(confirmed_by, str) or not confirmed_by.strip():
            raise ValueError("set_clock needs wall_ns (int) and who confirmed it")
        clock = self.trap.clock
        step_ns = wall_ns - clock.wall_ns()
        clock.set_wall_ns(wall_ns)
        confirmed_by = " ".join(confirmed_by.split())[:200]     # one line, as exports quote it
        self.daemon.note_clock_step(step_ns, CLOCK_SOURCE, confirmed_by)
        log.warning("wall clock set from the %s by %+.3f s (confirmed by %s)", CLOCK_SOURCE,
                    step_ns / 1e9, confirmed_by)
        return {"step_ns": step_ns}

    def reload(self) -> dict:
        return self.daemon.reload_and_report()

    def setup_photo(self, kind: str, confirmed_by: str) -> dict:
        return self.deployment.setup_photo(kind, confirmed_by)

    def end_deployment(self) -> dict:
        return self.deployment.end_deployment()

    def deployments(self) -> dict:
        return self.deployment.deployments()

    def check_deployment_id(self, new_id: str) -> dict:
        return self.deployment.check_deployment_id(new_id)


def _without_private(answer: dict, key: str) -> dict:
    answer[key] = [{k: v for k, v in e.items() if not k.startswith("_")} for e in answer[key]]
    return answer


CALLS = {"mode": SetupService.get_mode, "open_setup": SetupService.open_setup,
         "health": SetupService.health, "preview": SetupService.preview,
         "edges": SetupService.get_edges, "events": SetupService.get_events,
         "set_clock": SetupService.set_clock, "reload": SetupService.reload,
         "setup_photo": SetupService.setup_photo, "end_deployment": SetupService.end_deployment,
         "deployments": SetupService.deployments,
         "check_deployment_id": SetupService.check_deployment_id}


class RunningSetup:
    """What start_setup started; `stop()` ends it."""

    def __init__(self, service: SetupService, server: LinkServer) -> None:
        self.service = service
        self.server = server

    def stop(self) -> None:
        self.server.close()
        self.service.detach()
        self.service.mode.close()


def start_setup(daemon, pin_factory=None) -> RunningSetup:
    """Setup mode (boot timer, button) and the link on config.setup.link_socket.
    A missing or unsafe secret stops the start with one line (SecretError)."""
    config = daemon.config.setup
    secret = read_secret(config.secret_file)
    mode = SetupMode(config, daemon.trap.clock, pin_factory)
    service = SetupService(daemon, mode)
    service.attach()
    try:
        server = LinkServer(config.link_socket, secret, service.call).start()
    except BaseException:
        service.detach()
        mode.close()
        raise
    log.info("setup link on %s; setup mode %s", config.link_socket,
             "on" if mode.active else "off")
    return RunningSetup(service, server)


def start_setup_or_say_why(daemon, pin_factory=None) -> RunningSetup | None:
    """start_setup, but a missing or unsafe secret, a socket that cannot be made or a
    busy button pin costs only the setup page: one line, and the trap captures on."""
    try:
        return start_setup(daemon, pin_factory)
    except TrapdError as exc:
        log.error("setup link not started (the trap runs on without it): %s", exc)
        return None


