"""Technician aids: `trapd walktest` (aim the PIR) and `trapd snapshot` (frame a test image).

walktest: the status LED blinks once on every PIR edge and each edge is
printed with its time, so whoever walks in front of the trap sees where the
sensor's zone is. Outside walktest the LED stays dark (it could scare
animals or draw people).
snapshot: one JPEG with the current camera settings (size, rotation, night
exposure cap), for framing the view.
setup_photo (`trapd snapshot --setup` / `--pickup`; the setup page through the
daemon: trapd/setup/photo.py): the same photo, tagged like
the trap's photos and stored in the card's queue as an event of its own whose
trigger is `setup` or `pickup`; export writes it with cameraSetupType `setup`,
never as a detection (trapd/export.py).

The queue may be open in a running daemon (it cannot be on a real Pi while
this holds the camera, but the card can be shared): the queue is opened as a
second writer without start-up recovery (Store(recover=False): the daemon's
in-flight files are never touched), SQLite's WAL serialises the two writers,
and the event number, from the index's AUTOINCREMENT key, is the daemon's own
sequence, so the file name (..._E<number>_01.jpg) cannot collide with any of
the daemon's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from gpiozero import LED

from trapd.camera import Camera
from trapd.clock import Clock
from trapd.config import Config
from trapd.errors import StorageError
from trapd.trigger import PirTrigger

SETUP = "setup"      # event trigger of a photo taken when the trap is set up
PICKUP = "pickup"    # ... and when it is picked up
SETUP_TRIGGERS = (SETUP, PICKUP)

BLINK_S = 0.2  # edges arriving meanwhile queue up and are printed next


def walktest(config: Config, clock: Clock, pin_factory=None, duration_s: float = 300.0,
             out: Callable[[str], None] = print) -> int:
    """Print every PIR edge for `duration_s`; returns how many there were."""
    pir = PirTrigger(config.hardware.pir_pin, clock, pin_factory)
    led_pin = config.hardware.status_led_pin
    led = LED(led_pin, pin_factory=pin_factory) if led_pin is not None else None
    edges = 0
    end_ns = clock.monotonic_ns() + int(duration_s * 1e9)
    out(f"walktest: walk across the view; PIR on GPIO{config.hardware.pir_pin}"
        + (f", LED on GPIO{led_pin}" if led else ", no status LED configured"))
    try:
        while clock.monotonic_ns() < end_ns:
            pir.edge.clear()
            trigger = pir.get()
            if trigger is None:
                clock.wait_for(pir.edge, (end_ns - clock.monotonic_ns()) / 1e9)
                continue
            edges += 1
            when = datetime.fromtimestamp(trigger.t_wall_ns / 1e9).astimezone(config.time.tz)
            out(f"PIR edge {edges} at {when:%H:%M:%S.%f}"[:-3])
            if led is not None:
                led.blink(on_time=BLINK_S, off_time=0, n=1, background=False)
    finally:
        if led is not None:
            led.off()
            led.close()
        pir.close()
    return edges


@dataclass(frozen=True)
class Shot:
    """One photo before it is tagged: from `trapd snapshot`'s own camera, or from the
    running daemon's newest frame (trapd/setup/photo.py)."""
    jpeg: bytes                # untagged
    wall_ns: int
    sensor_timestamp_ns: int
    metadata: dict
    size: tuple[int, int]
    camera_model: str


def _shoot(config: Config, picamera2_class: type, clock: Clock, night: bool) -> Shot:
    camera = Camera(picamera2_class, config.hardware.camera, clock)
    camera.open()
    try:
        if night:
            camera.set_controls({"ExposureTime": config.night.max_exposure_us})
        for _ in range(3):              # let auto-exposure settle on a few frames
            camera.next_frame().release()
        frame = camera.next_frame()
        try:
            jpeg = frame.encode_jpeg(config.storage.jpeg_quality)
        finally:
            frame.release()
        return Shot(jpeg, frame.wall_ns, frame.sensor_timestamp_ns, dict(frame.metadata),
                    tuple(frame.main_size), camera.model)
    finally:
        camera.close()


def snapshot(config: Config, picamera2_class: type, clock: Clock, path: Path,
             night: bool = False) -> Path:
    """One JPEG with the current settings (night: with the exposure cap)."""
    shot = _shoot(config, picamera2_class, clock, night)
    path.write_bytes(shot.jpeg)
    return path


