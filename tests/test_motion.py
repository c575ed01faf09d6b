"""The filter on synthetic lores frames: what it keeps and what it drops."""

import numpy as np
import pytest

from trapd.config import FilterConfig
from trapd.motion import MotionFilter

H, W = 240, 320


def textured_scene(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, size=(24, 32)).astype(np.uint8)
    import cv2
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)


def noisy(frame: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def motion_filter():
    f = MotionFilter(FilterConfig())
    background = textured_scene()
    f.set_background([noisy(background, s) for s in range(4)])
    return f, background


def with_animal(frame: np.ndarray, x: int, y: int, w: int, h: int, value: int = 230) -> np.ndarray:
    out = frame.copy()
    out[y:y + h, x:x + w] = value
    return out


def test_an_animal_sized_blob_is_kept_with_its_box(motion_filter):
    f, background = motion_filter
    result = f.score(noisy(with_animal(background, 100, 120, 40, 25), 9))
    assert result.keep
    x, y, w, h = result.bbox
    assert abs(x - 100) <= 4 and abs(y - 120) <= 4 and abs(w - 40) <= 8 and abs(h - 25) <= 8


def test_sensor_noise_alone_is_dropped(motion_filter):
    f, background = motion_filter
    assert not f.score(noisy(background, 42)).keep


@pytest.mark.parametrize("gain", [0.5, 1.6])
def test_a_whole_frame_light_change_is_not_motion(motion_filter, gain):
    f, background = motion_filter
    relit = np.clip(background.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    result = f.score(noisy(relit, 3))
    assert not result.keep


def test_a_uniform_brightness_step_does_not_wrap_around(motion_filter):
    """The picamera2 example's uint8 subtraction scores +16 everywhere as 0 and
    a dark animal on a bright patch as a tiny change; ours sees the animal."""
    f, background = motion_filter
    dark_animal = with_animal(background, 150, 100, 40, 30, value=5)
    assert f.score(noisy(dark_animal, 4)).keep


def test_an_animal_filling_the_frame_is_not_taken_for_a_light_change(motion_filter):
    f, _ = motion_filter
    close_up = textured_scene(seed=77)      # fur at the lens: new structure everywhere
    result = f.score(close_up)
    assert result.keep and not result.light_change


def test_isolated_specks_are_despeckled(motion_filter):
    f, background = motion_filter
    specks = background.copy()
    rng = np.random.default_rng(5)
    ys, xs = rng.integers(0, H, 200), rng.integers(0, W, 200)
    specks[ys, xs] = 255 - specks[ys, xs]
    assert not f.score(specks).keep


def test_with_the_filter_disabled_every_frame_is_kept(motion_filter):
    _, background = motion_filter
    f = MotionFilter(FilterConfig(enabled=False))
    f.set_background([background])
    assert f.score(background).keep
