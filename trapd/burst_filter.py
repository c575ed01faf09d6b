"""Filter stage for events with no view of the empty scene just before them.

In standby the camera is off while idle and starts on the PIR edge, so there
are no pre-trigger frames to make a background (the trap just started is the
same case). Such an event is judged by two kinds of reference:

1. **An older view of the empty scene**, from the same light state (day or
   night IR): the last frames of earlier events. Minutes to days old, so sun
   angle, shadows, the IR level and the leaves differ; only a frame that
   matches it everywhere (no body-sized change of structure) is judged by it
   alone, and dropped.
2. **The burst itself**: a body moves between frames 0.1-1 s apart; a false
   trigger's scene does not, or moves like swaying leaves and dancing sun
   flecks (scattered, not a body-sized patch). A frame is kept when its
   structure changed over a body-sized patch against the burst frame before
   it or against the burst's first frame, or when the body found in the
   frame before is still there (nothing changed where it was). The first
   frame is judged when the second arrives (against it).

Structure, not brightness, is compared: each pixel's signs against its eight
neighbours two pixels away (a census transform with a dead band), which a
change of light (sun, cloud, lamp level, exposure) leaves alone and a body
changes. Nothing to judge by (one frame, no older view) keeps the frame: the
last resort, counted as reference "none".
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import cv2
import numpy as np

from trapd.config import CameraConfig, FilterConfig
from trapd.motion import DESPECKLE_KERNEL, MotionResult, _densest_window, min_blob_fraction, \
    smallest_animal_px, WINDOW_PER_ANIMAL, MIN_WINDOW_PX, _mask_image

# Which reference judged a frame (MotionResult.reference).
PRE_TRIGGER = "pre-trigger"
OLDER_VIEW = "older view"
BURST = "burst"
NO_REFERENCE = "none"

# Neighbours compared (dy, dx), two pixels away: beyond the blur's reach.
NEIGHBOURS = ((-2, -2), (-2, 0), (-2, 2), (0, -2), (0, 2), (2, -2), (2, 0), (2, 2))
# A neighbour is brighter/darker only beyond this many levels (a quarter of
# pixel_threshold), raised to this many noise sigmas of the frame.
DEAD_BAND_PER_THRESHOLD = 0.25
DEAD_BAND_SIGMAS = 2.0
MAX_DEAD_BAND_PER_THRESHOLD = 0.5
# An older view vouches for a frame only if it still matches the view almost
# everywhere: beyond this share of changed structure, the light or the leaves
# changed too much for it to tell a body from the rest.
OLDER_VIEW_MAX_CHANGED = 0.02
# A pixel's structure changed when this many of its 8 comparisons changed
# (a full flip, brighter <-> darker, counts 2, a sign from or to "even" 1).
CHANGED_COMPARISONS = 6
# Or when its brightness changed by more than this many pixel_threshold
# (after the overall level is matched), against every frame compared.
BRIGHTNESS_MARGIN = 2.0
# Frames of the event a frame is compared with (the newest; in the trap the
# camera frames between burst frames count too).
CONTEXT_FRAMES = 4
# A data bar (time, temperature, logo) printed at the top or bottom of camera
# trap photos: a band of rows at one level, ending within this share of the height.
DATA_BAR_MAX_SHARE = 0.12
DATA_BAR_UNIFORM_SHARE = 0.6
DATA_BAR_LEVELS = 6


class _Frame:
    """A frame's smoothed lores Y and its census codes, per dead band."""

    def __init__(self, smoothed: np.ndarray) -> None:
        self.smoothed = smoothed
        self.level = float(np.median(smoothed[::4, ::4])) + 1   # its overall brightness
        self.result: MotionResult | None = None
        self.body: tuple[int, int, int, int] | None = None
        self._codes: dict[int, np.ndarray] = {}

    def codes(self, dead_band: int) -> np.ndarray:
        if dead_band not in self._codes:
            self._codes[dead_band] = census(self.smoothed, dead_band)
        return self._codes[dead_band]


