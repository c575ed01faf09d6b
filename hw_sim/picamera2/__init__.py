"""An honest stand-in for ``picamera2.Picamera2`` (0.3.38), driven by a scene and a clock.

trapd's camera adapter is handed a Picamera2 *class*. On a Pi that is ``picamera2.Picamera2``;
in simulation it is ``CameraRig(scene, clock).picamera2_class``, a subclass of the `Picamera2`
below bound to one rig. Every member offered here under a real name takes the real parameters
in the real order with the real defaults (tests/test_sim_picamera2.py checks them against
../shared/picamera2-api/api.json); everything else is private, so code written against the
simulator calls the real camera correctly.

How frames flow
---------------
While the camera is started the sensor runs on the rig's clock (a VirtualClock or
RealtimeClock): every frame is a ``clock.call_at`` event. Frame k has SensorTimestamp
ts_k = ts_(k-1) + FrameDuration_(k-1), with ts_0 = the time of start(), so with a fixed frame
period ts_k = start + k * period. It reaches picamera2 at ts_k + FrameDuration_k. Like
SensorTimestamp on a Pi, ts_k is the end of exposure: the exposure ran from
ts_k - 1000 * ExposureTime to ts_k, and the scene is rendered at its middle,
ts_k - 500 * ExposureTime (a scene of discrete frames, real footage, is sampled at ts_k
itself, so a frame shows the footage frame of its SensorTimestamp). On arrival a frame goes
through the same machinery as picamera2's event loop: it becomes a CompletedRequest, queued jobs run in order (capture, flush, mode
switch ...), and with ``queue=True`` and buffer_count > 1 the newest completed request is kept
for the next caller, so a capture can return a frame from before the call. A capture with a
``wait`` waits by advancing the clock to the next frame.

Simulated, as the real camera does it
- configuration dicts (keys, defaults per use case, the default controls only on a camera
  advertising NoiseReductionMode and FrameDurationLimits), ValueError for bad stream keys at
  create time, RuntimeError at configure() for odd sizes, lores larger than main, non-YUV lores;
  configure() adds "stride" (YUV420: width rounded up to 64; RGB888/BGR888: 3*width and
  XBGR8888/XRGB8888: 4*width, rounded up to 64) and "framesize", picks a sensor mode like
  picamera2 does, and fills in the raw stream and "sensor".
- colour spaces: create_video_configuration(colour_space=None) picks Smpte170m below
  1280x720 and Rec709 from there, preview and still default to Sycc, an explicit one is kept.
  configure() grants what libcamera's Raspberry Pi pipeline grants (sYCC, SMPTE170M or Rec709:
  the one with the asked primaries and transfer function, else sYCC) and reports it in
  camera_configuration()["colour_space"]. Every YUV stream, main or lores, is rendered in it:
  sYCC full-range BT.601 (what JPEG and simplejpeg's planar encoder expect), SMPTE170M
  limited-range BT.601 and Rec709 limited-range BT.709 (Y 16-235, U and V 16-240). RGB streams
  carry no YCbCr encoding and are the same whatever the colour space.
- granted vs asked: ``Picamera2.libcamera_config`` is what libcamera granted (``{}`` until
  configured and after close): main, lores, raw, each with .size (.width, .height),
  .pixel_format (str() "YUV420"), .stride, .frame_size, .buffer_count and .color_space.
  camera_configuration()["buffer_count"] stays the asked count, as in picamera2, even when a
  rig with ``max_buffer_count`` grants fewer; a rig's ``without_controls`` are left out of
  camera_controls, and set_controls / configure() raise "Control X is not advertised by
  libcamera" for them.
- array layouts: RGB888 is BGR in memory, BGR888 is RGB, XBGR8888 is (h, w, 4), YUV420 is
  (h*3/2, stride) uint8 with the U and V planes packed at half stride (picamera2's unpacking
  ``r = a.reshape(2 * a.shape[0], stride // 2); U = r[2h:2h + h//2, :w//2]``, V after it).
- frame timing: FrameDurationLimits (or FrameRate), the sensor mode's fastest frame, and the
  exposure; ExposureTime / AnalogueGain 0 mean auto (the scene's values, capped by the frame
  duration, the gain making up the difference), AeEnable False holds the current values.
- metadata: SensorTimestamp, ExposureTime, FrameDuration, AnalogueGain, DigitalGain, Lux,
  ColourTemperature, ColourGains, FocusFoM, SensorBlackLevels, ColourCorrectionMatrix,
  ScalerCrop, AeLocked, FrameWallClock; SensorTemperature only on sensors that report it
  (imx708); AfState, AfPauseState and LensPosition only on an autofocus rig.
- buffers: libcamera makes as many requests as the stream with the fewest buffers *granted*;
  they are shared by the queued request and whatever the application holds; with all of them
  held no frame can land and captures stall (a numeric wait times out).
  CompletedRequest.release() past zero raises, as picamera2's does.
- MappedArray(request, stream): the buffer itself as an array while the context is open (no
  copy; YUV420 as (h*3/2, stride), RGB as (h, stride / bytes per pixel, bytes), padding kept);
  on a released request it raises.
- jobs: wait None/True blocks, a number raises TimeoutError after that much clock time,
  False returns a Job. A job that timed out stays queued and takes a later frame (whose
  buffer then leaks until stop()) unless cancel_all_and_flush() is called, as on a Pi.
- JPEG/EXIF exactly as CompletedRequest.save does: simplejpeg at options.get("quality", 90)
  (a YUV420 buffer goes in as it is, whatever its colour space: limited-range YUV gives a
  washed-out JPEG there too), EXIF from piexif spliced in after SOI, the user's exif_data
  merged shallowly per IFD, the date from the rig clock's wall time. Its quirks come along: the
  format comes from ``format`` or from a *str* path's extension; a BytesIO needs
  format="jpeg"; a pathlib.Path goes through PIL and gets no EXIF.
- Picamera2.options starts empty, as in picamera2's source (so read it with .get()).

Deliberate differences from picamera2 + libcamera
(the real ones run in the real-camera lane, ci/realcam/, on libcamera's virtual camera)
- Time: the sensor runs on the rig's clock, usually a VirtualClock; a capture with a wait
  advances that clock to the next frame instead of sleeping. A frame arrives one frame
  duration after its SensorTimestamp (read-out, as on a Pi, though a Pi reads out faster);
  the lane's virtual camera delivers it at its SensorTimestamp. Mode switches are instant (a Pi
  takes a few hundred ms); the first frame after start() arrives one frame period later;
  controls take effect from the next frame exposed (2-3 frames on a Pi).
- Strides: every image row is padded to 64 bytes, as the Pi's ISP does; libcamera's virtual
  camera does not pad, so code that ignores the stride can pass there and fail here and on a
  Pi.
- Fault injection exists only here: CameraRig.fail_next_opens, hang, timeout_next,
  unplug/plug_in and clear_faults (a second open while one is open fails, as on a Pi). A capture with wait=None that cannot get a
  frame (hang, unplug, every buffer held) blocks on a threading.Condition until another thread
  calls clear_faults(), releases a request or closes the camera (close cancels the job:
  CancelledError); with virtual time and one thread that is forever, as on a Pi after a
  frontend timeout. A capture on a camera that is not started raises RuntimeError (a Pi would
  wait forever).
- Auto exposure is the scene's answer (Scene.exposure), applied at once: AeLocked after the
  first 3 frames, no convergence, no metering, flicker or EV; the frame duration caps the
  exposure and the analogue gain makes up the difference.
- Metadata: only the keys listed above (a Pi reports more); FocusFoM, SensorBlackLevels,
  ColourCorrectionMatrix and SensorTemperature are constants; ColourGains follow the colour
  temperature (or the control) but are not applied to pixels. Autofocus takes AF_SCAN_NS and
  lands on AF_FOCUSED_LENS_POSITION.
- Pixels: the scene's BGR scaled by exposure x gain; no noise, lens shading, focus blur or
  rolling shutter; ScalerCrop is reported, not applied; only hflip/vflip (rotation 0/180).
  Of a colour space only the YCbCr matrix and range are applied: primaries and transfer
  function (SMPTE170M vs Rec709 vs sRGB gamma) change no pixel. Only YUV420, YVU420, RGB888,
  BGR888, XBGR8888 and XRGB8888 have pixels (configure() refuses other formats on main and
  lores); the raw Bayer stream is configured and reported but has no pixels (make_array("raw")
  and DNG raise); encoders, recording and previews do not exist.
- libcamera objects are minimal stand-ins: ColorSpace (str() is libcamera's name, repr() the
  constructor as picamera2's source writes it, for signature checks; on a Pi both are the
  name), Transform, and libcamera_config's stream configurations (no .stream, no validate(),
  no orientation); there is no ``allocator`` object with buffers.
- Grants: max_buffer_count caps every stream alike; nothing else is ever adjusted (sizes and
  formats are granted as asked, after picamera2's own checks).
- Platform rules follow VC4 (Pi 4) where Pi 4 and Pi 5 differ (lores must be YUV; alignment).
  Sensor modes and control ranges are approximate values from Pi dumps.

Layout (along picamera2's own seams)
- libcamera_types.py: Transform, ColorSpace (and the colour space a Pi grants), and the
  granted configuration's types (CameraConfiguration, StreamConfiguration, Size, PixelFormat).
- configuration.py: creating, aligning and checking configuration dicts, and what configure()
  fills in (strides, frame sizes, the raw stream, the colour space, libcamera_config).
- pixels.py: buffer layouts per format, YCbCr conversion per colour space, picamera2's array
  views, JPEG/EXIF and PIL saving.
- sensor.py: the Scene protocol, sensor specs and modes, advertised controls, the exposure
  model, metadata, autofocus, rendering a frame's streams.
- requests.py: Job, CompletedRequest, MappedArray, and the request/buffer bookkeeping of
  picamera2's event loop.
- camera.py: Picamera2. rig.py: CameraRig, its faults and what it grants.
A scene for checking pixel values: hw_sim.scene.TestChart.
"""

