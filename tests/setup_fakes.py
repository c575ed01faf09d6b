"""A stand-in for the daemon's end of the setup link (trapd/setup/link.py's
LinkClient calls), for driving the setup page alone: a moving scene for the live
view, PIR edges and events on demand, a clock that records steps, a reload that
reads config.yaml like SIGHUP does."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from trapd.config import load_config
from trapd.errors import ConfigError


class FakeFeed:
    def __init__(self) -> None:
        self.entries: list[dict] = []
        self.changed = threading.Condition()

    def add(self, entry: dict) -> dict:
        with self.changed:
            entry["seq"] = len(self.entries) + 1
            self.entries.append(entry)
            self.changed.notify_all()
        return entry

    def after(self, after_seq: int, wait_s: float) -> dict:
        with self.changed:
            self.changed.wait_for(lambda: len(self.entries) > after_seq, timeout=wait_s)
            return {"seq": len(self.entries), "entries": self.entries[after_seq:]}


class FakeDaemon:
    """What the link reaches: one per test, shared by every FakeLinkClient."""

    def __init__(self, config_path) -> None:
        self.config_path = str(config_path)
        self.config = load_config(self.config_path)
        self.active = True
        self.edge_feed, self.event_feed = FakeFeed(), FakeFeed()
        self.clock_steps: list[dict] = []
        self.reloads: list[dict] = []
        self.preview_seq = 0
        self.calls = 0

    def pir_edge(self) -> dict:
        return self.edge_feed.add({"wall_ns": time.time_ns(), "event_id": None})

    def finish_event(self, event_id: str, files: list[str], frames: int) -> dict:
        return self.event_feed.add({"event_id": event_id, "frames": frames,
                                    "kept": len(files), "files": files})

    def frame(self, max_width: int) -> bytes:
        """A scene that changes with real time: a bright square crossing."""
        width, height = min(max_width, 640), 480
        image = np.full((height, width), 70, np.uint8)
        image[::40, :] = 110
        x = int(time.monotonic() * 200) % (width - 60)
        image[200:260, x:x + 60] = 230
        ok, jpeg = cv2.imencode(".jpg", image)
        return jpeg.tobytes()

    def health(self) -> dict:
        station = self.config.station
        return {"station_id": station.station_id, "deployment_id": station.deployment_id,
                "deployment_start": "2026-11-20T10:00:00+10:00", "clock_synced": False,
                "trap_wall_ns": time.time_ns() - 93_000_000_000, "free_mb": 20480,
                "days_left": 41.5, "battery_v": 12.4, "battery_trend_v_per_day": -0.05,
                "cpu_temperature_c": 38.2, "ambient_temperature_c": 4.5,
                "images_not_offloaded": 37, "images_not_synced": None, "fleet_link": "off",
                "degraded": {}, "day_night": "day", "power_mode": "streaming",
                "last_events": [], "owner": station.owner}

    def reload(self) -> dict:
        try:
            self.config = load_config(self.config_path)
        except ConfigError as exc:
            result = {"ok": False, "message": f"refused, running config kept: {exc}"}
        else:
            result = {"ok": True, "message": "applied"}
        self.reloads.append(result)
        return result


class FakeLinkClient:
    """LinkClient's calls, answered by a FakeDaemon."""

    def __init__(self, daemon: FakeDaemon) -> None:
        self.daemon = daemon

    def mode(self) -> dict:
        self.daemon.calls += 1
        return {"active": self.daemon.active, "until_wall_ns": time.time_ns() + 1_800_000_000_000
                if self.daemon.active else None, "why": "command" if self.daemon.active else None}

    def health(self) -> dict:
        return self.daemon.health()

    def preview(self, max_width: int = 640) -> dict:
        self.daemon.preview_seq += 1
        return {"jpeg": self.daemon.frame(max_width), "seq": self.daemon.preview_seq,
                "wall_ns": time.time_ns(), "night": False,
                "overlay": {"masks": [[0.0, 0.0, 1.0, 0.12]],
                            "smallest_animal": [0.45, 0.42, 0.55, 0.58]}}

    def edges(self, after_seq: int, wait_s: float) -> dict:
        reply = self.daemon.edge_feed.after(after_seq, wait_s)
        return {"seq": reply["seq"], "edges": reply["entries"]}

    def events(self, after_seq: int, wait_s: float) -> dict:
        reply = self.daemon.event_feed.after(after_seq, wait_s)
        return {"seq": reply["seq"], "events": reply["entries"]}

    def set_clock(self, wall_ns: int, confirmed_by: str) -> dict:
        step = wall_ns - time.time_ns()
        self.daemon.clock_steps.append({"wall_ns": wall_ns, "step_ns": step,
                                        "confirmed_by": confirmed_by})
        return {"step_ns": step}

    def reload(self) -> dict:
        return self.daemon.reload()

    def close(self) -> None:
        pass