class BurstFilter:
    """Judges the frames of one event, in order, with no fresh background.
    `add` takes a frame to judge and returns the decisions that became final
    (the first frame's waits for the second); `observe` takes a camera frame
    of the event that is not judged (between burst frames), which serves as
    context; `finish` returns the decisions still waiting."""

    def __init__(self, config: FilterConfig, camera: CameraConfig,
                 older_view: list[np.ndarray] | None = None) -> None:
        self.config = config
        self.min_blob_fraction = min_blob_fraction(config, camera)
        w, h = smallest_animal_px(config, camera)
        self._window = (max(MIN_WINDOW_PX, round(w * WINDOW_PER_ANIMAL)),
                        max(MIN_WINDOW_PX, round(h * WINDOW_PER_ANIMAL)))
        self._exclude = _mask_image(config.masks, camera.lores_size)
        self._looked_for_bar = self._exclude is not None
        self._older = [_Frame(self._smooth(f)) for f in older_view or []]
        self._seen: deque[_Frame] = deque(maxlen=CONTEXT_FRAMES)   # earlier frames, newest last
        self._judged: _Frame | None = None      # the frame judged last
        self._pending: _Frame | None = None
        self._after_pending: deque[_Frame] = deque(maxlen=CONTEXT_FRAMES)
        self._dead_band: int | None = None

    def observe(self, lores_y: np.ndarray) -> None:
        if not self.config.enabled:
            return
        frame = self._frame(lores_y)
        if self._dead_band is not None:   # its census now, while the camera waits for the next burst frame
            frame.codes(self._dead_band)
        if self._pending is not None:
            self._after_pending.append(frame)
        self._seen.append(frame)

    def add(self, lores_y: np.ndarray) -> list[MotionResult]:
        if not self.config.enabled:   # the filter is off: every frame is kept
            return [MotionResult(1.0, True, None, 0.0, False, reference=NO_REFERENCE)]
        frame = self._frame(lores_y)
        decided = []
        if self._judged is None and self._pending is None:
            frame.result = self._first(frame)
            if frame.result is None:
                self._pending = frame
        else:
            if self._pending is not None:
                decided.append(self._settle_first([*self._after_pending, frame]))
            frame.result = self._later(frame)
        if frame.result is not None:
            self._judged = frame
            decided.append(frame.result)
        self._seen.append(frame)
        return decided

    def finish(self) -> list[MotionResult]:
        """The first frame's decision if no second frame came: judged by the
        frames seen after it, or (none) kept with nothing to judge it by."""
        if self._pending is None:
            return []
        if self._after_pending:
            return [self._settle_first(list(self._after_pending))]
        self._pending, pending = None, self._pending
        pending.result = MotionResult(1.0, True, None, 0.0, False, reference=NO_REFERENCE)
        return [pending.result]

    # -- decisions --------------------------------------------------------
    def _first(self, frame: _Frame) -> MotionResult | None:
        """Dropped now if an older view of the empty scene matches it
        everywhere (nothing body-sized changed, and little else); else it
        waits for the frames after it."""
        for older in self._older:
            score, bbox, changed, mask = self._change(frame, [older], self._dead_band_for(frame, older))
            if score < self.min_blob_fraction and changed <= OLDER_VIEW_MAX_CHANGED:
                return MotionResult(score, False, bbox, changed, False, mask, reference=OLDER_VIEW)
        return None

    def _settle_first(self, after: list[_Frame]) -> MotionResult:
        first, self._pending = self._pending, None
        first.result = self._judge(first, after[-CONTEXT_FRAMES:])
        self._after_pending.clear()
        self._judged = first
        return first.result

    def _later(self, frame: _Frame) -> MotionResult:
        result = self._judge(frame, list(self._seen))
        previous = self._judged
        if not result.keep and previous is not None and previous.body is not None \
                and self._still_there(frame, previous):
            frame.body = previous.body
            return replace(result, keep=True, bbox=previous.body)
        return result

    def _judge(self, frame: _Frame, others: list[_Frame]) -> MotionResult:
        """Kept if, over a body-sized patch, its structure is found in none of
        the other frames of the event (swaying leaves and dancing sun flecks
        come back to where they were; a body moves on)."""
        score, bbox, changed, mask = self._change(frame, others, self._event_dead_band(frame, others))
        keep = score >= self.min_blob_fraction
        frame.body = bbox if keep else None
        return MotionResult(score, keep, bbox, changed, False, mask, reference=BURST)

    def _still_there(self, frame: _Frame, previous: _Frame) -> bool:
        """Nothing changed where the body was in the frame judged before: it stands still."""
        x, y, w, h = previous.body
        score, *_ = self._change(frame, [previous], self._event_dead_band(frame, [previous]),
                                   np.s_[y:y + h, x:x + w])
        return score < self.min_blob_fraction

    # -- structure ----------------------------------------------------------
    def _brightness_changed(self, frame: _Frame, others: list[_Frame], region) -> np.ndarray:
        """Where the frame differs in brightness from every one of `others`
        (each brought to its overall level) by more than BRIGHTNESS_MARGIN x
        pixel_threshold: a body as smooth as the ground it covers, which the
        structure does not show (a grey hare on grey leaf litter at dusk)."""
        here = frame.smoothed[region]
        least = None
        for other in others:
            matched = cv2.convertScaleAbs(other.smoothed[region], alpha=frame.level / other.level)
            difference = cv2.absdiff(here, matched)
            least = difference if least is None else cv2.min(least, difference)
        return cv2.compare(least, BRIGHTNESS_MARGIN * self.config.pixel_threshold, cv2.CMP_GT) & 1

    def _frame(self, lores_y: np.ndarray) -> _Frame:
        if not self._looked_for_bar:
            self._exclude, self._looked_for_bar = data_bar(lores_y), True
        return _Frame(self._smooth(lores_y))

    def _smooth(self, lores_y: np.ndarray) -> np.ndarray:
        k = self.config.blur_px
        return cv2.GaussianBlur(lores_y, (k, k), 0)

    def _event_dead_band(self, frame: _Frame, others: list[_Frame]) -> int:
        """One dead band for the event (its noise does not change within it,
        and each frame's census is then worked out once), from the first two
        frames compared that were taken after the first: the camera may still
        be settling its exposure in the very first frame."""
        if self._dead_band is None:
            self._dead_band = self._dead_band_for(*(others[-2:] if len(others) >= 2 else (frame, others[-1])))
        return self._dead_band

    def _dead_band_for(self, a: _Frame, b: _Frame) -> int:
        threshold = self.config.pixel_threshold
        return round(min(max(threshold * DEAD_BAND_PER_THRESHOLD,
                             DEAD_BAND_SIGMAS * _noise_sigma(a.smoothed, b.smoothed)),
                         threshold * MAX_DEAD_BAND_PER_THRESHOLD))

    def _change(self, frame: _Frame, others: list[_Frame], dead_band: int, region=np.s_[:, :]):
        """Densest body-sized patch (within `region`) where the frame's
        structure differs from every one of `others`, as a fraction of the
        frame; its window; the share of the region changed; the change mask."""
        code = frame.codes(dead_band)[region]
        least = None
        for other in others:
            distance = np.bitwise_count(code ^ other.codes(dead_band)[region])
            least = distance if least is None else cv2.min(least, distance)
        changed = cv2.compare(least, CHANGED_COMPARISONS, cv2.CMP_GE) & 1
        changed |= self._brightness_changed(frame, others, region)
        if self._exclude is not None:
            changed &= ~self._exclude[region].view(np.uint8) & 1
        mask = cv2.morphologyEx(changed, cv2.MORPH_OPEN, DESPECKLE_KERNEL)
        whole, count = frame.smoothed.size, cv2.countNonZero(mask)
        if count < self.min_blob_fraction * whole:
            return count / whole, None, count / mask.size, mask
        window = (min(self._window[0], mask.shape[1]), min(self._window[1], mask.shape[0]))
        score, bbox = _densest_window(mask, None, window)
        return score * mask.size / whole, bbox, count / mask.size, mask


