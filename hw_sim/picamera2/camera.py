"""Picamera2: the simulated camera's public API (configurations, start/stop, controls, jobs
and captures), over a Sensor (sensor.py) and picamera2's request handling (requests.py)."""

from __future__ import annotations

import contextlib
import threading
from functools import partial
from typing import Optional

from .configuration import (
    PREVIEW_CONTROLS, PREVIEW_MAIN, STILL_CONTROLS, VIDEO_CONTROLS, VIDEO_MAIN, add_strides,
    align_stream, check_camera_config, check_display_and_encode, check_stream_config,
    configure_raw_stream, grant_colour_space, libcamera_configuration, make_configuration,
    require_simulated_formats, sensor_output_size)
from .libcamera_types import ColorSpace, Transform
from .pixels import exif_bytes
from .requests import CompletedRequest, Job, MappedArray, RequestLoop
from .sensor import (
    AF_MODE_AUTO, AF_STATE_FOCUSED, AF_STATE_SCANNING, AF_TRIGGER_START, Sensor,
    choose_sensor_mode, control_ranges)

# trapd finds MappedArray, Transform and ColorSpace beside the class it is handed.
__all__ = ["ColorSpace", "MappedArray", "Picamera2", "Transform"]


class Picamera2(RequestLoop):
    """The simulated camera. Use ``CameraRig(...).picamera2_class``: this base class has no rig
    and therefore no camera."""

    _rig = None     # the CameraRig, on the class a rig makes

    @staticmethod
    def global_camera_info():
        return []

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
        self.is_open = False
        self.started = False
        rig = type(self)._rig
        if rig is None:
            raise RuntimeError(f"No camera number {camera_num} found "
                               "(use CameraRig(...).picamera2_class)")
        rig._check_can_open(camera_num)
        self._rig = rig
        self._clock = rig.clock
        self._spec = rig._spec
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._control_ranges = control_ranges(self._spec, rig.autofocus, rig.without_controls)
        self._properties = rig._properties()
        self._sensor = Sensor(rig, self._clock, self._control_ranges)
        self.camera_idx = camera_num
        self.sensor_resolution = self._spec.resolution
        self.sensor_format = self._spec.bayer_format
        self.options: dict = {}
        self.camera_config: Optional[dict] = None
        self.libcamera_config = {}    # what libcamera granted, once configured (picamera2: {} till then)
        self._granted_buffers = 0     # requests libcamera can fill: the fewest buffers of a stream
        self.stop_count = 0
        self.configure_count = 0
        self._jobs: list[Job] = []
        self._completed: list[CompletedRequest] = []
        self._max_queue_len = 0
        self._buffers_in_use = 0
        self._frame_drops = 0
        self._next_sensor_timestamp_ns = 0
        self._next_arrival_ns: Optional[int] = None
        self._lost = False                       # unplugged while open: never delivers again
        self._blackout_until_ns: Optional[float] = None   # a timeout_next() fault
        self._no_buffer_before_ns = 0            # frames read out while every buffer was held
        self._sensor_modes_read = False
        self.is_open = True
        rig._register(self)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_traceback):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    # -- properties ------------------------------------------------------------------------
    @property
    def camera_properties(self):
        return dict(self._properties) if self.is_open else {}

    @property
    def camera_controls(self):
        return dict(self._control_ranges) if self.is_open else {}

    @property
    def sensor_modes(self):
        """The sensor's modes. Like picamera2 this reconfigures the sensor, so read it before
        start()."""
        self._require_open()
        if self.started and not self._sensor_modes_read:
            raise RuntimeError("Camera must be stopped before configuring")
        self._sensor_modes_read = True
        spec = self._spec
        return [{"format": spec.bayer_format, "unpacked": spec.bayer_format.split("_")[0],
                 "bit_depth": spec.bit_depth, "size": mode.size, "fps": mode.fps,
                 "crop_limits": mode.crop, "exposure_limits": (*spec.exposure_us, None)}
                for mode in spec.modes]

    # -- configurations --------------------------------------------------------------------
    def create_preview_configuration(self, main={}, lores=None, raw={}, transform=Transform(),
                                     colour_space=ColorSpace.Sycc(), buffer_count=4, controls={},
                                     display="main", encode="main", queue=True, sensor={},
                                     use_case="preview"):
        return self._make_configuration(
            use_case, PREVIEW_MAIN, main, lores, raw, transform, colour_space, buffer_count,
            controls, display, encode, queue, sensor, PREVIEW_CONTROLS)

    def create_still_configuration(self, main={}, lores=None, raw={}, transform=Transform(),
                                   colour_space=ColorSpace.Sycc(), buffer_count=1, controls={},
                                   display=None, encode=None, queue=True, sensor={}, use_case="still"):
        return self._make_configuration(
            use_case, {"format": "BGR888", "size": self.sensor_resolution, "preserve_ar": True}, main,
            lores, raw, transform, colour_space, buffer_count, controls, display, encode, queue,
            sensor, STILL_CONTROLS)

    def create_video_configuration(self, main={}, lores=None, raw={}, transform=Transform(),
                                   colour_space=None, buffer_count=6, controls={}, display="main",
                                   encode="main", queue=True, sensor={}, use_case="video"):
        return self._make_configuration(
            use_case, VIDEO_MAIN, main, lores, raw, transform, colour_space, buffer_count,
            controls, display, encode, queue, sensor, VIDEO_CONTROLS)

    @staticmethod
    def align_stream(stream_config, optimal=True):
        align_stream(stream_config, optimal=optimal)

    @staticmethod
    def align_configuration(config, optimal=True):
        Picamera2.align_stream(config["main"], optimal=optimal)
        if config.get("lores") is not None:
            Picamera2.align_stream(config["lores"], optimal=optimal)

    def check_stream_config(self, stream_config, name):
        check_stream_config(stream_config, name)

    def check_camera_config(self, camera_config):
        check_camera_config(camera_config, self.check_stream_config)

    def configure(self, camera_config=None):
        self.configure_("preview" if camera_config is None else camera_config)

    def configure_(self, camera_config):
        self._require_open()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = self._resolve_configuration(camera_config)
        self.camera_config = None
        self.libcamera_config = {}
        self.check_camera_config(config)
        require_simulated_formats(config)
        check_display_and_encode(config)
        controls = self._validated_controls(config["controls"])
        mode = choose_sensor_mode(self._spec.modes, sensor_output_size(config))
        add_strides(config["main"])
        if config["lores"] is not None:
            add_strides(config["lores"])
        if config["raw"] is not None:
            configure_raw_stream(config["raw"], self._spec.bayer_format, self._spec.bit_depth, mode.size)
        config["sensor"] = {"bit_depth": self._spec.bit_depth, "output_size": mode.size}
        grant_colour_space(config)
        granted = config["buffer_count"]
        if self._rig.max_buffer_count is not None:
            granted = min(granted, self._rig.max_buffer_count)
        libcamera_config = libcamera_configuration(config, granted)
        with self._lock:
            # picamera2 decides on the asked count, whatever was granted.
            self._max_queue_len = 1 if config["queue"] and config["buffer_count"] > 1 else 0
            self._sensor.configure(mode, controls)
            self._granted_buffers = min(stream.buffer_count for stream in libcamera_config)
            self.libcamera_config = libcamera_config
            self.camera_config = config
            self.configure_count += 1

    def camera_configuration(self):
        return self.camera_config

    def stream_configuration(self, name="main"):
        return self.camera_config[name]

    # -- running ---------------------------------------------------------------------------
    def start(self, config=None, show_preview=False):
        if self.camera_config is None and config is None:
            config = "preview"
        if config is not None:
            self.configure(config)
        self.start_()

    def start_(self):
        self._require_open()
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        with self._lock:
            if self.started:
                return
            self.started = True
            self._buffers_in_use = 0
            self._no_buffer_before_ns = 0
            self._sensor.frames_since_start = 0
            self._next_sensor_timestamp_ns = self._clock.monotonic_ns()
            self._expose_next_frame()
            self._wake.notify_all()

    def stop(self):
        if self.started:
            self.stop_()

    def stop_(self, request=None):
        with self._lock:
            if self.started:
                self.stop_count += 1
                self.started = False
                self._next_arrival_ns = None
                queued, self._completed = self._completed, []
                for completed in queued:
                    completed.release()
                self._buffers_in_use = 0
                self._wake.notify_all()
        return (True, None)

    def close(self):
        if not self.is_open:
            return
        self.stop()
        with self._lock:
            self._cancel_jobs()
            self.is_open = False
            self.camera_config = None
            self.libcamera_config = {}
            self._wake.notify_all()

    def set_controls(self, controls):
        with self._lock:
            self._sensor.set_controls(self._validated_controls(controls))

    def cancel_all_and_flush(self):
        with self._lock:
            self._cancel_jobs()
            self._wake.notify_all()

    # -- jobs ------------------------------------------------------------------------------
    def dispatch_functions(self, functions, wait, signal_function=None, immediate=False):
        if wait is None:
            wait = signal_function is None
        timeout = None if wait is True else wait
        job = Job(functions, signal_function)
        job._camera = self
        with self._lock:
            only_job = not self._jobs
            self._jobs.append(job)
            finished = self._run_jobs() if only_job and (self._completed or immediate) else []
        for done in finished:
            done.signal()
        return job.get_result(timeout=timeout) if wait else job

    def wait(self, job, timeout=None):
        return job.get_result(timeout=timeout)

    def set_frame_drops_(self, num_frames):
        self._frame_drops = num_frames
        return (True, None)

    def drop_frames_(self):
        while self._completed:
            if self._frame_drops == 0:
                return (True, None)
            self._completed.pop(0).release()
            self._frame_drops -= 1
        return (False, None)

    def wait_for_timestamp_(self, timestamp_ns):
        if not timestamp_ns:
            return (True, None)
        while self._completed:
            metadata = self._completed[0].get_metadata()
            if metadata["SensorTimestamp"] - 1000 * metadata["ExposureTime"] >= timestamp_ns:
                return (True, None)
            self._completed.pop(0).release()
        return (False, None)

    def capture_request_(self):
        if not self._completed:
            return (False, None)
        return (True, self._completed.pop(0))

    def capture_metadata_(self):
        if not self._completed:
            return (False, None)
        request = self._completed.pop(0)
        metadata = request.get_metadata()
        request.release()
        return (True, metadata)

    def capture_array_(self, name):
        if not self._completed:
            return (False, None)
        request = self._completed.pop(0)
        array = request.make_array(name)
        request.release()
        return (True, array)

    def capture_arrays_and_metadata_(self, names):
        if not self._completed:
            return (False, None)
        request = self._completed.pop(0)
        arrays = [request.make_array(name) for name in names]
        metadata = request.get_metadata()
        request.release()
        return (True, (arrays, metadata))

    def capture_image_(self, name):
        if not self._completed:
            return (False, None)
        request = self._completed.pop(0)
        image = request.make_image(name)
        request.release()
        return (True, image)

    def capture_file_(self, file_output, name, format=None, exif_data=None):
        if not self._completed:
            return (False, None)
        if name == "raw":
            raise RuntimeError("hw_sim does not simulate raw (DNG) capture")
        request = self._completed.pop(0)
        request.save(name, file_output, format=format, exif_data=exif_data)
        metadata = request.get_metadata()
        request.release()
        return (True, metadata)

    def switch_mode_(self, camera_config):
        self.stop_()
        self.configure_(camera_config)
        self.start_()
        return (True, self.camera_config)

    # -- captures --------------------------------------------------------------------------
    def capture_request(self, wait=None, signal_function=None, flush=None):
        self._before_capture(wait)
        if flush is True:
            flush = self._clock.monotonic_ns()
        functions = [partial(self.wait_for_timestamp_, flush), self.capture_request_]
        return self.dispatch_functions(functions, wait, signal_function)

    @contextlib.contextmanager
    def captured_request(self, wait=None, flush=None):
        request = self.capture_request(wait=wait, flush=flush)
        try:
            yield request
        finally:
            request.release()

    def capture_metadata(self, wait=None, signal_function=None):
        self._before_capture(wait)
        return self.dispatch_functions([self.capture_metadata_], wait, signal_function)

    def capture_array(self, name="main", wait=None, signal_function=None):
        self._before_capture(wait)
        return self.dispatch_functions([partial(self.capture_array_, name)], wait, signal_function)

    def capture_arrays(self, names=["main"], wait=None, signal_function=None):
        self._before_capture(wait)
        return self.dispatch_functions([partial(self.capture_arrays_and_metadata_, names)], wait,
                                       signal_function)

    def capture_image(self, name="main", wait=None, signal_function=None):
        self._before_capture(wait)
        return self.dispatch_functions([partial(self.capture_image_, name)], wait, signal_function)

    def capture_file(self, file_output, name="main", format=None, wait=None, signal_function=None,
                     exif_data=None):
        self._before_capture(wait)
        functions = [partial(self.capture_file_, file_output, name, format=format, exif_data=exif_data)]
        return self.dispatch_functions(functions, wait, signal_function)

    def switch_mode(self, camera_config, wait=None, signal_function=None):
        self._before_capture(wait, must_be_running=False)
        return self.dispatch_functions([partial(self.switch_mode_, camera_config)], wait,
                                       signal_function, immediate=True)

    def switch_mode_and_capture_request(self, camera_config, wait=None, signal_function=None, delay=0):
        self._before_capture(wait, must_be_running=False)
        previous_config = self.camera_config

        def capture_and_switch_back_():
            done, request = self.capture_request_()
            if not done:
                return (False, None)
            self.switch_mode_(previous_config)
            return (True, request)

        functions = [partial(self.switch_mode_, camera_config), partial(self.set_frame_drops_, delay),
                     self.drop_frames_, capture_and_switch_back_]
        return self.dispatch_functions(functions, wait, signal_function, immediate=True)

    def switch_mode_capture_request_and_stop(self, camera_config, wait=None, signal_function=None):
        self._before_capture(wait, must_be_running=False)

        def capture_request_and_stop_():
            done, request = self.capture_request_()
            if not done:
                return (False, None)
            self.stop_()
            return (True, request)

        functions = [partial(self.switch_mode_, camera_config), capture_request_and_stop_]
        return self.dispatch_functions(functions, wait, signal_function, immediate=True)

    def autofocus_cycle(self, wait=None, signal_function=None):
        """Run an autofocus scan; the result is True if it ended focused."""
        self._before_capture(wait)
        self.set_controls({"AfMode": AF_MODE_AUTO, "AfTrigger": AF_TRIGGER_START})

        def newest_af_state():
            return self._completed[-1].get_metadata()["AfState"] if self._completed else None

        def wait_for_scan_start_():
            return (newest_af_state() == AF_STATE_SCANNING, None)

        def wait_for_scan_end_():
            state = newest_af_state()
            if state is None or state == AF_STATE_SCANNING:
                return (False, None)
            return (True, state == AF_STATE_FOCUSED)

        return self.dispatch_functions([wait_for_scan_start_, wait_for_scan_end_], wait, signal_function)

    # ======================================================================================
    # Internals
    # ======================================================================================
    def _require_open(self):
        if not self.is_open:
            raise RuntimeError("Camera not opened")

    def _before_capture(self, wait, must_be_running=True):
        """Run frames already due, check the camera can capture, apply a timeout_next() fault."""
        self._clock.advance_to(self._clock.monotonic_ns())
        with self._lock:
            self._require_open()
            if must_be_running and not self.started:
                raise RuntimeError("Camera is not started: this capture would wait for ever")
            if self._rig._take_timeout():
                self._begin_blackout(wait)

    def _resolve_configuration(self, camera_config) -> dict:
        if isinstance(camera_config, str):
            create = {"preview": self.create_preview_configuration,
                      "still": self.create_still_configuration}.get(
                camera_config, self.create_video_configuration)
            return create()
        if isinstance(camera_config, dict):
            return camera_config.copy()
        raise RuntimeError("hw_sim takes a configuration dict or 'preview'/'still'/'video'")

    def _make_configuration(self, use_case, main_defaults, main, lores, raw, transform,
                            colour_space, buffer_count, controls, display, encode, queue, sensor,
                            default_controls) -> dict:
        self._require_open()
        return make_configuration(use_case, main_defaults, main, lores, raw, transform, colour_space,
                                  buffer_count, controls, display, encode, queue, sensor,
                                  default_controls, self.sensor_format, self._control_ranges)

    # -- controls and the sensor -----------------------------------------------------------
    def _validated_controls(self, controls) -> dict:
        validated = {}
        for name, value in dict(controls).items():
            if name == "FrameRate":
                name, value = "FrameDurationLimits", _frame_rates_to_durations(value)
            if name not in self._control_ranges:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
            validated[name] = value
        return validated

    def _expose_next_frame(self):
        """Decide how the next frame is exposed and schedule its arrival."""
        frame = self._sensor.expose(self._next_sensor_timestamp_ns, self.camera_config)
        self._next_sensor_timestamp_ns = frame.arrives_at_ns
        self._next_arrival_ns = frame.arrives_at_ns
        self._clock.call_at(frame.arrives_at_ns, partial(self._on_frame_arrival, self.stop_count, frame))

    def _exif_bytes(self, metadata: dict, exif_data: Optional[dict]) -> bytes:
        """picamera2's EXIF, dated by the rig's wall clock (the simulated 'now')."""
        return exif_bytes(metadata, exif_data, self._clock.wall_ns(), self._rig.camera_id)


def _frame_rates_to_durations(rate) -> tuple[int, int]:
    if isinstance(rate, (tuple, list)):
        return (int(1e6 / rate[1]), int(1e6 / rate[0]))
    return (int(1e6 / rate), int(1e6 / rate))
