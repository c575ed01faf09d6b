"""Camera stage: the only code that talks to Picamera2.

`Camera` is handed the Picamera2 *class* (the real `picamera2.Picamera2` on a
Pi, hw_sim's stand-in elsewhere) and runs one video-style configuration with a
YUV420 `main` stream for the images and a small YUV420 `lores` stream for the
filter. Every capture has a `wait=` timeout: an untimed capture hangs forever
when libcamera's frontend times out. On a timeout or error the camera is
cancelled, stopped and closed, and reopened with back-off: at once, then 1, 2,
4 ... s apart up to `RETRY_MAX_DELAY_S`, for as long as it keeps failing (the
daemon does not exit for a camera; systemd's watchdog, fed only while frames
arrive, restarts it). An outage is logged when it starts, then at most once per
back-off ceiling with the count of failures not logged, and when frames return;
it is the degraded state `camera_unavailable` while it lasts.

A kept frame's main image is normally copied out of its camera buffer, so the
buffer goes back to the camera at once. While the camera can spare buffers
(`lend_main`), an encoder reads the image in place instead (picamera2's
MappedArray) and the buffer goes back when the JPEG is made: at 12 MP that
saves copying 18.5 MB per frame. The camera is never stopped or closed under
an encoder still reading one of its buffers.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import simplejpeg

from trapd.camera_config import CameraMismatch, Granted, check_granted, video_configuration
from trapd.clock import Clock
from trapd.config import CameraConfig
from trapd.errors import CameraUnavailable, CaptureFailed
from trapd.health import CAMERA_UNAVAILABLE, Health

log = logging.getLogger(__name__)

NS = 1_000_000_000
# `open()`, for a caller that wants the camera now or an error (`trapd snapshot`).
REOPEN_ATTEMPTS = 5
REOPEN_FIRST_DELAY_S = 1.0
REOPEN_MAX_DELAY_S = 30.0
# The running trap's back-off while the camera keeps failing: the first retry at
# once (a one-off timeout costs nothing more), then RETRY_FIRST_DELAY_S, doubling
# up to RETRY_MAX_DELAY_S, which is also the longest a failing camera goes unlogged.
RETRY_FIRST_DELAY_S = 1.0
RETRY_MAX_DELAY_S = 300.0
# The longest single wait of a back-off (the trap waits in steps of at most this):
# a stop request that slips in just before a wait is seen this much later at worst.
RETRY_WAIT_STEP_S = 1.0
OPEN_ERRORS = (RuntimeError, OSError, TimeoutError)
# What a skipped control would have done, for the log line that says it was skipped.
CONTROL_PURPOSE = {"ExposureTime": "the night exposure cap",
                   "AnalogueGain": "the gain limit"}
# Longest a stop or close waits for lent buffers: several 12 MP encodes on a Pi Zero.
LENT_BUFFERS_WAIT_S = 30.0


def yuv420_planes(array: np.ndarray, width: int, height: int):
    """Y, U, V views of a picamera2 YUV420 array of shape (h*3/2, stride)."""
    y = array[:height, :width]
    chroma_rows = array.reshape(array.shape[0] * 2, array.shape[1] // 2)
    u = chroma_rows[2 * height: 2 * height + height // 2, : width // 2]
    v = chroma_rows[2 * height + height // 2:, : width // 2]
    return y, u, v


@dataclass
class Frame:
    """One camera frame. While `request` is held, the camera buffer behind
    `main` is ours; `release()` hands it back (picamera2 stalls when all its
    buffers are held)."""

    sensor_timestamp_ns: int
    wall_ns: int
    metadata: dict
    lores_y: np.ndarray
    main_size: tuple[int, int]
    request: object | None = field(default=None, repr=False)

    def encode_jpeg(self, quality: int) -> bytes:
        if self.request is None:
            raise CaptureFailed("frame buffer already released")
        w, h = self.main_size
        y, u, v = yuv420_planes(self.request.make_array("main"), w, h)
        return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=quality)

    def release(self) -> None:
        if self.request is not None:
            self.request.release()
            self.request = None


class LentMain:
    """A frame's main image, read where the camera put it. Its camera buffer
    stays out of the camera's hands until `encode` has run."""

    nbytes = 0   # camera memory, not the process's: bounded by the buffers lent

    def __init__(self, request, size: tuple[int, int], mapped_array: type, give_back) -> None:
        self._request = request
        self.size = size
        self._mapped_array = mapped_array
        self._give_back = give_back

    def encode(self, encode, quality: int) -> bytes:
        try:
            # Read only: the dma-buf sync then need not write CPU caches back for the camera.
            with self._mapped_array(self._request, "main", write=False) as mapped:
                return encode(*yuv420_planes(mapped.array, *self.size), quality)
        finally:
            self._request.release()
            self._request = None
            self._give_back()