def census(smoothed: np.ndarray, dead_band: int) -> np.ndarray:
    """Per pixel, which of its 8 neighbours are brighter by more than
    `dead_band` (the low byte's bits) and which darker (the high byte's); the
    border compares with the edge pixel. Two pixels' codes differ in as many
    bits as comparisons changed (a flip, brighter <-> darker, in two)."""
    padded = cv2.copyMakeBorder(smoothed, 2, 2, 2, 2, cv2.BORDER_REPLICATE)
    height, width = smoothed.shape
    brighter = np.zeros((height, width), np.uint8)
    darker = np.zeros((height, width), np.uint8)
    for i, (dy, dx) in enumerate(NEIGHBOURS):
        neighbour = padded[2 + dy:2 + dy + height, 2 + dx:2 + dx + width]
        brighter |= cv2.compare(cv2.subtract(neighbour, smoothed), dead_band, cv2.CMP_GT) & (1 << i)
        darker |= cv2.compare(cv2.subtract(smoothed, neighbour), dead_band, cv2.CMP_GT) & (1 << i)
    return brighter | (darker.astype(np.uint16) << 8)


def _noise_sigma(a: np.ndarray, b: np.ndarray) -> float:
    """Noise of one frame, from the robust spread of the two frames'
    difference (most of the view did not change), sampled."""
    difference = a[::4, ::4].astype(np.int16) - b[::4, ::4]
    difference -= np.int16(np.median(difference))
    return float(1.4826 * np.median(np.abs(difference)) / np.sqrt(2))


