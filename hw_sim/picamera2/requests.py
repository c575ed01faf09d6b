"""Requests and jobs: picamera2's Job, CompletedRequest and MappedArray, and the part of
its event loop that hands frames to requests and jobs and keeps count of the buffers."""

from __future__ import annotations

import math
from concurrent.futures import CancelledError, Future
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

from .configuration import BYTES_PER_PIXEL, YUV_FORMATS
from .pixels import NS_PER_S, encode_jpeg, format_str, pil_mode, save_with_pil, shape_buffer, write_jpeg
from .sensor import Frame


class Job:
    """A capture or mode switch queued for the camera, finished by frames as they arrive.

    Same contract as picamera2.job.Job; get_result() waits in the camera's clock time.
    """

    def __init__(self, functions, signal_function=None):
        self._functions = functions
        self._future: Future = Future()
        self._future.set_running_or_notify_cancel()
        self._signal_function = signal_function
        self._result = None
        self._camera = None    # the Picamera2, set by dispatch_functions
        self.calls = 0

    def execute(self):
        """Run the job's steps while they complete; True once all have."""
        try:
            while self._functions:
                done, result = self._functions[0]()
                self.calls += 1
                if not done:
                    break
                self._functions.pop(0)
            if not self._functions:
                self._result = result
        except Exception as e:
            self._future.set_exception(e)
            self._functions = []
        return not self._functions

    def signal(self):
        if not self._future.done():
            self._future.set_result(self._result)
        if self._signal_function:
            self._signal_function(self)

    def get_result(self, timeout=None):
        """The job's result, waiting up to `timeout` seconds of clock time (None: for ever)."""
        if self._camera is not None and not self._future.done():
            self._camera._wait_for_job(self, timeout)
        return self._future.result(timeout=0 if self._camera is not None else timeout)

    def cancel(self):
        if not self._future.done():
            self._future.set_exception(CancelledError())


class SimRequest:
    """What libcamera hands picamera2: a frame's metadata and its buffers, rendered on demand."""

    def __init__(self, frame: Frame, render: Callable[[Frame, dict], np.ndarray]):
        self.frame = frame
        self.metadata = frame.metadata
        self._render = render
        self._buffers: dict[str, np.ndarray] = {}

    def buffer(self, name: str, stream_config: dict) -> np.ndarray:
        if name not in self._buffers:
            self._buffers[name] = self._render(self.frame, stream_config)
        return self._buffers[name]


class CompletedRequest:
    """A frame handed to the application; it holds one of the camera's buffers until the last
    release()."""

    def __init__(self, request, picam2):
        self.request = request
        self.ref_count = 1
        self.picam2 = picam2
        self.lock = picam2._lock
        self.stop_count = picam2.stop_count
        self.configure_count = picam2.configure_count
        self.config = picam2.camera_config.copy()
        picam2._buffer_taken()

    def acquire(self):
        with self.lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self):
        with self.lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            if self.ref_count == 0:
                self.picam2._buffer_returned(self)
                self.request = None
                self.config = {}

    def make_buffer(self, name):
        return self._buffer(name).copy()

    def get_metadata(self):
        return dict(self._live().metadata)

    def make_array(self, name):
        return shape_buffer(self._buffer(name), self._stream_config(name)).copy()

    def make_image(self, name, width=None, height=None):
        config = self._stream_config(name)
        mode = pil_mode(config["format"])
        array = shape_buffer(self._buffer(name), config).copy()
        image = Image.frombuffer("RGB", (array.shape[1], array.shape[0]), array, "raw", mode, 0, 1)
        width = width or array.shape[1]
        height = height or array.shape[0]
        if (width, height) != image.size:
            image = image.resize((width, height))
        return image

    def save(self, name, file_output, format=None, exif_data=None):
        """JPEG through simplejpeg with picamera2's EXIF; other formats through PIL."""
        config = self._stream_config(name)
        if format_str(file_output, format) in ("jpg", "jpeg"):
            array = shape_buffer(self._buffer(name), config)
            jpeg = encode_jpeg(array, config, self.picam2.options.get("quality", 90))
            exif = self.picam2._exif_bytes(self.get_metadata(), exif_data)
            write_jpeg(file_output, jpeg, exif)
        else:
            save_with_pil(self.make_image(name), file_output, format, self.picam2.options)

    # -- internals -------------------------------------------------------------------------
    def _live(self) -> SimRequest:
        if self.request is None:
            raise RuntimeError("CompletedRequest has been released")
        return self.request

    def _stream_config(self, name) -> dict:
        config = self.config.get(name)
        if config is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        return config

    def _buffer(self, name) -> np.ndarray:
        config = self._stream_config(name)
        if config["format"] not in BYTES_PER_PIXEL:
            raise RuntimeError(f"hw_sim does not simulate pixel data for the {name} stream "
                               f"({config['format']})")
        return self._live().buffer(name, config)


