"""Smoke tests of the lane itself: the real picamera2 on the real libcamera does what trapd
relies on, and the virtual cameras model what ci/realcam/virtual.yaml.in says they do.
What a user would notice: formats, strides, colour levels, frame timing, controls, buffers."""

from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path

import libcamera
import numpy as np
import pytest
from PIL import Image

MAIN, LORES = (640, 480), (320, 240)
FOOTAGE_IMAGES = 6  # ci/realcam/make_frames.py: 3 empty frames, then 3 with the animal


def video_config(picam2, colour_space=None, buffer_count=6, controls=None):
    """What trapd asks for: YUV420 main 640x480 + lores 320x240."""
    return picam2.create_video_configuration(
        main={"size": MAIN, "format": "YUV420"}, lores={"size": LORES, "format": "YUV420"},
        colour_space=colour_space, buffer_count=buffer_count, controls=controls or {})


def planes(array, size):
    """Y, U, V of a YUV420 array as picamera2's make_array gives it ((h*3/2, w) rows)."""
    w, h = size
    flat = array.reshape(-1)
    y = flat[:w * h].reshape(h, w)
    u = flat[w * h:w * h * 5 // 4].reshape(h // 2, w // 2)
    v = flat[w * h * 5 // 4:w * h * 3 // 2].reshape(h // 2, w // 2)
    return y, u, v


def capture_yuv(picam2, name="main"):
    request = picam2.capture_request()
    try:
        return request.make_array(name), request.get_metadata()
    finally:
        request.release()


def name(colour_space) -> str:
    """"sYCC" for <libcamera.ColorSpace 'sYCC'>."""
    return str(colour_space).split("'")[1]


def luma(rgb, colour_space) -> float:
    """Y' of an R'G'B' colour (0-255) by the standard matrix and range of the colour space."""
    kr, kb = {"sYCC": (0.299, 0.114), "SMPTE170M": (0.299, 0.114),
              "Rec709": (0.2126, 0.0722)}[name(colour_space)]
    r, g, b = (c / 255 for c in rgb)
    y = kr * r + (1 - kr - kb) * g + kb * b
    return 255 * y if name(colour_space) == "sYCC" else 16 + 219 * y


def test_the_lane_runs_the_real_picamera2_on_the_built_libcamera(realcam_prefix):
    assert importlib.metadata.version("picamera2") == "0.3.38"
    import picamera2
    assert "hw_sim" not in picamera2.__file__
    assert Path(libcamera.__file__).is_relative_to(realcam_prefix)
    maps = Path("/proc/self/maps").read_text()
    assert str(realcam_prefix / "lib" / "libcamera.so") in maps


def test_every_lane_camera_is_listed(picamera2_class):
    cameras = {c["Id"]: c["Model"] for c in picamera2_class.global_camera_info()}
    assert cameras == {name: f"trapd-realcam-{name}"
                       for name in ("pattern", "target", "footage", "fewbuffers", "noexposure")}


def test_open_configure_capture_stop_close_reopen(open_camera, picamera2_class, camera_num):
    picam2 = open_camera("pattern")
    picam2.configure(video_config(picam2, libcamera.ColorSpace.Sycc()))
    granted = picam2.camera_configuration()
    assert (granted["main"]["format"], granted["main"]["size"], granted["main"]["stride"]) \
        == ("YUV420", MAIN, 640)
    assert (granted["lores"]["format"], granted["lores"]["size"], granted["lores"]["stride"]) \
        == ("YUV420", LORES, 320)
    assert str(granted["colour_space"]) == str(libcamera.ColorSpace.Sycc())
    assert [sc.buffer_count for sc in picam2.libcamera_config] == [6, 6]

    picam2.start()
    main, metadata = capture_yuv(picam2, "main")
    lores, _ = capture_yuv(picam2, "lores")
    assert main.shape == (720, 640) and lores.shape == (360, 320)
    assert main.std() > 10  # the colour bars, not a blank buffer
    assert metadata["SensorTimestamp"] <= time.monotonic_ns()
    picam2.stop()
    picam2.start()
    after, metadata_after = capture_yuv(picam2)
    assert after.shape == (720, 640)
    assert metadata_after["SensorTimestamp"] > metadata["SensorTimestamp"]
    picam2.stop()
    picam2.close()

    again = picamera2_class(camera_num("pattern"))
    try:
        again.configure(video_config(again))
        again.start()
        assert capture_yuv(again)[0].shape == (720, 640)
    finally:
        again.close()


@pytest.mark.parametrize("colour_space", [libcamera.ColorSpace.Sycc(),
                                          libcamera.ColorSpace.Smpte170m(),
                                          libcamera.ColorSpace.Rec709()], ids=name)
def test_the_colour_space_asked_is_granted(open_camera, colour_space):
    picam2 = open_camera("pattern")
    picam2.configure(video_config(picam2, colour_space))
    assert str(picam2.camera_configuration()["colour_space"]) == str(colour_space)
    assert [str(sc.color_space) for sc in picam2.libcamera_config] == [str(colour_space)] * 2


def test_picamera2_defaults_to_limited_range_smpte170m_below_720p(open_camera):
    """What trapd would get without asking (research note, 'Colour range')."""
    picam2 = open_camera("pattern")
    picam2.configure(video_config(picam2))
    assert name(picam2.camera_configuration()["colour_space"]) == "SMPTE170M"


@pytest.mark.parametrize("colour_space, levels", [
    (libcamera.ColorSpace.Sycc(), (0, 128, 255)),
    (libcamera.ColorSpace.Smpte170m(), (16, 126, 235)),
    (libcamera.ColorSpace.Rec709(), (16, 126, 235)),
], ids=lambda p: name(p) if isinstance(p, libcamera.ColorSpace) else "-".join(map(str, p)))
def test_black_grey_white_chart_levels_follow_the_colour_space(open_camera, colour_space, levels):
    """The target camera replays a chart: black, mid-grey (128), white thirds."""
    picam2 = open_camera("target")
    picam2.configure(video_config(picam2, colour_space))
    picam2.start()
    for array, size in ((capture_yuv(picam2, "main")[0], MAIN),
                        (capture_yuv(picam2, "lores")[0], LORES)):
        y, u, v = planes(array, size)
        w, h = size
        thirds = [y[h // 10:-h // 10, round(w * (i + 0.1) / 3):round(w * (i + 0.9) / 3)]
                  for i in range(3)]
        assert [int(np.median(t)) for t in thirds] == pytest.approx(levels, abs=1)
        assert all(int(t.max()) - int(t.min()) <= 2 for t in thirds)
        assert np.abs(u.astype(int) - 128).max() <= 1 and np.abs(v.astype(int) - 128).max() <= 1


@pytest.mark.parametrize("colour_space", [libcamera.ColorSpace.Sycc(),
                                          libcamera.ColorSpace.Smpte170m(),
                                          libcamera.ColorSpace.Rec709()], ids=name)
def test_colour_bars_use_the_matrix_of_the_colour_space(open_camera, colour_space):
    """Eight bars of 80 columns (they scroll): their luma values are the standard ones."""
    bars = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0),
            (255, 0, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0)]
    picam2 = open_camera("pattern")
    picam2.configure(video_config(picam2, colour_space))
    picam2.start()
    y, _, _ = planes(capture_yuv(picam2)[0], MAIN)
    values, counts = np.unique(y[240], return_counts=True)
    assert list(counts) == [80] * 8
    expected = sorted(luma(rgb, colour_space) for rgb in bars)
    assert list(values) == pytest.approx(expected, abs=1)


def test_frames_come_at_the_frame_duration_asked_stamped_on_the_monotonic_clock(open_camera):
    picam2 = open_camera("pattern")
    picam2.configure(video_config(picam2, controls={"FrameDurationLimits": (100000, 100000)}))
    picam2.start()
    stamps, durations = [], []
    for _ in range(21):
        _, metadata = capture_yuv(picam2)
        stamps.append(metadata["SensorTimestamp"])
        durations.append(metadata["FrameDuration"])
    now = time.monotonic_ns()
    gaps_ms = np.diff(stamps) / 1e6
    assert gaps_ms == pytest.approx([100.0] * 20, abs=2), gaps_ms
    assert set(durations) == {100000}
    assert 0 <= now - stamps[-1] < 300_000_000


def wait_for_metadata(picam2, check, frames=20):
    """The metadata of the first of the next `frames` frames for which `check` holds."""
    for _ in range(frames):
        metadata = picam2.capture_metadata()
        if check(metadata):
            return metadata
    return metadata


def test_manual_exposure_and_gain_are_reported_in_metadata(open_camera):
    picam2 = open_camera("pattern")
    assert {"ExposureTime", "AnalogueGain", "AeEnable", "ExposureTimeMode",
            "AnalogueGainMode"} <= set(picam2.camera_controls)
    picam2.configure(video_config(picam2))
    picam2.start()
    auto = picam2.capture_metadata()
    assert (auto["ExposureTime"], auto["AnalogueGain"]) == (10000, 1.0)
    picam2.set_controls({"AeEnable": False, "ExposureTime": 20000, "AnalogueGain": 4.0})
    manual = wait_for_metadata(picam2, lambda m: m["ExposureTime"] == 20000)
    assert (manual["ExposureTime"], manual["AnalogueGain"]) == (20000, 4.0)
    assert manual["ExposureTimeMode"] == libcamera.controls.ExposureTimeModeEnum.Manual
    assert manual["AnalogueGainMode"] == libcamera.controls.AnalogueGainModeEnum.Manual


def test_exposure_time_alone_applies_and_zero_returns_to_auto(open_camera):
    """What trapd's night cap sends. The Pi's IPA ignores ExposureTime while
    ExposureTimeMode is Auto; picamera2 adds ExposureTimeMode Manual (Auto for 0)."""
    picam2 = open_camera("pattern")
    picam2.configure(video_config(picam2))
    picam2.start()
    picam2.set_controls({"ExposureTime": 20000})
    manual = wait_for_metadata(picam2, lambda m: m["ExposureTime"] == 20000)
    assert (manual["ExposureTime"], manual["ExposureTimeMode"]) == (20000, 1)
    picam2.set_controls({"ExposureTime": 0})
    auto = wait_for_metadata(picam2, lambda m: m["ExposureTime"] != 20000)
    assert (auto["ExposureTime"], auto["ExposureTimeMode"]) == (10000, 0)


def test_a_long_exposure_stretches_the_frame(open_camera):
    picam2 = open_camera("pattern")
    picam2.configure(video_config(picam2, controls={"FrameDurationLimits": (33333, 500000)}))
    picam2.start()
    picam2.set_controls({"AeEnable": False, "ExposureTime": 200000})
    wait_for_metadata(picam2, lambda m: m["ExposureTime"] == 200000, frames=12)
    first, second = picam2.capture_metadata(), picam2.capture_metadata()
    assert (first["ExposureTime"], first["FrameDuration"]) == (200000, 200000)
    assert (second["SensorTimestamp"] - first["SensorTimestamp"]) / 1e6 \
        == pytest.approx(200, abs=2)


def test_a_camera_granting_fewer_buffers_than_asked(open_camera):
    """fewbuffers grants 4 of the 6 asked; picamera2 still reports the 6 asked, and
    holding 4 requests stalls capture."""
    picam2 = open_camera("fewbuffers")
    picam2.configure(video_config(picam2, buffer_count=6))
    assert [sc.buffer_count for sc in picam2.libcamera_config] == [4, 4]
    assert picam2.camera_configuration()["buffer_count"] == 6
    picam2.start()
    held = [picam2.capture_request(wait=2) for _ in range(4)]
    with pytest.raises(TimeoutError):
        picam2.capture_request(wait=1)
    picam2.cancel_all_and_flush()
    for request in held:
        request.release()
    capture_yuv(picam2)


def test_a_camera_without_exposure_controls(open_camera):
    picam2 = open_camera("noexposure")
    assert not {"ExposureTime", "AnalogueGain"} & set(picam2.camera_controls)
    assert "FrameDurationLimits" in picam2.camera_controls
    picam2.configure(video_config(picam2))
    picam2.start()
    assert "ExposureTime" not in picam2.capture_metadata()
    with pytest.raises(RuntimeError, match="ExposureTime"):
        picam2.set_controls({"ExposureTime": 20000})


def test_footage_replays_the_real_burst(open_camera, realcam_frames):
    """Each replayed frame is one of the source JPEGs (luma as decoded: full-range BT.601)
    and the whole burst goes by."""
    sources = [np.asarray(Image.open(realcam_frames / "footage" / f"{i}.jpg").convert("L"),
                          dtype=np.int16) for i in range(FOOTAGE_IMAGES)]
    picam2 = open_camera("footage")
    picam2.configure(video_config(picam2, libcamera.ColorSpace.Sycc()))
    picam2.start()
    seen = []
    for _ in range(60):
        y, _, _ = planes(capture_yuv(picam2)[0], MAIN)
        errors = [np.abs(y.astype(np.int16) - s).mean() for s in sources]
        best = int(np.argmin(errors))
        assert errors[best] < 2.5, errors
        seen.append(best)
    assert set(seen) == set(range(FOOTAGE_IMAGES)), seen