def data_bar(lores_y: np.ndarray) -> np.ndarray | None:
    """Rows of a data bar at the top or bottom edge (time and temperature
    printed by the camera, changing between frames), as a mask; None if
    there is none. A band of rows at one level that ends within
    DATA_BAR_MAX_SHARE of the height; a uniform region reaching further (a
    night sky) is not a bar."""
    height = lores_y.shape[0]
    limit = max(2, round(height * DATA_BAR_MAX_SHARE))
    mask = np.zeros(lores_y.shape, bool)
    for rows in (np.arange(limit + 1), height - 1 - np.arange(limit + 1)):
        band = _uniform_band(lores_y, rows, limit)
        if band:
            mask[np.sort(rows[:band])] = True
    return mask if mask.any() else None


def _uniform_band(image: np.ndarray, rows: np.ndarray, limit: int) -> int:
    """How many rows from the edge the bar takes (0: none)."""
    level = np.median(image[rows[0]])
    def uniform(row):
        return np.mean(np.abs(image[row].astype(np.int16) - level) <= DATA_BAR_LEVELS) >= DATA_BAR_UNIFORM_SHARE
    if not uniform(rows[0]):
        return 0
    last = max(i for i in range(limit) if uniform(rows[i]))
    if last == limit - 1 or uniform(rows[limit]) or last < 1:
        return 0
    return last + 1


class OlderViews:
    """The newest frames judged empty, per light state (day / night IR): the
    older view of the empty scene a standby event is judged by."""

    def __init__(self, per_light: int = 2) -> None:
        self._views = {False: deque(maxlen=per_light), True: deque(maxlen=per_light)}

    def add(self, night: bool, lores_y: np.ndarray) -> None:
        self._views[night].append(lores_y.copy())

    def of(self, night: bool) -> list[np.ndarray]:
        return list(self._views[night])