from .camera import Picamera2
from .configuration import (
    BYTES_PER_PIXEL, PICAMERA2_RGB_FORMATS, PICAMERA2_YUV_FORMATS, RGB_FORMATS, STRIDE_ALIGN,
    YUV_FORMATS)
from .libcamera_types import (
    CameraConfiguration, ColorSpace, PixelFormat, SensorConfiguration, Size, StreamConfiguration,
    Transform)
from .requests import CompletedRequest, Job, MappedArray
from .rig import BUSY_MESSAGE, CameraRig
from .sensor import SENSORS, Scene, SensorMode, SensorSpec, choose_sensor_mode, control_ranges, sensor_spec

__all__ = ["BUSY_MESSAGE", "BYTES_PER_PIXEL", "CameraConfiguration", "CameraRig", "ColorSpace",
           "CompletedRequest", "Job", "MappedArray", "PICAMERA2_RGB_FORMATS",
           "PICAMERA2_YUV_FORMATS", "Picamera2", "PixelFormat", "RGB_FORMATS", "SENSORS",
           "STRIDE_ALIGN", "Scene", "SensorConfiguration", "SensorMode", "SensorSpec", "Size",
           "StreamConfiguration", "Transform", "YUV_FORMATS", "choose_sensor_mode",
           "control_ranges", "sensor_spec"]
