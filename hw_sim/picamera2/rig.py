"""CameraRig: one simulated camera module on a CSI port, and the faults injected into it."""

from __future__ import annotations

import threading

from .camera import Picamera2
from .sensor import CFA_ORDERS, Scene, control_ranges, sensor_spec

BUSY_MESSAGE = "Camera __init__ sequence did not complete."
# The rig's Picamera2 class says it comes from the package, where MappedArray, Transform and
# ColorSpace live beside it (trapd looks for them in the module the class names).
PACKAGE = __name__.rpartition(".")[0]


class CameraRig:
    """One simulated camera module on a CSI port, watching `scene` on `clock`.

    Pass ``rig.picamera2_class`` to the firmware; inject faults through the rig.
    ``cameras`` lists every Picamera2 opened from the rig (closed ones too);
    ``frames_delivered`` counts frames that reached a buffer, on all of them.

    What the camera grants, beside what is asked: ``max_buffer_count`` caps the buffers
    libcamera allocates per stream (camera_configuration() keeps the asked buffer_count, as
    picamera2 does; ``Picamera2.libcamera_config`` shows the granted one, and holding that
    many requests stalls the camera). ``without_controls`` names controls the camera does not
    advertise (set_controls and configure() raise for them, as picamera2 does).
    """

    def __init__(self, scene: Scene, clock, *, model: str = "imx477",
                 sensor_resolution=(4056, 3040), present: bool = True, autofocus: bool = False,
                 max_buffer_count: int | None = None, without_controls: tuple[str, ...] = ()):
        if not (hasattr(clock, "call_at") and hasattr(clock, "advance_to")):
            raise TypeError("CameraRig needs a clock with call_at/advance_to "
                            "(trapd.clock.VirtualClock or RealtimeClock)")
        self.scene = scene
        self.clock = clock
        self.model = model
        self.autofocus = autofocus
        self.present = present
        self.cameras: list[Picamera2] = []
        self.frames_delivered = 0
        self._spec = sensor_spec(model, tuple(sensor_resolution))
        if max_buffer_count is not None and max_buffer_count < 1:
            raise ValueError(f"max_buffer_count must be at least 1, not {max_buffer_count}")
        unknown = set(without_controls) - set(control_ranges(self._spec, autofocus=True))
        if unknown:
            raise ValueError(f"without_controls names controls hw_sim does not have: {sorted(unknown)}")
        self.max_buffer_count = max_buffer_count
        self.without_controls = tuple(without_controls)
        self._open_failures: list[str] = []
        self._hung = False
        self._timeouts_pending = 0
        self._lock = threading.RLock()
        self._picamera2_class = type("Picamera2", (Picamera2,), {
            "__module__": PACKAGE,
            "__doc__": f"Picamera2 bound to a simulated {model} camera.",
            "_rig": self,
            "global_camera_info": staticmethod(self._camera_info),
        })

    @property
    def picamera2_class(self) -> type:
        return self._picamera2_class

    @property
    def camera_id(self) -> str:
        """libcamera's id for the camera (picamera2 writes it as the EXIF Model)."""
        return f"/base/soc/i2c0mux/i2c@1/{self.model}@{self._spec.i2c_address}"

    # -- faults ----------------------------------------------------------------------------
    def fail_next_opens(self, n: int, message: str = BUSY_MESSAGE) -> None:
        """The next n Picamera2() constructions raise RuntimeError(message)."""
        with self._lock:
            self._open_failures.extend([message] * n)

    def hang(self) -> None:
        """No frame lands from now on (a libcamera frontend timeout) until clear_faults()."""
        self._hung = True

    def timeout_next(self, n: int) -> None:
        """The next n captures get no frame: TimeoutError after their numeric `wait` (without
        one, no frame until clear_faults()); then frames flow again. As on a Pi, the timed-out
        job stays queued and takes the next frame unless cancel_all_and_flush() is called."""
        with self._lock:
            self._timeouts_pending += n

    def unplug(self) -> None:
        """The camera vanishes: no new opens, and open cameras never deliver again."""
        self.present = False
        for camera in self._open_cameras():
            camera._lose()

    def plug_in(self) -> None:
        """The camera is back for new opens (cameras open across the unplug stay dead)."""
        self.present = True

    def clear_faults(self) -> None:
        """End hang(), pending timeout_next() and fail_next_opens() faults."""
        with self._lock:
            self._hung = False
            self._timeouts_pending = 0
            self._open_failures.clear()
        for camera in self._open_cameras():
            camera._clear_faults()

    # -- used by Picamera2 -----------------------------------------------------------------
    def _camera_info(self) -> list:
        if not self.present:
            return []
        return [{"Model": self.model, "Location": 2, "Rotation": self._spec.rotation,
                 "Id": self.camera_id, "Num": 0}]

    def _properties(self) -> dict:
        w, h = self._spec.resolution
        order = self._spec.bayer_format[1:5]
        return {"Model": self.model, "UnitCellSize": self._spec.unit_cell_nm, "Location": 2,
                "Rotation": self._spec.rotation, "ColorFilterArrangement": CFA_ORDERS.get(order, 0),
                "PixelArraySize": (w, h), "PixelArrayActiveAreas": [(0, 0, w, h)],
                "ScalerCropMaximum": (0, 0, w, h)}

    def _check_can_open(self, camera_num) -> None:
        with self._lock:
            if not self.present or camera_num != 0:
                raise RuntimeError(f"No camera number {camera_num} found")
            if self._open_failures:
                raise RuntimeError(self._open_failures.pop(0))
            if self._open_cameras():
                raise RuntimeError(BUSY_MESSAGE)      # libcamera: "Device or resource busy"

    def _register(self, camera: Picamera2) -> None:
        with self._lock:
            self.cameras.append(camera)

    def _open_cameras(self) -> list[Picamera2]:
        return [c for c in self.cameras if c.is_open and not c._lost]

    def _take_timeout(self) -> bool:
        with self._lock:
            if self._timeouts_pending <= 0:
                return False
            self._timeouts_pending -= 1
            return True
