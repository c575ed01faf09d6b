"""The filter on constructed lores frames: each case a thing a trap meets."""

import cv2
import numpy as np
import pytest

from trapd.config import CameraConfig, FilterConfig
from trapd.motion import MotionFilter, min_blob_fraction, smallest_animal_px

W, H = 320, 240
CAMERA = CameraConfig()


def ground(seed: int = 1) -> np.ndarray:
    """Leaf litter: smooth texture at a few scales."""
    rng = np.random.default_rng(seed)
    texture = np.zeros((H, W), np.float32)
    for cells, weight in ((8, 40), (32, 20)):
        small = rng.normal(0, 1, (cells * 3 // 4, cells)).astype(np.float32)
        texture += weight * cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
    return np.clip(110 + texture, 0, 255).astype(np.uint8)


def grain(frame: np.ndarray, seed: int, sigma: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8)


def with_body(frame, x, y, w, h, value=200):
    out = frame.copy()
    cv2.ellipse(out, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, int(value), -1)
    return out


def with_branch(frame, sway_px):
    out = frame.copy()
    cv2.line(out, (250 + sway_px, 20), (200 + sway_px, 150), 40, 6)
    cv2.ellipse(out, (250 + sway_px, 40), (30, 14), 20, 0, 360, 60, -1)
    return out


def make_filter(background, **settings):
    motion = MotionFilter(FilterConfig(**settings), CAMERA)
    motion.set_background(background)
    return motion


@pytest.fixture
def scene():
    return ground()


@pytest.fixture
def still(scene):
    return make_filter([grain(scene, s) for s in range(6)])


def test_an_animal_is_kept_and_boxed(still, scene):
    result = still.score(grain(with_body(scene, 100, 120, 50, 30), 9))
    assert result.keep
    x, y, w, h = result.bbox
    assert 80 <= x + w / 2 <= 150 and 110 <= y + h / 2 <= 160


def test_sensor_grain_alone_is_dropped(still, scene):
    assert not still.score(grain(scene, 42)).keep


@pytest.mark.parametrize("gain", [0.45, 1.7])
def test_a_whole_frame_light_step_is_not_motion(still, scene, gain):
    relit = np.clip(scene.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    assert not still.score(grain(relit, 3)).keep


def test_a_light_step_rebases_the_background(still, scene):
    dim = (scene * 0.5).astype(np.uint8)
    still.score(grain(dim, 3))
    assert not still.score(grain(dim, 4)).keep
    assert still.score(grain(with_body(dim, 60, 100, 50, 30, value=160), 5)).keep


def test_the_ir_lamp_beam_pattern_switching_is_not_motion(still, scene):
    ys, xs = np.mgrid[0:H, 0:W]
    beam = np.clip(1.15 - ((xs / W - 0.5) ** 2 + (ys / H - 0.5) ** 2) * 2.2, 0.35, 1.0)
    lamp_on = np.clip(scene * beam, 0, 255).astype(np.uint8)
    assert not still.score(grain(lamp_on, 7)).keep


def test_a_dark_animal_on_bright_ground_does_not_wrap_around(still, scene):
    """The picamera2 example's uint8 subtraction wraps around; ours sees it."""
    assert still.score(grain(with_body(scene, 150, 100, 50, 30, value=5), 4)).keep


def test_an_animal_at_the_lens_is_not_taken_for_a_light_change(still):
    close_up = ground(seed=77)           # fur filling the view: new structure everywhere
    result = still.score(close_up)
    assert result.keep and not result.light_change


def test_a_swaying_branch_is_dropped(scene):
    background = [grain(with_branch(scene, sway), s) for s, sway in enumerate((-8, -3, 4, 8, 2, -6))]
    motion = make_filter(background)
    assert not motion.score(grain(with_branch(scene, 6), 11)).keep
    assert motion.score(grain(with_body(with_branch(scene, 6), 40, 150, 50, 30), 12)).keep


def rain(frame, seed, drops=150):
    out = frame.copy()
    for x, y in np.random.default_rng(seed).integers(0, [W, H], size=(drops, 2)):
        cv2.line(out, (int(x), int(y)), (int(x) + 1, int(y) + 5), 230, 1)
    return out


def test_in_steady_rain_new_drops_are_ignored_and_animals_kept(scene):
    motion = make_filter([grain(rain(scene, 100 + s), s) for s in range(6)])
    assert not motion.score(grain(rain(scene, 6), 6)).keep
    assert motion.score(grain(rain(with_body(scene, 100, 120, 50, 30), 7), 7)).keep


def with_warm_patch(frame, warmth):
    """A thermal camera's warm spot at the frame's edge, its level drifting."""
    out = frame.astype(np.float32)
    patch = np.zeros(frame.shape, np.float32)
    cv2.ellipse(patch, (20, 230), (14, 10), 0, 0, 360, 1.0, -1)
    return np.clip(out + warmth * cv2.GaussianBlur(patch, (9, 9), 0), 0, 255).astype(np.uint8)


def test_a_warm_patch_flickering_further_than_in_the_background_is_dropped(scene):
    background = [grain(with_warm_patch(scene, warmth), s)
                  for s, warmth in enumerate((0, 20, -15, 10, -20, 5))]
    motion = make_filter(background)
    flicker = grain(with_warm_patch(scene, 85), 11)
    assert not motion.score(flicker, previous=grain(with_warm_patch(scene, 80), 12)).keep
    assert motion.score(grain(with_body(with_warm_patch(scene, 20), 150, 100, 50, 30), 13)).keep


def test_a_masked_area_never_counts(scene):
    background = [grain(scene, s) for s in range(6)]
    road = ((0.0, 0.6), (1.0, 0.6), (1.0, 0.9), (0.0, 0.9))   # a track across the lower view
    motion = make_filter(background, masks=(road,))
    assert not motion.score(grain(with_body(scene, 100, 160, 60, 40), 7)).keep
    assert motion.score(grain(with_body(scene, 100, 60, 60, 40), 8)).keep


def test_a_slow_large_animal_that_walked_in_before_the_trigger_is_kept(scene):
    """It shows in the newest background frames; it must not hide itself."""
    background = [grain(scene, s) for s in range(4)]
    background += [grain(with_body(scene, 0, 100, 60 + 10 * i, 60), 10 + i) for i in range(2)]
    motion = make_filter(background)
    assert motion.score(grain(with_body(scene, 0, 100, 90, 60), 20)).keep


def test_a_fast_small_animal_at_the_set_distance_is_kept(scene):
    w, h = smallest_animal_px(FilterConfig(), CAMERA)
    motion = make_filter([grain(scene, s) for s in range(6)])
    hare = with_body(scene, 200, 180, int(round(w)), int(round(h)) + 1, value=190)
    assert motion.score(grain(hare, 30)).keep


def test_without_a_view_of_the_empty_scene_every_frame_is_kept(scene):
    assert MotionFilter(FilterConfig(), CAMERA).score(scene).keep


def test_with_the_filter_disabled_every_frame_is_kept(scene):
    assert make_filter([scene], enabled=False).score(scene).keep


def test_sensitivity_follows_animal_size_and_distance():
    hare_far = min_blob_fraction(FilterConfig(min_animal_length_m=0.4, max_distance_m=10), CAMERA)
    hare_near = min_blob_fraction(FilterConfig(min_animal_length_m=0.4, max_distance_m=5), CAMERA)
    leopard_far = min_blob_fraction(FilterConfig(min_animal_length_m=1.2, max_distance_m=10), CAMERA)
    assert hare_far < hare_near and hare_far < leopard_far
    assert hare_near == pytest.approx(4 * hare_far)
    assert min_blob_fraction(FilterConfig(min_blob_fraction=0.01), CAMERA) == 0.01


# -- confirmation by the camera frame just before ---------------------------

def test_a_change_the_previous_camera_frame_did_not_show_is_a_flicker(still, scene):
    """Heat shimmer or a glint: there in one frame, not in the one before."""
    flicker = grain(with_body(scene, 100, 120, 24, 14), 9)
    assert still.score(flicker).keep                      # no previous frame: judged alone
    result = still.score(flicker, previous=grain(scene, 8))
    assert not result.keep and result.confirmed is False


def test_an_animal_seen_in_the_previous_frame_nearby_is_kept(still, scene):
    """A running hare at the farthest distance moves over two body lengths a frame."""
    w, h = smallest_animal_px(FilterConfig(), CAMERA)
    size = (int(round(w)), int(round(h)) + 1)
    before = grain(with_body(scene, 200, 180, *size, value=190), 30)
    now = grain(with_body(scene, 200 - int(2.5 * w), 180, *size, value=190), 31)
    result = still.score(now, previous=before)
    assert result.keep and result.confirmed


def test_an_animal_coming_into_view_in_the_newest_background_frame_is_kept(scene):
    """The first frame scored in the trap has the newest background frame as
    the frame before it; the animal's change there must not hide it."""
    background = [grain(scene, s) for s in range(5)]
    background.append(grain(with_body(scene, -15, 100, 30, 18), 5))   # half in view
    motion = make_filter(background)
    now = grain(with_body(scene, -5, 100, 30, 18), 6)
    result = motion.score(now, previous=background[-1])
    assert result.keep and result.confirmed


def brighter_body(frame, x, y, w, h, by):
    out = frame.astype(np.int16)
    body = np.zeros(frame.shape, np.uint8)
    cv2.ellipse(body, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, 1, -1)
    return np.clip(out + by * body, 0, 255).astype(np.uint8)


def test_a_dim_animal_under_the_ir_lamp_is_kept(still, scene):
    """Fur under the lamp may stand only about twice pixel_threshold above the
    ground; the strong-change core must not ask for more."""
    body = brighter_body(scene, 100, 120, 30, 18, by=34)
    result = still.score(grain(body, 9), previous=grain(brighter_body(scene, 96, 120, 30, 18, by=34), 8))
    assert result.keep


def test_camera_shake_is_not_motion(still, scene):
    """The whole view displaced by a few pixels (the post knocked by wind or
    a passing animal outside the view): the background, shifted, explains it."""
    shaken = np.roll(scene, (2, 3), axis=(0, 1))
    assert not still.score(grain(shaken, 7)).keep


def test_a_branch_swaying_further_than_in_the_background_is_dropped(scene):
    """Sway the background never showed (a gust after a calm spell) is still
    the branch displaced, not a body."""
    calm = make_filter([grain(with_branch(scene, 0), s) for s in range(6)])
    assert not calm.score(grain(with_branch(scene, 4), 8)).keep


def test_a_body_in_front_of_a_shaken_view_is_kept(still, scene):
    shaken = np.roll(scene, (2, 3), axis=(0, 1))
    assert still.score(grain(with_body(shaken, 100, 120, 30, 18), 7)).keep