@dataclass(frozen=True)
class SetupPhoto:
    event_id: str
    path: Path          # the photo in the queue
    relative: str       # ... relative to the storage root, as the index names it


def setup_photo(config: Config, picamera2_class: type, clock: Clock, kind: str,
                storage_root: str | None = None, night: bool = False) -> SetupPhoto:
    """A setup (or pickup) photo: taken with the current settings, tagged like
    the trap's photos (EXIF and XMP, trigger source `kind`) and stored in the
    queue as a one-image event with trigger `kind`."""
    from trapd.daemon import station_info       # the daemon's imports stay out of walktest
    from trapd.storage import Store

    check_kind(kind)
    shot = _shoot(config, picamera2_class, clock, night)    # no event while the camera fails
    store = Store(storage_root or config.storage.root, config.storage.min_free_mb, recover=False)
    try:
        return store_setup_photo(store, station_info(config, shot.camera_model), shot, kind,
                                 clock)
    finally:
        store.close()


def check_kind(kind: str) -> None:
    if kind not in SETUP_TRIGGERS:
        raise ValueError(f"not a setup photo kind: {kind!r}")


def _at_once(work):
    return work()


def store_setup_photo(store, station, shot: Shot, kind: str, clock: Clock,
                      on_index_thread=_at_once, note: str | None = None) -> SetupPhoto:
    """`shot` tagged (trigger source `kind`) and stored in `store` as a one-image event
    with trigger `kind`. Index writes run through `on_index_thread(work)`: in the
    daemon, its loop (the index's one writer); the file is saved durably on the
    calling thread, between them, as the trap's writer threads do."""
    from trapd.storage import UNRECORDED

    synced = clock.is_synchronised()
    event = on_index_thread(lambda: store.open_event(
        station.station_id, station.deployment_id, kind, shot.sensor_timestamp_ns,
        shot.wall_ns, synced))
    if event.number == UNRECORDED:
        raise StorageError(f"the {kind} photo was not stored: the card at {store.root} is full")
    record, jpeg, relative = _tagged(station, shot, kind, event, synced)
    saved = store.save_file(relative, jpeg)

    def index_it() -> None:
        store.index_frame(record, jpeg, saved)
        store.close_event(event, clock.wall_ns(), note if saved else f"{kind} photo not saved")

    on_index_thread(index_it)
    if saved is None:
        raise StorageError(f"the {kind} photo was not stored in {store.root} (card full, or "
                           "its images folder unusable: see `trapd status`)")
    return SetupPhoto(event.event_id, Path(store.root) / saved, saved)


def _tagged(station, shot: Shot, kind: str, event, synced: bool | None):
    """The photo's index row, its tagged JPEG and its file name (the trap's pattern)."""
    from trapd.metadata import CaptureInfo, build_exif, build_xmp, local_time, tag_jpeg
    from trapd.moon import moon_phase
    from trapd.storage import FrameRecord

    media_id = uuid.uuid4().hex
    w, h = shot.size
    m = shot.metadata
    capture = CaptureInfo(
        wall_time_ns=shot.wall_ns, media_id=media_id, event_id=event.event_id,
        event_number=event.number, sequence=1,
        capture_method="",      # neither Camtrap DP value: taken by hand (export.py)
        trigger_source=kind, motion_score=None, width=w, height=h,
        exposure_time_us=m.get("ExposureTime"), analogue_gain=m.get("AnalogueGain"),
        digital_gain=m.get("DigitalGain"), lux=m.get("Lux"),
        moon_phase=moon_phase(shot.wall_ns).name, clock_synchronised=synced,
        pre_trigger=False, sensor_timestamp_ns=shot.sensor_timestamp_ns, event_length=1)
    jpeg = tag_jpeg(shot.jpeg, build_exif(station, capture), build_xmp(station, capture))
    when = local_time(shot.wall_ns, station.utc_offset)
    name = (f"{station.station_id}_{when:%Y%m%d_%H%M%S}_"
            f"E{event.number:06d}_01.jpg")      # the trap's pattern (trap.py _file_name)
    record = FrameRecord(
        event_number=event.number, sequence=1, sensor_timestamp_ns=shot.sensor_timestamp_ns,
        capture_wall_ns=shot.wall_ns, pre_trigger=False, score=None, kept=True,
        media_id=media_id, metadata={k: m[k] for k in ("ExposureTime", "AnalogueGain",
                                                       "DigitalGain", "Lux") if k in m})
    return record, jpeg, f"{when:%Y-%m-%d}/{name}"
