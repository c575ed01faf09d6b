"""Filter stage: is there something in this frame that was not in the background?

Pure numpy/OpenCV on the lores Y plane, no I/O. For each frame, in order:

1. blur away sensor grain;
2. relight the background to the frame's light by histogram matching, so a
   cloud, an auto-exposure step or the IR lamp switching does not count
   (it also follows highlights clipping at 255);
3. difference in a signed type (the picamera2 example's uint8 subtraction
   wraps around);
4. threshold per pixel: at least `pixel_threshold`, raised to several times
   the frame's own noise (estimated from the difference image, so a noisy
   night or thermal frame is judged on its noise), and raised further where
   the background itself moved (vegetation that swayed in the frames before
   the trigger);
5. drop masked areas, despeckle (rain, snow, grain), keep the largest blob;
6. if most of the picture changed yet its structure still matches the
   background, it is a light change: not motion, and the background is
   rebased on this frame;
7. change that the background shifted by a few pixels explains (camera
   shake, sway, shimmer) is not a body;
8. a body is there in the camera frame just before too; a flicker is not.

With no background (no frame of the empty scene before the trigger: standby,
or the trap just started) the event is judged by trapd.burst_filter instead;
`score` then keeps every frame (reference "none").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from trapd.config import CameraConfig, FilterConfig

# A frame that changed almost everywhere but still correlates this well with
# the background shows the same scene under other light; below it, something
# new fills the view (an animal at the lens).
LIGHT_CHANGE_MIN_CORRELATION = 0.8
# Change must stand this many noise standard deviations above the difference
# image's own noise (robust estimate: 1.4826 x median absolute difference).
NOISE_SIGMAS = 4.0
MAD_TO_SIGMA = 1.4826
# How much of the background's own per-pixel movement (its largest deviation
# from the median over the background frames) is added to the threshold
# there. Over 3-6 frames that deviation is about 1.4 standard deviations of
# the pixel's own noise, so this asks NOISE_SIGMAS of them, as for the frame.
BACKGROUND_MOTION_WEIGHT = NOISE_SIGMAS / 1.4
DESPECKLE_KERNEL = np.ones((3, 3), np.uint8)
# Change is counted in a window this many times the smallest animal's size
# (and at least MIN_WINDOW_PX), where a walking body's change gathers.
WINDOW_PER_ANIMAL = 2.0
MIN_WINDOW_PX = 8
WINDOW_STEP = 4
# A window counts only if this many of its changed pixels exceed their
# threshold by CORE_MARGIN x pixel_threshold (0.5: a hare or leopard under the
# IR lamp differs from leaf litter by only about twice pixel_threshold).
CORE_MARGIN = 0.5
MIN_CORE_PIXELS = 4
# The frame's own noise may raise the threshold to at most this many times
# pixel_threshold: beyond that, the "noise" is the scene having changed.
MAX_NOISE_RAISE = 2.0
# Movement seen in the background counts only where it covers a patch (a
# swaying leaf, a flickering warm spot), not a lone raindrop or grain, which
# the despeckle removes from the frame anyway; it then also protects the
# pixels around it.
BACKGROUND_MOTION_PATCH = np.ones((3, 3), np.uint8)
BACKGROUND_MOTION_SPREAD = np.ones((7, 7), np.uint8)
# An animal's silhouette is about this high for its body length, and at least
# this share of it differs from the background (fur against leaf litter).
SILHOUETTE_HEIGHT_PER_LENGTH = 0.6
SILHOUETTE_SHARE_CHANGED = 0.5
# A detection must be confirmed by the previous camera frame: in the window
# grown by CONFIRM_REACH windows each way (4 body lengths of the smallest
# animal: a hare at 10 m/s moves 2.5 per frame at 10 fps), at least
# CONFIRM_SHARE of the least change that counts (min_blob_fraction) must
# differ from the background too (half: an animal just coming into view
# showed less of itself the frame before).
CONFIRM_REACH = 2.0
CONFIRM_SHARE = 0.5
# A change that the background, shifted rigidly by up to half the smallest
# animal's length, explains is the background moving (camera shake, a branch
# swaying, heat shimmer), not a body: a body is not in the background, so no
# shift of it makes one. Tested around the densest window (grown by one
# window each way), on the SHIFTS_TRIED shifts that match best.
SHIFT_PER_ANIMAL_LENGTH = 0.5
SHIFTS_TRIED = 2
SHIFT_SAMPLE = 4
CLEARLY_NOT_A_SHIFT = 3.0   # sampled change at the best shift, in multiples of what is needed
SHIFT_ROUNDS = 3            # shifts tried in turn, e.g. two branches swaying apart
LEVELS = np.arange(256, dtype=np.float32)
# Histogram matching is ill-conditioned at grey levels few pixels use (a dark
# night view's highlights, a shaken view's rare tones): there the relight
# table leans on the straight line that fits it best. Matching's weight at a
# level is n / (n + RELIGHT_TRUST_SHARE), n the share of the background's
# pixels within RELIGHT_NEIGHBOURHOOD levels of it.
RELIGHT_NEIGHBOURHOOD = 8
RELIGHT_TRUST_SHARE = 0.034
# Cells (rows, columns) over which local brightness changes are measured, and
# the largest local gain followed.
LOCAL_GAIN_GRID = (6, 8)
CELL_SAMPLES = 10          # a cell's median is taken over CELL_SAMPLES x CELL_SAMPLES values
MAX_LOCAL_GAIN = 1.6


@dataclass(frozen=True)
class MotionResult:
    # Changed pixels in the densest animal-sized window, as a fraction of the
    # frame; when fewer changed in the whole frame than an animal needs, all of them.
    score: float
    keep: bool
    bbox: tuple[int, int, int, int] | None   # x, y, w, h of that blob in lores pixels
    changed_fraction: float
    light_change: bool
    changed: np.ndarray | None = None        # the despeckled change mask, for debugging
    # Did the camera frame just before show change around the same place?
    # None: not asked (nothing to keep, or no previous frame known).
    confirmed: bool | None = None
    # What judged it: "pre-trigger" (the background of the frames before the
    # trigger), "older view", "burst" (trapd.burst_filter) or "none" (kept unjudged).
    reference: str = "pre-trigger"


def smallest_animal_px(config: FilterConfig, camera: CameraConfig) -> tuple[float, float]:
    """Width and height, in lores pixels, of the smallest animal of interest
    at the farthest distance (pinhole camera, the lens's horizontal field of view)."""
    width, height = camera.lores_size
    half_width_m = config.max_distance_m * math.tan(math.radians(camera.horizontal_fov_deg) / 2)
    metres_per_px = 2 * half_width_m / width
    length_px = config.min_animal_length_m / metres_per_px
    return length_px, length_px * SILHOUETTE_HEIGHT_PER_LENGTH


def min_blob_fraction(config: FilterConfig, camera: CameraConfig) -> float:
    """The least change that counts as an animal, as a fraction of the
    frame: part of the smallest animal's silhouette, unless set."""
    if config.min_blob_fraction is not None:
        return config.min_blob_fraction
    w, h = smallest_animal_px(config, camera)
    return w * h * SILHOUETTE_SHARE_CHANGED / (camera.lores_size[0] * camera.lores_size[1])


class MotionFilter:
    """Scores the frames of one event against the background of the frames
    before it. `set_background` starts an event; `score` takes its frames in
    order."""

    def __init__(self, config: FilterConfig, camera: CameraConfig) -> None:
        self.config = config
        self.min_blob_fraction = min_blob_fraction(config, camera)
        w, h = smallest_animal_px(config, camera)
        self._window = (max(MIN_WINDOW_PX, round(w * WINDOW_PER_ANIMAL)),
                        max(MIN_WINDOW_PX, round(h * WINDOW_PER_ANIMAL)))
        self._max_shift = max(1, round(w * SHIFT_PER_ANIMAL_LENGTH))
        self._exclude = _mask_image(config.masks, camera.lores_size)
        self._background: np.ndarray | None = None
        self._relight: _Relight | None = None
        self._background_motion: np.ndarray | None = None
        self._confirm_motion: np.ndarray | None = None

    @property
    def has_background(self) -> bool:
        return self._background is not None

    def set_background(self, lores_frames: Sequence[np.ndarray]) -> None:
        """Background = per-pixel median of the frames, oldest first (robust
        to one frame with a bird in it), and how much each pixel moves on its
        own (see _background_motion)."""
        if not lores_frames:
            self._background = self._background_motion = self._confirm_motion = None
            return
        stack = np.stack([self._smooth(f) for f in lores_frames]).astype(np.float32)
        median = np.median(stack, axis=0)
        floor = self.config.pixel_threshold
        self._use_background(median.astype(np.uint8), _background_motion(stack, median, floor))
        # The newest background frame is the previous camera frame of the first
        # frame scored: its own change must not hide it from the confirmation.
        self._confirm_motion = (_background_motion(stack[:-1], median, floor)
                                if len(stack) > 1 else self._background_motion)

    def rebase(self, lores_y: np.ndarray) -> None:
        """Take this frame as the background (after a light or mode switch)."""
        self._use_background(self._smooth(lores_y), self._background_motion)

    def _use_background(self, background: np.ndarray, motion: np.ndarray | None) -> None:
        self._background = background
        self._relight = _Relight(background)
        self._background_cells = _cell_medians(background)
        self._background_motion = motion

    def score(self, lores_y: np.ndarray, previous: np.ndarray | None = None) -> MotionResult:
        """`previous`: the camera frame just before this one (lores Y), if known.
        A change it does not show around the same place is a flicker, not a body."""
        if not self.config.enabled or self._background is None:
            return MotionResult(1.0, True, None, 0.0, False, reference="none")
        smoothed = self._smooth(lores_y)
        current = smoothed.astype(np.float32)
        relight = self._relight.table(_cdf(smoothed))
        background = cv2.LUT(self._background, relight)
        relit_cells = np.interp(self._background_cells, LEVELS, relight)
        background *= _local_gain(_cell_medians(smoothed), relit_cells, current.shape)
        difference = cv2.absdiff(current, background)
        floor = float(self.config.pixel_threshold)
        # A sample is plenty for a noise level, and a full median is the costliest step.
        noise = NOISE_SIGMAS * MAD_TO_SIGMA * _median(difference[::8, ::8].ravel())
        level = min(max(floor, noise), floor * MAX_NOISE_RAISE)
        threshold = level
        if self._background_motion is not None:
            threshold = level + self._background_motion
        changed = difference > threshold
        if self._exclude is not None:
            changed &= ~self._exclude
        changed_fraction = cv2.countNonZero(changed.view(np.uint8)) / changed.size
        if changed_fraction > self.config.light_change_fraction and \
                _correlation(current, background) >= LIGHT_CHANGE_MIN_CORRELATION:
            self.rebase(lores_y)
            return MotionResult(0.0, False, None, changed_fraction, True)
        mask = cv2.morphologyEx(changed.view(np.uint8), cv2.MORPH_OPEN, DESPECKLE_KERNEL)
        left = cv2.countNonZero(mask) / mask.size
        if left < self.min_blob_fraction:   # no window can hold enough: the quiet frame's shortcut
            return MotionResult(left, False, None, changed_fraction, False, mask)
        core = mask & (difference > threshold + floor * CORE_MARGIN).view(np.uint8)
        score, bbox = _densest_window(mask, core, self._window)
        keep, confirmed = False, None
        for shifts_tried in range(SHIFT_ROUNDS + 1):
            if score < self.min_blob_fraction:
                break
            # The cheaper test first: a flicker the frame before did not show ends it.
            if previous is not None:
                confirmed = self._confirmed(previous, bbox, background, level)
                if not confirmed:
                    break
            shift = None if shifts_tried == SHIFT_ROUNDS else \
                self._background_shift(current, background, threshold, bbox)
            if shift is None:
                keep = True
                break
            # Only what that shift of the background does not explain either is left.
            changed &= _changed_after_shift(current, background, threshold, shift)
            mask = cv2.morphologyEx(changed.view(np.uint8), cv2.MORPH_OPEN, DESPECKLE_KERNEL)
            score, bbox = _densest_window(mask, core & mask, self._window)
        return MotionResult(score, keep, bbox, changed_fraction, False, mask, confirmed)

    def _background_shift(self, current: np.ndarray, background: np.ndarray,
                          threshold, bbox) -> tuple[int, int] | None:
        """A small rigid shift (dy, dx) of the background that leaves less change
        around the window than counts as an animal, if there is one: current
        (y, x) then matches background (y + dy, x + dx). See SHIFT_PER_ANIMAL_LENGTH."""
        x, y, w, h = bbox
        s = self._max_shift
        height, width = current.shape
        x0, y0 = max(s, x - w), max(s, y - h)
        x1, y1 = min(width - s, x + 2 * w), min(height - s, y + 2 * h)
        if x1 <= x0 or y1 <= y0:
            return None
        patch = current[y0:y1, x0:x1]
        limit = threshold[y0:y1, x0:x1] if np.ndim(threshold) else threshold
        if self._exclude is not None:
            limit = np.where(self._exclude[y0:y1, x0:x1], np.inf, limit)
        shifted = sliding_window_view(background[y0 - s:y1 + s, x0 - s:x1 + s], patch.shape)
        # Every shift is compared on one pixel in SHIFT_SAMPLE x SHIFT_SAMPLE (not
        # every other shift: grass and fur change within a pixel's shift). A body
        # leaves far more change than needed at every shift: that settles it;
        # otherwise the best few shifts are compared in full and despeckled.
        sample = np.s_[::SHIFT_SAMPLE, ::SHIFT_SAMPLE]
        counts = _change_counts(shifted[(..., *sample)], patch[sample],
                                limit[sample] if np.ndim(limit) else limit)
        needed = self.min_blob_fraction * current.size
        if counts.min() * SHIFT_SAMPLE ** 2 > needed * CLEARLY_NOT_A_SHIFT:
            return None
        for best in np.argsort(counts, axis=None)[:SHIFTS_TRIED]:
            i, j = np.unravel_index(best, counts.shape)
            changed = np.abs(shifted[i, j] - patch) > limit
            despeckled = cv2.morphologyEx(changed.view(np.uint8), cv2.MORPH_OPEN, DESPECKLE_KERNEL)
            if cv2.countNonZero(despeckled) < needed:
                return int(i - s), int(j - s)
        return None

    def _confirmed(self, previous: np.ndarray, bbox, background: np.ndarray,
                   level: float) -> bool:
        """Does the previous camera frame also differ from the background
        around this window (the window grown by CONFIRM_REACH windows each way,
        as far as a fast animal moves in one frame)? An animal is there in
        consecutive frames; heat shimmer, sensor flicker, a raindrop or a leaf
        catching the sun comes and goes. Only the candidate's neighbourhood is
        looked at, so it costs little, and only for a frame that would be kept."""
        x, y, w, h = bbox
        height, width = previous.shape
        reach_x, reach_y = round(w * CONFIRM_REACH), round(h * CONFIRM_REACH)
        x0, y0 = max(0, x - reach_x), max(0, y - reach_y)
        x1, y1 = min(width, x + w + reach_x), min(height, y + h + reach_y)
        k = self.config.blur_px
        margin = k // 2   # blur a slightly larger crop so its inside matches a whole-frame blur
        cx0, cy0 = max(0, x0 - margin), max(0, y0 - margin)
        cx1, cy1 = min(width, x1 + margin), min(height, y1 + margin)
        smoothed = cv2.GaussianBlur(previous[cy0:cy1, cx0:cx1], (k, k), 0)
        smoothed = smoothed[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0].astype(np.float32)
        limit = level
        if self._confirm_motion is not None:
            limit = limit + self._confirm_motion[y0:y1, x0:x1]
        changed = np.abs(smoothed - background[y0:y1, x0:x1]) > limit
        if self._exclude is not None:
            changed &= ~self._exclude[y0:y1, x0:x1]
        changed = cv2.morphologyEx(changed.view(np.uint8), cv2.MORPH_OPEN, DESPECKLE_KERNEL)
        return cv2.countNonZero(changed) >= CONFIRM_SHARE * self.min_blob_fraction * previous.size

    def _smooth(self, lores_y: np.ndarray) -> np.ndarray:
        k = self.config.blur_px
        return cv2.GaussianBlur(lores_y, (k, k), 0)


def _background_motion(stack: np.ndarray, median: np.ndarray, floor: float) -> np.ndarray:
    """How much to raise the threshold per pixel: how far it strayed from
    the median in the background frames (swaying leaves, shimmer, a
    thermal camera's flickering warm patch), where it strayed over a patch,
    spread to its neighbours. Where the newest two frames both differ from
    the median, something has arrived and stayed: an animal walking in
    before the trigger. There only the older half of the frames counts, so
    the animal does not hide itself."""
    deviation = np.abs(stack - median)
    strayed = deviation.max(axis=0)
    if len(stack) >= 3:
        arrived = (deviation[-1] > floor) & (deviation[-2] > floor)
        older = deviation[: (len(stack) + 1) // 2].max(axis=0)
        strayed = np.where(arrived, older, strayed)
    strayed = cv2.morphologyEx(strayed, cv2.MORPH_OPEN, BACKGROUND_MOTION_PATCH)
    return cv2.dilate(strayed, BACKGROUND_MOTION_SPREAD) * BACKGROUND_MOTION_WEIGHT


def _changed_after_shift(current: np.ndarray, background: np.ndarray, threshold,
                         shift: tuple[int, int]) -> np.ndarray:
    """Pixels the background shifted by (dy, dx) does not explain. The strip
    the shift leaves with no background pixel to compare counts as explained:
    it is too narrow to hold an animal."""
    dy, dx = shift
    height, width = current.shape
    here = np.s_[max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx)]
    there = np.s_[max(0, dy):height - max(0, -dy), max(0, dx):width - max(0, -dx)]
    limit = threshold[here] if np.ndim(threshold) else threshold
    changed = np.zeros(current.shape, bool)
    changed[here] = np.abs(current[here] - background[there]) > limit
    return changed


def _change_counts(shifted: np.ndarray, patch: np.ndarray, limit) -> np.ndarray:
    """Pixels beyond the limit for each shift of a (shifts, shifts, h, w) view."""
    return np.count_nonzero(np.abs(shifted - patch) > limit, axis=(2, 3))


def _mask_image(masks, size: tuple[int, int]) -> np.ndarray | None:
    """Pixels the technician excluded (polygons in frame fractions)."""
    if not masks:
        return None
    width, height = size
    image = np.zeros((height, width), np.uint8)
    for polygon in masks:
        points = np.array([[x * width, y * height] for x, y in polygon], np.int32)
        cv2.fillPoly(image, [points], 1)
    return image.astype(bool)


def _cdf(image: np.ndarray) -> np.ndarray:
    histogram = cv2.calcHist([image], [0], None, [256], [0, 256]).ravel()
    return np.cumsum(histogram) / image.size


class _Relight:
    """Background level -> the level at the same rank in the current frame:
    the background as it would look under the current light (histogram
    matching; an animal covers too little of the frame to move the ranks
    much), leaning on its best straight line where few pixels decide it.
    What depends on the background alone is worked out once per event."""

    def __init__(self, background: np.ndarray) -> None:
        self.cdf = _cdf(background)
        self._used = np.diff(self.cdf, prepend=0.0)   # share of the pixels at each level
        near = np.convolve(self._used, np.ones(2 * RELIGHT_NEIGHBOURHOOD + 1), mode="same")
        self._trust = near / (near + RELIGHT_TRUST_SHARE)
        self._offsets = LEVELS - self._used @ LEVELS
        self._spread = self._used @ self._offsets ** 2

    def table(self, current_cdf: np.ndarray) -> np.ndarray:
        matched = np.interp(self.cdf, current_cdf, LEVELS)
        line = self._least_squares_line(matched)
        return (self._trust * matched + (1 - self._trust) * line).astype(np.float32)

    def _least_squares_line(self, matched: np.ndarray) -> np.ndarray:
        """Through the table, each level weighted by its pixels."""
        mean = self._used @ matched
        slope = self._used @ (self._offsets * (matched - mean)) / self._spread if self._spread else 1.0
        return np.clip(mean + slope * self._offsets, 0, 255)


def _cell_medians(image: np.ndarray) -> np.ndarray:
    """Median level of each coarse cell, taken on a quarter-size copy (the
    image is blurred already, and a median of 100 values per cell is plenty)."""
    rows, columns = LOCAL_GAIN_GRID
    small = cv2.resize(image, (columns * CELL_SAMPLES, rows * CELL_SAMPLES), interpolation=cv2.INTER_AREA)
    cells = small.reshape(rows, CELL_SAMPLES, columns, CELL_SAMPLES).transpose(0, 2, 1, 3)
    return _median(cells.reshape(rows, columns, -1), axis=2).astype(np.float32)


def _median(values: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """The upper median; np.median's averaging of the middle pair is not worth its cost here."""
    middle = values.shape[axis] // 2
    return np.take(np.partition(values, middle, axis=axis), middle, axis=axis)


def _local_gain(current_cells: np.ndarray, background_cells: np.ndarray,
                shape: tuple[int, int]) -> np.ndarray:
    """How much brighter each part of the frame got, smoothly varying: the
    IR lamp's beam, vignetting, a cloud's shadow over half the view. From
    cell medians, so a body covering less than half a cell does not
    brighten its own cell."""
    gain = (current_cells + 1.0) / (background_cells + 1.0)
    gain = np.clip(gain, 1 / MAX_LOCAL_GAIN, MAX_LOCAL_GAIN).astype(np.float32)
    return cv2.resize(gain, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denominator if denominator else 1.0


def _densest_window(changed: np.ndarray, core: np.ndarray, window: tuple[int, int]):
    """Changed pixels in the animal-sized window that holds the most, as a
    fraction of the frame, and that window (x, y, w, h). A body broken up by
    its own texture still fills one window; scattered flicker does not.
    Only windows with a core of strong change count (hysteresis, as in
    Canny): grain and shimmer rise just above the threshold, a body differs
    from the ground by far more somewhere. `core` None: no hysteresis."""
    w, h = window
    counts = _window_sums(changed, w, h)
    if core is not None:   # None: every changed pixel is core
        counts[_window_sums(core, w, h) < MIN_CORE_PIXELS] = 0
    i, j = np.unravel_index(int(np.argmax(counts)), counts.shape)
    peak = float(counts[i, j])
    if peak < 1:
        return 0.0, None
    return peak / changed.size, (WINDOW_STEP * j, WINDOW_STEP * i, w, h)


def _window_sums(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """Sum of `image` in every w x h window inside the frame, from its
    integral image; windows every WINDOW_STEP pixels (close enough for a
    window twice the smallest animal's size)."""
    s = cv2.integral(image)
    k = WINDOW_STEP
    return s[h::k, w::k] - s[:-h:k, w::k] - s[h::k, :-w:k] + s[:-h:k, :-w:k]