class _Outage:
    """A run of camera failures with no frame between them: when to try next,
    and what has not been logged yet."""

    def __init__(self, now_ns: int, why: str) -> None:
        self.since_ns = now_ns
        self.why = why
        self.failures = 1
        self.delay_s = 0.0              # the first retry goes at once
        self.retry_at_ns = now_ns
        self.logged_ns = now_ns
        self.unlogged = 0

    def failed(self, now_ns: int, why: str) -> str | None:
        """Count a failure and set the next attempt; a log line if one is due."""
        self.failures += 1
        self.why = why
        self.delay_s = (RETRY_FIRST_DELAY_S if self.delay_s == 0
                        else min(self.delay_s * 2, RETRY_MAX_DELAY_S))
        self.retry_at_ns = now_ns + int(self.delay_s * NS)
        self.unlogged += 1
        if now_ns - self.logged_ns < RETRY_MAX_DELAY_S * NS:
            return None
        more = "1 more failure" if self.unlogged == 1 else f"{self.unlogged} more failures"
        line = (f"camera still failing: {more} in the last "
                f"{(now_ns - self.logged_ns) / NS:.0f} s (latest: {why}); "
                f"next attempt in {self.delay_s:g} s")
        self.logged_ns, self.unlogged = now_ns, 0
        return line


