"""Technician aids: `trapd walktest` (aim the PIR) and `trapd snapshot` (frame a test image).

walktest: the status LED blinks once on every PIR edge and each edge is
printed with its time, so whoever walks in front of the trap sees where the
sensor's zone is. Outside walktest the LED stays dark (it could scare
animals or draw people).
snapshot: one JPEG with the current camera settings (size, rotation, night
exposure cap), for framing the view.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Callable

from gpiozero import LED

from trapd.camera import Camera
from trapd.clock import Clock
from trapd.config import Config
from trapd.trigger import PirTrigger

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


def snapshot(config: Config, picamera2_class: type, clock: Clock, path: Path,
             night: bool = False) -> Path:
    """One JPEG with the current settings (night: with the exposure cap)."""
    camera = Camera(picamera2_class, config.hardware.camera, clock)
    camera.open()
    try:
        if night:
            camera.set_controls({"ExposureTime": config.night.max_exposure_us})
        for _ in range(3):              # let auto-exposure settle on a few frames
            camera.next_frame().release()
        frame = camera.next_frame()
        jpeg = frame.encode_jpeg(config.storage.jpeg_quality)
        frame.release()
    finally:
        camera.close()
    path.write_bytes(jpeg)
    return path