class MappedArray:
    """picamera2.MappedArray: a request's buffer as an array, in place, while the context is
    open."""

    def __init__(self, request, stream, reshape=True, write=True):
        self._request = request
        self._stream = stream
        self._reshape = reshape
        self._array = None

    def __enter__(self):
        buffer = self._request._buffer(self._stream)
        if self._reshape:
            config = self._request._stream_config(self._stream)
            if config["format"] in YUV_FORMATS:
                buffer = shape_buffer(buffer, config)
            else:
                bpp = BYTES_PER_PIXEL[config["format"]]
                buffer = buffer.reshape((config["size"][1], config["stride"] // bpp, bpp))
        self._array = buffer
        return self

    def __exit__(self, exc_type, exc_value, exc_traceback):
        self._array = None

    @property
    def array(self):
        return self._array


class RequestLoop:
    """picamera2's request handling, mixed into Picamera2: frames arriving become
    CompletedRequests (while a buffer is free to take them), queued jobs run on them, and
    callers wait for jobs in clock time. Uses the camera's _lock, _wake, _clock, _rig, _sensor,
    _jobs, _completed, _max_queue_len, _buffers_in_use, _granted_buffers, _lost,
    _blackout_until_ns and _no_buffer_before_ns.

    A frame needs a free buffer: libcamera has as many requests as the stream with the fewest
    buffers granted, so with all of them held (by the application, or queued) no frame lands."""

    # -- frames arriving -------------------------------------------------------------------
    def _on_frame_arrival(self, stop_count: int, frame: Frame):
        """A frame reaches memory (or is lost): picamera2's event loop, in the clock's thread."""
        with self._lock:
            if stop_count != self.stop_count or not self.started:
                return
            self._expose_next_frame()
            if not self._frame_lands(frame):
                return
            self._completed.append(CompletedRequest(SimRequest(frame, self._sensor.render), self))
            self._rig.frames_delivered += 1
            finished = self._run_jobs()
            while len(self._completed) > self._max_queue_len:
                self._completed.pop(0).release()
            self._wake.notify_all()
        for job in finished:
            job.signal()

    def _frame_lands(self, frame: Frame) -> bool:
        """Whether the frame reaches a buffer: no fault, and a buffer free to take it."""
        if self._lost or self._rig._hung:
            return False
        if self._blackout_until_ns is not None:
            if frame.arrives_at_ns <= self._blackout_until_ns:
                return False
            self._blackout_until_ns = None
        if frame.sensor_timestamp_ns < self._no_buffer_before_ns:
            return False
        return self._buffers_in_use < self._granted_buffers

    def _frames_can_arrive(self) -> bool:
        return (self.started and not self._lost and not self._rig._hung
                and self._blackout_until_ns != math.inf
                and self._buffers_in_use < self._granted_buffers)

    # -- buffers ---------------------------------------------------------------------------
    def _buffer_taken(self):
        with self._lock:
            self._buffers_in_use += 1

    def _buffer_returned(self, request: CompletedRequest):
        with self._lock:
            if request.stop_count != self.stop_count or not self.started:
                return
            if self._buffers_in_use >= self._granted_buffers:
                # Frames being read out right now had no buffer to go to.
                self._no_buffer_before_ns = self._clock.monotonic_ns()
            self._buffers_in_use -= 1
            self._wake.notify_all()

    # -- faults ----------------------------------------------------------------------------
    def _begin_blackout(self, wait):
        """No frame arrives for this capture: for `wait` seconds, or until clear_faults()."""
        if is_number(wait):
            until: float = self._clock.monotonic_ns() + seconds_to_ns(wait)
        else:
            until = math.inf
        self._blackout_until_ns = max(self._blackout_until_ns or 0, until)
        queued, self._completed = self._completed, []
        for request in queued:
            request.release()

    def _lose(self):
        with self._lock:
            self._lost = True
            self._wake.notify_all()

    def _clear_faults(self):
        with self._lock:
            self._blackout_until_ns = None
            self._wake.notify_all()

    # -- jobs ------------------------------------------------------------------------------
    def _run_jobs(self) -> list[Job]:
        finished = []
        while self._jobs and self._jobs[0].execute():
            finished.append(self._jobs.pop(0))
        return finished

    def _cancel_jobs(self):
        for job in self._jobs:
            job.cancel()
        self._jobs = []

    def _wait_for_job(self, job: Job, timeout):
        """Advance the clock frame by frame until the job is done; TimeoutError after `timeout`
        seconds. With no timeout and no frame able to arrive, block until something changes."""
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic_ns() + seconds_to_ns(timeout)
        while not job._future.done():
            with self._lock:
                if deadline is None and not self._frames_can_arrive():
                    self._wake.wait()
                    continue
                next_arrival = self._next_arrival_ns if self.started else None
            clock.advance_to(earliest(next_arrival, deadline))
            if not job._future.done() and deadline is not None and clock.monotonic_ns() >= deadline:
                raise TimeoutError(f"no frame from the camera within {timeout} s")


def seconds_to_ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def earliest(*times: Optional[float]) -> int:
    return int(min(t for t in times if t is not None))