class Camera:
    def __init__(self, picamera2_class: type, config: CameraConfig, clock: Clock,
                 camera_num: int = 0, health: Health | None = None) -> None:
        self._picamera2_class = picamera2_class
        self._config = config
        self._clock = clock
        self._camera_num = camera_num
        self._health = health           # where an outage is reported (camera_unavailable)
        self._picam2 = None
        self.model = "unknown"
        self._mapped_array = _mapped_array_class(picamera2_class)
        self._lent = 0
        self._lent_back = threading.Condition()
        self._outage: _Outage | None = None
        self._controls: dict = {}       # set_controls so far, applied again on a reopen
        self._granted: Granted | None = None    # what the open camera granted
        self._missing_controls: set[str] = set()    # not advertised, logged once each

    def open(self) -> None:
        """Open and start now, retrying a few times with back-off; CameraUnavailable
        if it never works. For a caller that needs the camera at once (`trapd
        snapshot`); the daemon uses `try_open` and keeps retrying instead."""
        delay = REOPEN_FIRST_DELAY_S
        for attempt in range(1, REOPEN_ATTEMPTS + 1):
            try:
                self._open_once()
                return
            except CameraMismatch as exc:     # the same camera grants the same again
                self._close_quietly()
                raise CameraUnavailable(str(exc)) from exc
            except OPEN_ERRORS as exc:
                self._close_quietly()
                log.warning("camera open attempt %d/%d failed: %s", attempt, REOPEN_ATTEMPTS, exc)
                if attempt == REOPEN_ATTEMPTS:
                    raise CameraUnavailable(
                        f"camera {self._camera_num} did not open after {REOPEN_ATTEMPTS} attempts: {exc}"
                    ) from exc
                self._clock.sleep(delay)
                delay = min(delay * 2, REOPEN_MAX_DELAY_S)

    def try_open(self) -> bool:
        """One attempt to open and start (the daemon at boot). If it fails, the
        camera is failing: `next_frame` retries it with back-off. True if open."""
        try:
            self._open_once()
        except OPEN_ERRORS as exc:
            self._close_quietly()
            self._failed(f"open failed: {exc}")
            return False
        return True

    def retry_in_s(self) -> float:
        """Seconds until `next_frame` may try the failing camera again (0: now)."""
        if self._outage is None or self._picam2 is not None:
            return 0.0
        left_ns = max(0, self._outage.retry_at_ns - self._clock.monotonic_ns())
        return -(-left_ns // 1000) / 1e6    # whole microseconds, rounded up: a wait of it is enough

    def _open_once(self) -> None:
        if not self._picamera2_class.global_camera_info():
            raise RuntimeError(f"no camera found (is the ribbon cable seated? camera {self._camera_num})")
        picam2 = self._picamera2_class(self._camera_num)
        self._picam2 = picam2
        self.model = str(picam2.camera_properties.get("Model", "unknown"))
        picam2.configure(video_configuration(picam2, self._picamera2_class, self._config))
        self._granted = check_granted(picam2, self._picamera2_class, self._config)
        if self._controls:      # e.g. the night exposure cap, from the first frame on
            self._apply_controls(dict(self._controls))
        picam2.start()

    def next_frame(self) -> Frame:
        """The next frame, newest first. On a timeout or camera error the camera
        is closed and CaptureFailed raised so the caller can note it. While the
        camera is failing, a call reopens it only once the back-off allows
        (`retry_in_s`); before that it raises CaptureFailed at once, without
        touching the camera or the log."""
        if self._picam2 is None:
            self._reopen_when_due()
        try:
            request = self._picam2.capture_request(wait=self._config.capture_timeout_s)
        except (TimeoutError, RuntimeError, OSError) as exc:
            kind = "timed out" if isinstance(exc, TimeoutError) else "failed"
            why = f"capture {kind}: {exc or type(exc).__name__}"
            self._close_quietly()
            self._failed(why)
            raise CaptureFailed(why) from exc
        frame = self._frame_from(request)
        if self._outage is not None:
            self._recovered()
        return frame

    def _reopen_when_due(self) -> None:
        outage = self._outage
        if outage is not None and self._clock.monotonic_ns() < outage.retry_at_ns:
            raise CaptureFailed(outage.why)
        try:
            self._open_once()
        except OPEN_ERRORS as exc:
            self._close_quietly()
            why = f"open failed: {exc}"
            self._failed(why)
            raise CaptureFailed(why) from exc

    def _failed(self, why: str) -> None:
        """A capture or open failed: back off, log (few lines), report the state."""
        now = self._clock.monotonic_ns()
        if self._outage is None:
            self._outage = _Outage(now, why)
            log.error("camera %s; %s with back-off (at most %g s apart; logged again at most "
                      "every %g s)", why, "retrying" if why.startswith("open") else "reopening it",
                      RETRY_MAX_DELAY_S, RETRY_MAX_DELAY_S)
        else:
            line = self._outage.failed(now, why)
            if line:
                log.error(line)
        if self._health is not None:
            self._health.set(CAMERA_UNAVAILABLE, why)

    def _recovered(self) -> None:
        outage, self._outage = self._outage, None
        how = (f"frames again after {outage.failures} failures in "
               f"{(self._clock.monotonic_ns() - outage.since_ns) / NS:.1f} s")
        log.warning("camera back: %s", how)
        if self._health is not None:
            self._health.clear(CAMERA_UNAVAILABLE, how)

    def _frame_from(self, request) -> Frame:
        metadata = request.get_metadata()
        timestamp = int(metadata["SensorTimestamp"])
        wall_ns = timestamp + (self._clock.wall_ns() - self._clock.monotonic_ns())
        w, h = self._config.lores_size
        lores_y = request.make_array("lores")[:h, :w]
        return Frame(timestamp, wall_ns, metadata, lores_y, tuple(self._config.main_size), request)

    def lend_main(self, frame: Frame, most: int) -> LentMain | None:
        """The frame's main image in its own camera buffer, to be encoded in place,
        if fewer than `most` buffers are lent already; else None (copy it instead).
        The frame gives up its request: `frame.release()` no longer touches it."""
        if frame.request is None or self._mapped_array is None:
            return None
        with self._lent_back:
            if self._lent >= most:
                return None
            self._lent += 1
        request, frame.request = frame.request, None
        return LentMain(request, frame.main_size, self._mapped_array, self._buffer_back)

    def main_subsampled(self, frame: Frame, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of the frame's main Y, U and V, every `step`th pixel (the live
        view): read in place where the camera maps its buffer, so a 12 MP frame
        costs a small copy, not a full one."""
        w, h = frame.main_size
        if self._mapped_array is None:
            planes = yuv420_planes(frame.request.make_array("main"), w, h)
            return tuple(np.ascontiguousarray(p[::step, ::step]) for p in planes)
        with self._mapped_array(frame.request, "main", write=False) as mapped:
            planes = yuv420_planes(mapped.array, w, h)
            return tuple(np.ascontiguousarray(p[::step, ::step]) for p in planes)

    def _buffer_back(self) -> None:
        with self._lent_back:
            self._lent -= 1
            self._lent_back.notify_all()

    def _wait_for_lent_buffers(self) -> None:
        """Stopping or closing unmaps the buffers: wait until no encoder reads one."""
        with self._lent_back:
            if not self._lent_back.wait_for(lambda: self._lent == 0, LENT_BUFFERS_WAIT_S):
                log.error("%d camera buffers still being encoded after %.0f s; stopping the "
                          "camera anyway", self._lent, LENT_BUFFERS_WAIT_S)

    def set_controls(self, controls: dict) -> None:
        """Apply camera controls (e.g. the night exposure cap) to later frames,
        also those of a reopened camera."""
        self._controls.update(controls)
        if self._picam2 is not None:
            self._apply_controls(controls)

    def _apply_controls(self, controls: dict) -> None:
        """Set the controls this camera advertises; skip the others with one log line each."""
        advertised = self._granted.controls if self._granted else None
        if advertised is not None:
            for name in sorted(set(controls) - advertised - self._missing_controls):
                self._missing_controls.add(name)
                log.warning("camera %s has no %s control: %s is skipped", self.model, name,
                            CONTROL_PURPOSE.get(name, "setting it"))
            controls = {k: v for k, v in controls.items() if k in advertised}
        if controls:
            self._picam2.set_controls(controls)

    @property
    def buffers(self) -> int:
        """Camera buffers per stream: those granted once open, else those asked."""
        return self._granted.buffers if self._granted else self._config.buffer_count

    @property
    def running(self) -> bool:
        return self._picam2 is not None and bool(getattr(self._picam2, "started", True))

    def stop(self) -> None:
        """Stop the sensor (standby); `start()` resumes with the same configuration."""
        if self._picam2 is None:
            return      # failing: closed already
        self._wait_for_lent_buffers()
        self._picam2.stop()

    def start(self) -> None:
        """Restart a stopped sensor; a failing camera is reopened by `next_frame` instead."""
        if self._picam2 is not None:
            self._picam2.start()

    def close(self) -> None:
        self._close_quietly()

    def _close_quietly(self) -> None:
        picam2, self._picam2 = self._picam2, None
        if picam2 is None:
            return
        self._wait_for_lent_buffers()
        for step in ("cancel_all_and_flush", "stop", "close"):
            try:
                getattr(picam2, step)()
            except Exception as exc:  # a dying camera may fail any step; the next must still run
                log.debug("camera %s during recovery failed: %s", step, exc)


def _mapped_array_class(picamera2_class: type) -> type | None:
    """picamera2.MappedArray beside the real class; hw_sim's beside the stand-in.
    None (always copy) for a camera module without one."""
    module = picamera2_class.__module__
    for name in (module, module.partition(".")[0]):
        mapped_array = getattr(sys.modules.get(name), "MappedArray", None)
        if mapped_array is not None:
            return mapped_array
    return None


class FrameRing:
    """The most recent frames, for pre-trigger capture and the background.

    Holds the camera requests of the newest `hold` frames (zero-copy; the
    config keeps `hold` at most buffer_count - 2 so capture never stalls) and
    the lores Y planes of the newest `keep_lores` frames in preallocated
    slots. A frame pushed out of the hold window has its request released;
    `take_before` moves frames out, and their release becomes the caller's job.
    """

    def __init__(self, hold: int, keep_lores: int, lores_size: tuple[int, int]) -> None:
        w, h = lores_size
        self.hold = hold        # lowered when the camera granted fewer buffers than asked
        self._held: deque[Frame] = deque()
        self._lores = np.zeros((max(keep_lores, 1), h, w), np.uint8)
        self._lores_ts = np.full(max(keep_lores, 1), -1, np.int64)
        self._next_slot = 0
        # The two newest frames seen, stored in an event or not: the filter compares
        # each frame it scores with the camera frame just before it. A frame's lores
        # plane is its own copy (make_array), so it is kept by reference.
        self._seen: deque[tuple[int, np.ndarray]] = deque(maxlen=2)

    def push(self, frame: Frame) -> None:
        slot = self._next_slot
        self._lores[slot] = frame.lores_y
        self._lores_ts[slot] = frame.sensor_timestamp_ns
        self._next_slot = (slot + 1) % len(self._lores)
        if self.hold == 0:
            frame.release()
            return
        self._held.append(frame)
        while len(self._held) > self.hold:
            self._held.popleft().release()

    def take_before(self, t_ns: int) -> list[Frame]:
        """Held frames that started before `t_ns`, oldest first; the ring forgets them."""
        taken = [f for f in self._held if f.sensor_timestamp_ns < t_ns]
        self._held = deque(f for f in self._held if f.sensor_timestamp_ns >= t_ns)
        return taken

    def lores_before(self, t_ns: int) -> list[np.ndarray]:
        order = np.argsort(self._lores_ts)
        return [self._lores[i] for i in order if 0 <= self._lores_ts[i] < t_ns]

    def see(self, frame: Frame) -> None:
        """Note a frame as the newest seen (every frame, before it is used)."""
        self._seen.append((frame.sensor_timestamp_ns, frame.lores_y))

    def lores_just_before(self, t_ns: int, max_gap_ns: int) -> np.ndarray | None:
        """The lores Y plane of the newest frame from before `t_ns`, if it came
        at most `max_gap_ns` before it (the previous camera frame, not an older one)."""
        earlier = [(ts, self._lores[i]) for i, ts in enumerate(self._lores_ts) if 0 <= ts < t_ns]
        earlier += [(ts, lores) for ts, lores in self._seen if ts < t_ns]
        if not earlier:
            return None
        newest_ns, lores = max(earlier, key=lambda seen: seen[0])
        return lores if t_ns - newest_ns <= max_gap_ns else None

    def forget_lores(self) -> None:
        """Drop the background frames (the light changed: they no longer match)."""
        self._lores_ts[:] = -1
        self._seen.clear()

    def clear(self) -> None:
        while self._held:
            self._held.popleft().release()
        self._lores_ts[:] = -1
        self._seen.clear()
