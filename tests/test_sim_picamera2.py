"""hw_sim's Picamera2 stand-in behaves like picamera2: same API surface, same array layouts,
same frame timing in clock time, same faults."""

from __future__ import annotations

import inspect
import io
import json
import os
import threading
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import piexif
import pytest
import simplejpeg

from hw_sim.picamera2 import CameraRig, ColorSpace, CompletedRequest, Job, MappedArray
from hw_sim.scene import TestChart
from trapd.clock import VirtualClock

API_JSON = Path(__file__).resolve().parents[1].parent / "shared" / "picamera2-api" / "api.json"
NS = 1_000_000_000
GREY = 100
EXPOSURE_US = 10_000
GAIN = 2.0
VIDEO_PERIOD_NS = 33_333_000
WALL_START = datetime(2024, 5, 1, 12, 0, 0)


class SquareScene:
    """Flat grey with a square that moves right one pixel per millisecond."""

    def __init__(self, colour=(255, 255, 255)):
        self.colour = colour

    def render_bgr(self, t_ns, size):
        width, height = size
        image = np.full((height, width, 3), GREY, np.uint8)
        side = height // 4
        x = (t_ns // 1_000_000) % (width - side)
        image[height // 2 - side // 2: height // 2 + side // 2, x:x + side] = self.colour
        return image

    def exposure(self, t_ns):
        return {"ExposureTime": EXPOSURE_US, "AnalogueGain": GAIN, "DigitalGain": 1.0,
                "Lux": 400.0, "ColourTemperature": 5000}


@pytest.fixture
def clock():
    return VirtualClock(start_wall_ns=int(WALL_START.timestamp() * NS))


@pytest.fixture
def rig(clock):
    return CameraRig(SquareScene(), clock)


@pytest.fixture
def camera(rig):
    camera = rig.picamera2_class()
    yield camera
    camera.close()


def start_video(camera, main=None, lores=None, **kwargs):
    config = camera.create_video_configuration(main=main or {"size": (640, 480)},
                                               lores=lores or {"size": (320, 240)}, **kwargs)
    camera.configure(config)
    camera.start()
    return config


def mid_exposure_ns(metadata):
    """The scene instant a frame shows (the simulator renders at mid-exposure)."""
    return metadata["SensorTimestamp"] - metadata["ExposureTime"] * 500


def timestamp(request):
    return request.get_metadata()["SensorTimestamp"]


# ---------------------------------------------------------------------------------------------
# The API surface
# ---------------------------------------------------------------------------------------------

def picamera2_api(class_name):
    if not API_JSON.exists():
        reason = f"../shared not present: {API_JSON} is missing (a clone without the shared folder)"
        if os.environ.get("TRAPD_REQUIRE_SHARED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return json.loads(API_JSON.read_text())["classes"][class_name]["members"]


def simulated_class(class_name):
    if class_name == "Picamera2":
        return CameraRig(SquareScene(), VirtualClock()).picamera2_class
    return {"CompletedRequest": CompletedRequest, "Job": Job}[class_name]


def default_text(parameter):
    return None if parameter.default is inspect.Parameter.empty else repr(parameter.default)


@pytest.mark.parametrize("class_name", ["Picamera2", "CompletedRequest", "Job"])
def test_every_member_offered_takes_picamera2s_parameters_and_defaults(class_name):
    api = picamera2_api(class_name)
    cls = simulated_class(class_name)
    offered = [name for name in api if hasattr(cls, name)]
    assert "__init__" in offered
    for name in offered:
        member = inspect.getattr_static(cls, name)
        if api[name]["kind"] == "property":
            assert isinstance(member, property), name
            continue
        assert isinstance(member, staticmethod) == (api[name]["kind"] == "staticmethod"), name
        actual = [(p.name, p.kind.name.lower(), default_text(p))
                  for p in inspect.signature(getattr(cls, name)).parameters.values()]
        expected = [(p["name"], p["kind"], p["default"]) for p in api[name]["params"]]
        assert actual == expected, name


@pytest.mark.parametrize("class_name", ["Picamera2", "CompletedRequest", "Job"])
def test_nothing_public_is_offered_that_picamera2_does_not_have(class_name):
    api = picamera2_api(class_name)
    public = {name for name in dir(simulated_class(class_name)) if not name.startswith("_")}
    assert public - set(api) == set()


def test_the_rig_offers_the_capture_api_the_firmware_uses():
    cls = simulated_class("Picamera2")
    for name in ("global_camera_info", "create_video_configuration", "create_still_configuration",
                 "configure", "start", "stop", "close", "set_controls", "capture_request",
                 "captured_request", "capture_array", "capture_metadata", "capture_file",
                 "switch_mode_capture_request_and_stop", "cancel_all_and_flush"):
        assert callable(getattr(cls, name)), name


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

def test_configurations_have_picamera2s_shape_and_defaults(camera):
    video = camera.create_video_configuration()
    assert set(video) == {"use_case", "transform", "colour_space", "buffer_count", "queue", "main",
                          "lores", "raw", "controls", "sensor", "display", "encode"}
    assert video["main"] == {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}
    assert video["lores"] is None and video["buffer_count"] == 6 and video["queue"] is True
    assert video["controls"]["FrameDurationLimits"] == (33333, 33333)
    assert (video["display"], video["encode"]) == ("main", "main")

    still = camera.create_still_configuration(controls={"ExposureTime": 5000})
    assert still["main"]["format"] == "BGR888" and still["main"]["size"] == camera.sensor_resolution
    assert still["buffer_count"] == 1 and still["display"] is None
    assert still["controls"]["FrameDurationLimits"] == (100, 1_000_000_000)
    assert still["controls"]["ExposureTime"] == 5000

    with_lores = camera.create_video_configuration(lores={"size": (320, 240)})
    assert with_lores["lores"]["format"] == "YUV420"


def test_bad_stream_keys_fail_at_creation_and_bad_sizes_at_configure(camera):
    with pytest.raises(ValueError, match="Bad key 'fps'"):
        camera.create_video_configuration(main={"size": (640, 480), "fps": 30})
    # picamera2 rounds odd sizes down when it builds the dict ...
    assert camera.create_video_configuration(main={"size": (641, 481)})["main"]["size"] == (640, 480)
    # ... and rejects them, like lores larger than main, in configure().
    config = camera.create_video_configuration(main={"size": (640, 480)})
    config["main"]["size"] = (641, 480)
    with pytest.raises(RuntimeError, match="even"):
        camera.configure(config)
    with pytest.raises(RuntimeError, match="lores stream dimensions may not exceed main"):
        camera.configure(camera.create_video_configuration(main={"size": (320, 240)},
                                                           lores={"size": (640, 480)}))
    with pytest.raises(RuntimeError, match="not advertised"):
        camera.configure(camera.create_video_configuration(controls={"AfMode": 2}))


def test_configure_adds_strides_rounded_up_to_64_bytes(camera):
    camera.configure(camera.create_video_configuration(main={"size": (2028, 1520), "format": "YUV420"}))
    assert camera.camera_configuration()["main"]["stride"] == 2048
    camera.configure(camera.create_video_configuration(main={"size": (2028, 1520), "format": "RGB888"}))
    assert camera.camera_configuration()["main"]["stride"] == 6144
    camera.configure(camera.create_video_configuration(main={"size": (640, 480)}))
    assert camera.camera_configuration()["main"]["stride"] == 2560


def test_configure_refuses_while_running(camera):
    start_video(camera)
    with pytest.raises(RuntimeError, match="stopped"):
        camera.configure(camera.create_video_configuration())


# ---------------------------------------------------------------------------------------------
# Pixels
# ---------------------------------------------------------------------------------------------

def test_yuv420_has_picamera2s_padded_layout_and_encodes_as_planes(camera):
    width, height = 2028, 1520
    start_video(camera, main={"size": (width, height), "format": "YUV420"}, lores={"size": (320, 240)},
                colour_space=ColorSpace.Sycc())     # full-range BT.601, as a JPEG holds
    with camera.captured_request(wait=1) as request:
        array = request.make_array("main")
        metadata = request.get_metadata()
    stride = camera.camera_configuration()["main"]["stride"]
    assert array.dtype == np.uint8 and array.shape == (height * 3 // 2, stride) and stride > width

    scene = SquareScene().render_bgr(mid_exposure_ns(metadata), (width, height))
    luma = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)
    assert np.abs(array[:height, :width].astype(int) - luma).max() <= 1

    # picamera2's own unpacking of the U and V planes.
    reshaped = array.reshape(array.shape[0] * 2, array.shape[1] // 2)
    u = reshaped[2 * height: 2 * height + height // 2, :width // 2]
    v = reshaped[2 * height + height // 2:, :width // 2]
    assert u.shape == v.shape == (height // 2, width // 2)
    assert abs(int(np.median(u)) - 128) <= 1 and abs(int(np.median(v)) - 128) <= 1   # grey
    jpeg = simplejpeg.encode_jpeg_yuv_planes(array[:height, :width], u, v, 90)
    decoded = simplejpeg.decode_jpeg(jpeg, colorspace="BGR")
    assert np.abs(decoded.astype(int) - scene).mean() < 2


def test_mapped_array_is_the_buffer_itself_while_the_request_is_held(camera):
    start_video(camera, main={"size": (640, 480), "format": "YUV420"})
    request = camera.capture_request(wait=1)
    copied = request.make_array("main")
    with MappedArray(request, "main") as mapped:
        assert np.array_equal(mapped.array, copied)
        mapped.array[0, :8] = 255 - copied[0, :8]      # written in place, as overlays are drawn
    assert np.array_equal(request.make_array("main")[0, :8], 255 - copied[0, :8])
    request.release()
    with pytest.raises(RuntimeError):
        MappedArray(request, "main").__enter__()


def test_rgb888_is_bgr_in_memory_and_bgr888_is_rgb(rig, clock):
    rig.scene = SquareScene(colour=(0, 0, 255))                     # pure red, BGR
    camera = rig.picamera2_class()
    try:
        arrays = {}
        for fmt in ("RGB888", "BGR888", "XBGR8888"):
            camera.stop()
            start_video(camera, main={"size": (640, 480), "format": fmt})
            with camera.captured_request(wait=1) as request:
                square_x = (mid_exposure_ns(request.get_metadata()) // 1_000_000) % (640 - 120)
                arrays[fmt] = request.make_array("main")[240, square_x + 60]
        assert list(arrays["RGB888"]) == [0, 0, 255]
        assert list(arrays["BGR888"]) == [255, 0, 0]
        assert list(arrays["XBGR8888"]) == [255, 0, 0, 255]
    finally:
        camera.close()


def test_make_image_is_an_rgb_pil_image(camera):
    start_video(camera, main={"size": (640, 480), "format": "RGB888"})
    with camera.captured_request(wait=1) as request:
        image = request.make_image("main", width=320, height=240)
        with pytest.raises(RuntimeError, match="not supported for PIL"):
            request.make_image("lores")
    assert image.mode == "RGB" and image.size == (320, 240)
    assert image.getpixel((0, 0)) == (GREY, GREY, GREY)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

def test_sensor_timestamps_step_by_the_frame_period_and_captures_drive_the_clock(camera, clock):
    started = clock.monotonic_ns()
    start_video(camera)
    for k in range(3):
        with camera.captured_request(wait=1) as request:
            metadata = request.get_metadata()
        assert metadata["SensorTimestamp"] == started + k * VIDEO_PERIOD_NS
        assert metadata["FrameDuration"] == VIDEO_PERIOD_NS // 1000
        assert clock.monotonic_ns() == metadata["SensorTimestamp"] + VIDEO_PERIOD_NS


def test_a_slow_consumer_gets_the_newest_frame_and_older_ones_are_skipped(camera, clock):
    start_video(camera)
    with camera.captured_request(wait=1) as request:
        first = timestamp(request)
    clock.sleep(0.2)
    before = clock.monotonic_ns()
    with camera.captured_request(wait=1) as request:
        newest = timestamp(request)
    assert clock.monotonic_ns() == before, "a queued frame is returned without waiting"
    assert newest + VIDEO_PERIOD_NS <= before < newest + 2 * VIDEO_PERIOD_NS
    assert newest - first > VIDEO_PERIOD_NS, "the frames in between were dropped"


def test_without_queue_a_capture_waits_for_the_next_frame(camera, clock):
    start_video(camera, queue=False)
    camera.capture_metadata(wait=1)
    clock.sleep(0.2)
    called = clock.monotonic_ns()
    metadata = camera.capture_metadata(wait=1)
    assert metadata["SensorTimestamp"] + VIDEO_PERIOD_NS > called
    assert clock.monotonic_ns() == metadata["SensorTimestamp"] + VIDEO_PERIOD_NS


def test_flush_returns_only_frames_exposed_after_the_call(camera, clock):
    start_video(camera)
    camera.capture_metadata(wait=1)
    clock.sleep(0.2)
    called = clock.monotonic_ns()
    with camera.captured_request(wait=1, flush=True) as request:
        metadata = request.get_metadata()
    assert metadata["SensorTimestamp"] - 1000 * metadata["ExposureTime"] >= called
    assert clock.monotonic_ns() > called


def test_frame_duration_limits_set_the_frame_period(camera, clock):
    start_video(camera)
    camera.set_controls({"FrameDurationLimits": (100_000, 100_000)})
    camera.capture_metadata(wait=1)
    stamps = [camera.capture_metadata(wait=1)["SensorTimestamp"] for _ in range(3)]
    assert np.diff(stamps).tolist() == [100_000_000, 100_000_000]


def test_manual_exposure_holds_and_auto_gain_makes_up_the_difference(camera):
    start_video(camera)
    camera.set_controls({"ExposureTime": EXPOSURE_US // 2, "AnalogueGain": 0})
    camera.capture_metadata(wait=1)
    metadata = camera.capture_metadata(wait=1)
    assert metadata["ExposureTime"] == EXPOSURE_US // 2
    assert metadata["AnalogueGain"] == pytest.approx(GAIN * 2)


def test_a_job_from_wait_false_is_finished_by_get_result(camera, clock):
    start_video(camera)
    job = camera.capture_request(wait=False)
    assert isinstance(job, Job)
    request = job.get_result(timeout=1)
    assert timestamp(request) + VIDEO_PERIOD_NS == clock.monotonic_ns()
    request.release()


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------

def test_a_timeout_raises_after_wait_seconds_then_frames_flow_again(rig, camera, clock):
    start_video(camera)
    rig.timeout_next(1)
    called = clock.monotonic_ns()
    with pytest.raises(TimeoutError):
        camera.capture_request(wait=0.5)
    assert clock.monotonic_ns() == called + NS // 2
    camera.cancel_all_and_flush()
    with camera.captured_request(wait=1) as request:
        assert timestamp(request) > called


def test_a_timed_out_job_still_takes_a_frame_unless_cancelled():
    def frame_after_timeout(cancel):
        clock = VirtualClock()
        rig = CameraRig(SquareScene(), clock)
        with rig.picamera2_class() as camera:
            start_video(camera)
            rig.timeout_next(1)
            with pytest.raises(TimeoutError):
                camera.capture_request(wait=0.5)
            if cancel:
                camera.cancel_all_and_flush()
            with camera.captured_request(wait=1) as request:
                return timestamp(request)

    assert frame_after_timeout(cancel=False) == frame_after_timeout(cancel=True) + VIDEO_PERIOD_NS


def test_a_hang_times_out_until_faults_are_cleared(rig, camera, clock):
    start_video(camera)
    rig.hang()
    with pytest.raises(TimeoutError):
        camera.capture_metadata(wait=0.5)
    rig.clear_faults()
    assert camera.capture_metadata(wait=1)["SensorTimestamp"] > clock.monotonic_ns() - 2 * VIDEO_PERIOD_NS


def test_a_frame_queued_before_a_hang_is_still_delivered_then_captures_time_out(rig, camera, clock):
    start_video(camera)
    camera.capture_metadata(wait=1)
    clock.sleep(0.1)
    rig.hang()
    hung_at = clock.monotonic_ns()
    assert camera.capture_metadata(wait=0.5)["SensorTimestamp"] < hung_at
    with pytest.raises(TimeoutError):
        camera.capture_metadata(wait=0.5)


def test_an_untimed_capture_blocks_through_a_hang_until_clear_faults(rig, camera):
    start_video(camera)
    rig.hang()
    result = {}
    worker = threading.Thread(target=lambda: result.update(metadata=camera.capture_metadata()))
    worker.start()
    worker.join(timeout=0.3)
    assert worker.is_alive(), "wait=None blocks while no frame can arrive"
    rig.clear_faults()
    worker.join(timeout=5)
    assert not worker.is_alive() and "SensorTimestamp" in result["metadata"]


def test_unplugged_camera_disappears_and_open_cameras_stop_delivering(rig, camera):
    start_video(camera)
    rig.unplug()
    assert rig.picamera2_class.global_camera_info() == []
    with pytest.raises(RuntimeError, match="No camera number 0"):
        rig.picamera2_class()
    with pytest.raises(TimeoutError):
        camera.capture_request(wait=0.5)
    camera.close()
    rig.plug_in()
    with rig.picamera2_class() as reopened:
        start_video(reopened)
        assert "SensorTimestamp" in reopened.capture_metadata(wait=1)


def test_opens_fail_on_demand_and_while_the_camera_is_busy(rig):
    rig.fail_next_opens(2)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="Camera __init__ sequence did not complete"):
            rig.picamera2_class()
    camera = rig.picamera2_class()
    with pytest.raises(RuntimeError, match="did not complete"):
        rig.picamera2_class()
    camera.close()
    rig.picamera2_class().close()
    assert len(rig.cameras) == 2


def test_capturing_without_start_is_an_error(camera):
    camera.configure(camera.create_video_configuration())
    with pytest.raises(RuntimeError, match="not started"):
        camera.capture_request(wait=0.5)


# ---------------------------------------------------------------------------------------------
# Controls and metadata
# ---------------------------------------------------------------------------------------------

def test_a_fixed_focus_camera_does_not_advertise_autofocus(camera):
    assert "AfMode" not in camera.camera_controls
    with pytest.raises(RuntimeError, match="not advertised"):
        camera.set_controls({"AfMode": 2})


def test_an_autofocus_camera_reports_its_focus(clock):
    rig = CameraRig(SquareScene(), clock, model="imx708", sensor_resolution=(4608, 2592), autofocus=True)
    with rig.picamera2_class() as camera:
        assert {"AfMode", "AfTrigger", "LensPosition"} <= set(camera.camera_controls)
        start_video(camera)
        assert camera.autofocus_cycle(wait=2) is True
        metadata = camera.capture_metadata(wait=1)
        assert metadata["AfState"] == 2 and "LensPosition" in metadata
        assert "SensorTemperature" in metadata


def test_metadata_has_the_core_keys(camera, clock):
    start_video(camera)
    metadata = camera.capture_metadata(wait=1)
    for key in ("SensorTimestamp", "ExposureTime", "FrameDuration", "AnalogueGain", "DigitalGain",
                "Lux", "ColourTemperature", "ColourGains", "FocusFoM", "SensorBlackLevels",
                "ColourCorrectionMatrix", "ScalerCrop", "AeLocked", "FrameWallClock"):
        assert key in metadata, key
    assert isinstance(metadata["SensorTimestamp"], int) and isinstance(metadata["ExposureTime"], int)
    assert len(metadata["ColourGains"]) == 2 and len(metadata["ScalerCrop"]) == 4
    wall_at_frame = clock.wall_ns() - (clock.monotonic_ns() - metadata["SensorTimestamp"])
    assert metadata["FrameWallClock"] == wall_at_frame // 1000
    assert "AfState" not in metadata and "SensorTemperature" not in metadata   # imx477


# ---------------------------------------------------------------------------------------------
# Buffers
# ---------------------------------------------------------------------------------------------

def assert_stalls_with_held(camera, buffers: int) -> None:
    """Holding `buffers` requests stalls the camera; releasing one lets frames land again."""
    held = [camera.capture_request(wait=1) for _ in range(buffers)]
    with pytest.raises(TimeoutError):
        camera.capture_request(wait=0.5)
    held.pop().release()
    camera.cancel_all_and_flush()
    with camera.captured_request(wait=1) as request:
        assert timestamp(request) > timestamp(held[-1])
    for request in held:
        request.release()


def test_unreleased_requests_stall_the_camera_after_buffer_count(camera):
    start_video(camera, buffer_count=3)
    assert_stalls_with_held(camera, 3)


def test_releasing_a_request_twice_is_an_error(camera):
    start_video(camera)
    request = camera.capture_request(wait=1)
    request.release()
    with pytest.raises(RuntimeError, match="negative ref_count"):
        request.release()
    with pytest.raises(RuntimeError, match="released"):
        request.get_metadata()


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def test_save_writes_a_jpeg_with_picamera2s_exif(rig, camera, clock, tmp_path):
    start_video(camera, main={"size": (640, 480), "format": "RGB888"})
    path = tmp_path / "frame.jpg"
    with camera.captured_request(wait=1) as request:
        request.save("main", str(path))
        saved_at = datetime.fromtimestamp(clock.wall_ns() / NS).strftime("%Y:%m:%d %H:%M:%S")
        scene = SquareScene().render_bgr(mid_exposure_ns(request.get_metadata()), (640, 480))
    exif = piexif.load(str(path))
    assert exif["0th"][piexif.ImageIFD.Make] == b"Raspberry Pi"
    assert exif["0th"][piexif.ImageIFD.Model] == rig.camera_id.encode()
    assert exif["0th"][piexif.ImageIFD.Software] == b"Picamera2"
    assert exif["0th"][piexif.ImageIFD.DateTime] == saved_at.encode()
    assert exif["Exif"][piexif.ExifIFD.ExposureTime] == (EXPOSURE_US, 1_000_000)
    assert exif["Exif"][piexif.ExifIFD.ISOSpeedRatings] == int(GAIN * 100)
    decoded = simplejpeg.decode_jpeg(path.read_bytes(), colorspace="BGR")
    assert np.abs(decoded.astype(int) - scene).mean() < 2


def test_exif_data_replaces_whole_ifds_like_picamera2(camera):
    start_video(camera, main={"size": (640, 480), "format": "RGB888"})
    output = io.BytesIO()
    with camera.captured_request(wait=1) as request:
        request.save("main", output, format="jpeg", exif_data={"0th": {piexif.ImageIFD.Artist: "trapd"}})
        with pytest.raises(RuntimeError, match="Cannot determine format"):
            request.save("main", io.BytesIO())
    exif = piexif.load(output.getvalue())
    assert exif["0th"][piexif.ImageIFD.Artist] == b"trapd"
    assert piexif.ImageIFD.Make not in exif["0th"], "the 0th IFD was replaced, not merged"
    assert exif["Exif"][piexif.ExifIFD.ExposureTime] == (EXPOSURE_US, 1_000_000)


def test_capture_file_saves_the_yuv_lores_and_returns_metadata(camera, tmp_path):
    start_video(camera)
    path = tmp_path / "lores.jpg"
    metadata = camera.capture_file(str(path), name="lores", wait=1)
    assert "SensorTimestamp" in metadata
    decoded = simplejpeg.decode_jpeg(path.read_bytes(), colorspace="BGR")
    assert decoded.shape == (240, 320, 3)
    assert piexif.load(str(path))["0th"][piexif.ImageIFD.Make] == b"Raspberry Pi"


def test_switch_mode_capture_request_and_stop_returns_a_still_and_stops(camera):
    start_video(camera)
    still = camera.create_still_configuration(main={"size": (1014, 760)})
    request = camera.switch_mode_capture_request_and_stop(still, wait=2)
    try:
        assert request.make_array("main").shape == (760, 1014, 3)
        assert camera.started is False
    finally:
        request.release()


# ---------------------------------------------------------------------------------------------
# Colour spaces
# ---------------------------------------------------------------------------------------------

# (Kr, Kb, limited range) of each colour space a Pi gives YUV streams.
YCBCR = {"sYCC": (0.299, 0.114, False), "SMPTE170M": (0.299, 0.114, True),
         "Rec709": (0.2126, 0.0722, True)}
RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)          # BGR


def standard_yuv(bgr, colour_space):
    """Y, U (Cb), V (Cr) by the textbook formulas (BT.601 / BT.709; full or limited range)."""
    b, g, r = bgr
    kr, kb, limited = YCBCR[str(colour_space)]
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb, cr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    if limited:
        y, cb, cr = 16 + 219 * y / 255, 224 * cb / 255, 224 * cr / 255
    return tuple(min(max(round(v), 0), 255) for v in (y, 128 + cb, 128 + cr))


def yuv_planes(array, width, height):
    """picamera2's unpacking of a YUV420 array: Y, U, V."""
    reshaped = array.reshape(array.shape[0] * 2, array.shape[1] // 2)
    return (array[:height, :width], reshaped[2 * height: 2 * height + height // 2, :width // 2],
            reshaped[2 * height + height // 2:, :width // 2])


def chart_yuv(clock, chart, colour_space, size=(1536, 864)):
    """Y, U, V at the middle of each band of `chart`, on main and on lores."""
    rig = CameraRig(chart, clock)
    with rig.picamera2_class() as camera:
        config = camera.create_video_configuration(
            main={"size": size, "format": "YUV420"}, lores={"size": (320, 240)},
            colour_space=colour_space)
        camera.configure(config)
        camera.start()
        granted = camera.camera_configuration()["colour_space"]
        with camera.captured_request(wait=1) as request:
            result = {}
            for name in ("main", "lores"):
                width, height = camera.camera_configuration()[name]["size"]
                y, u, v = yuv_planes(request.make_array(name), width, height)
                result[name] = [(int(y[height // 2, x]), int(u[height // 4, x // 2]), int(v[height // 4, x // 2]))
                                for x in chart.band_centres(width)]
    return granted, result


@pytest.mark.parametrize("colour_space, black, grey, white", [
    (ColorSpace.Sycc(), (0, 128, 128), (128, 128, 128), (255, 128, 128)),
    (ColorSpace.Smpte170m(), (16, 128, 128), (126, 128, 128), (235, 128, 128)),
    (ColorSpace.Rec709(), (16, 128, 128), (126, 128, 128), (235, 128, 128)),
])
def test_yuv_has_the_range_of_the_colour_space_reported(clock, colour_space, black, grey, white):
    granted, yuv = chart_yuv(clock, TestChart(), colour_space)
    assert granted == colour_space
    for name in ("main", "lores"):
        assert yuv[name] == [black, grey, white], name


@pytest.mark.parametrize("colour_space", [ColorSpace.Sycc(), ColorSpace.Smpte170m(), ColorSpace.Rec709()])
def test_saturated_colours_follow_the_colour_spaces_matrix(clock, colour_space):
    chart = TestChart(bands=(RED, GREEN, BLUE))
    _, yuv = chart_yuv(clock, chart, colour_space)
    for name in ("main", "lores"):
        for got, bgr in zip(yuv[name], chart.bands):
            expected = standard_yuv(bgr, colour_space)
            assert max(abs(g - e) for g, e in zip(got, expected)) <= 1, (name, bgr, got, expected)
    # BT.709 and BT.601 differ: pure red has less luma in Rec709.
    if str(colour_space) == "Rec709":
        assert yuv["main"][0][0] == 63 and standard_yuv(RED, ColorSpace.Smpte170m())[0] == 81


def test_video_picks_its_colour_space_by_size_and_preview_and_still_use_sycc(camera):
    def granted(config):
        camera.configure(config)
        return camera.camera_configuration()["colour_space"]

    video = camera.create_video_configuration
    assert video(main={"size": (640, 480)})["colour_space"] == ColorSpace.Smpte170m()
    assert video(main={"size": (1280, 718)})["colour_space"] == ColorSpace.Smpte170m()
    assert video(main={"size": (1280, 720)})["colour_space"] == ColorSpace.Rec709()
    assert granted(video(main={"size": (640, 480), "format": "YUV420"})) == ColorSpace.Smpte170m()
    assert granted(video(main={"size": (1920, 1080), "format": "YUV420"})) == ColorSpace.Rec709()
    assert granted(video(main={"size": (640, 480)}, colour_space=ColorSpace.Sycc())) == ColorSpace.Sycc()
    assert granted(camera.create_preview_configuration()) == ColorSpace.Sycc()
    assert granted(camera.create_still_configuration()) == ColorSpace.Sycc()
    # A Pi outputs sYCC, SMPTE170M or Rec709 only: others become the one with the same
    # primaries and transfer function, else sYCC.
    assert granted(video(colour_space=ColorSpace.Srgb())) == ColorSpace.Sycc()
    assert granted(video(colour_space=ColorSpace.Rec2020())) == ColorSpace.Sycc()
    assert [str(cs) for cs in (ColorSpace.Sycc(), ColorSpace.Smpte170m(), ColorSpace.Rec709())] == [
        "sYCC", "SMPTE170M", "Rec709"]


def test_rgb_streams_ignore_the_colour_space_and_a_yuv_lores_beside_them_follows_it(clock):
    rig = CameraRig(TestChart(), clock)
    with rig.picamera2_class() as camera:
        camera.configure(camera.create_video_configuration(
            main={"size": (1920, 1080), "format": "RGB888"}, lores={"size": (640, 360)}))
        camera.start()
        assert camera.camera_configuration()["colour_space"] == ColorSpace.Rec709()
        main, lores, raw = camera.libcamera_config
        assert (str(main.color_space), str(lores.color_space), str(raw.color_space)) == (
            "Rec709/Rec709/None/Full", "Rec709", "RAW")
        with camera.captured_request(wait=1) as request:
            rgb = request.make_array("main")
            y, _, _ = yuv_planes(request.make_array("lores"), 640, 360)
        centres = TestChart().band_centres(1920)
        assert [tuple(rgb[540, x]) for x in centres] == list(TestChart.BLACK_GREY_WHITE)
        assert [int(y[180, x]) for x in TestChart().band_centres(640)] == [16, 126, 235]


def test_a_jpeg_of_limited_range_yuv_has_grey_blacks(clock, tmp_path):
    """picamera2 hands any YUV420 buffer to simplejpeg as it is: only sYCC decodes right."""
    decoded = {}
    for colour_space in (ColorSpace.Sycc(), ColorSpace.Rec709()):
        rig = CameraRig(TestChart(), clock)
        with rig.picamera2_class() as camera:
            start_video(camera, main={"size": (1280, 720), "format": "YUV420"}, colour_space=colour_space)
            path = tmp_path / f"{colour_space}.jpg"
            camera.capture_file(str(path), wait=1)
        image = simplejpeg.decode_jpeg(path.read_bytes(), colorspace="BGR")
        decoded[str(colour_space)] = [int(image[360, x, 1]) for x in TestChart().band_centres(1280)]
    assert max(abs(a - b) for a, b in zip(decoded["sYCC"], (0, 128, 255))) <= 2
    assert decoded["Rec709"][0] >= 14 and decoded["Rec709"][2] <= 237


# ---------------------------------------------------------------------------------------------
# Granted vs asked
# ---------------------------------------------------------------------------------------------

def test_libcamera_config_shows_what_was_granted(camera):
    assert camera.libcamera_config == {}
    start_video(camera, main={"size": (640, 480), "format": "YUV420"}, buffer_count=5)
    asked = camera.camera_configuration()
    main, lores, raw = camera.libcamera_config
    assert camera.libcamera_config.at(0) is main and len(camera.libcamera_config) == 3
    assert [s.buffer_count for s in camera.libcamera_config] == [5, 5, 5]
    assert str(main.pixel_format) == "YUV420" and (main.size.width, main.size.height) == (640, 480)
    assert main.stride == asked["main"]["stride"] and main.frame_size == asked["main"]["framesize"]
    assert (str(lores.pixel_format), lores.size.width, lores.size.height) == ("YUV420", 320, 240)
    assert str(raw.pixel_format) == asked["raw"]["format"] and str(main.color_space) == "SMPTE170M"
    camera.close()
    assert camera.libcamera_config == {}


def test_fewer_buffers_granted_than_asked_stall_the_camera_sooner(clock):
    rig = CameraRig(SquareScene(), clock, max_buffer_count=3)
    with rig.picamera2_class() as camera:
        start_video(camera, buffer_count=6)
        assert camera.camera_configuration()["buffer_count"] == 6       # the asked count
        assert [s.buffer_count for s in camera.libcamera_config] == [3, 3, 3]
        assert_stalls_with_held(camera, 3)
    rig = CameraRig(SquareScene(), clock, max_buffer_count=8)
    with rig.picamera2_class() as camera:
        start_video(camera, buffer_count=4)
        assert [s.buffer_count for s in camera.libcamera_config] == [4, 4, 4]


def test_controls_the_camera_does_not_advertise_are_refused_like_picamera2(clock):
    rig = CameraRig(SquareScene(), clock, without_controls=("ExposureTime", "AnalogueGain"))
    with rig.picamera2_class() as camera:
        assert "ExposureTime" not in camera.camera_controls and "AeEnable" in camera.camera_controls
        with pytest.raises(RuntimeError, match="^Control ExposureTime is not advertised by libcamera$"):
            camera.configure(camera.create_video_configuration(controls={"ExposureTime": 1000}))
        start_video(camera)
        with pytest.raises(RuntimeError, match="^Control AnalogueGain is not advertised by libcamera$"):
            camera.set_controls({"AnalogueGain": 2.0})
        camera.set_controls({"AeEnable": False})
        assert camera.capture_metadata(wait=1)["ExposureTime"] == EXPOSURE_US   # AE still runs

    rig = CameraRig(SquareScene(), clock, without_controls=("FrameDurationLimits",))
    with rig.picamera2_class() as camera:
        # picamera2 adds its default controls only when the camera has them.
        assert camera.create_video_configuration()["controls"] == {}
        with pytest.raises(RuntimeError, match="FrameDurationLimits is not advertised"):
            camera.set_controls({"FrameRate": 30})
    with pytest.raises(ValueError, match="ExposureTme"):
        CameraRig(SquareScene(), clock, without_controls=("ExposureTme",))
