"""Filter stage: is there something in this frame that was not in the background?

Pure numpy/OpenCV on the lores Y plane, no I/O. Steps, in order:
blur; compensate a global brightness change (exposure, cloud, IR lamp) by
matching the background's brightness histogram to the frame's, which also
follows the non-linear part (highlights clipping at 255);
absolute difference in a signed type (the picamera2 example's uint8
subtraction wraps around); threshold; despeckle; largest changed blob.
A frame where most of the picture changed but its structure still matches
the background is a light change, not an animal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from trapd.config import FilterConfig

# Below this normalised correlation with the background, a frame that changed
# almost everywhere is taken to show something new (an animal at the lens),
# not the same scene under other light.
LIGHT_CHANGE_MIN_CORRELATION = 0.8
DESPECKLE_KERNEL = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class MotionResult:
    score: float                 # largest changed blob, as a fraction of the frame
    keep: bool
    bbox: tuple[int, int, int, int] | None   # x, y, w, h of that blob in lores pixels
    changed_fraction: float
    light_change: bool


class MotionFilter:
    def __init__(self, config: FilterConfig) -> None:
        self.config = config
        self._background: np.ndarray | None = None
        self._background_cdf: np.ndarray | None = None

    @property
    def has_background(self) -> bool:
        return self._background is not None

    def set_background(self, lores_frames: Sequence[np.ndarray]) -> None:
        """Background = per-pixel median of the given frames (robust to one
        frame with a bird or a flash in it)."""
        if not lores_frames:
            self._background = None
            return
        stack = np.stack([self._smooth(f) for f in lores_frames])
        self._background = np.median(stack, axis=0).astype(np.uint8)
        self._background_cdf = _cdf(self._background)

    def score(self, lores_y: np.ndarray) -> MotionResult:
        smoothed = self._smooth(lores_y)
        if self._background is None:
            return MotionResult(0.0, not self.config.enabled, None, 0.0, False)
        background = _relit(self._background, self._background_cdf, _cdf(smoothed))
        current = smoothed.astype(np.float32)
        changed = (np.abs(current - background) > self.config.pixel_threshold).astype(np.uint8)
        changed_fraction = float(changed.mean())
        if changed_fraction > self.config.light_change_fraction and \
                _correlation(current, background) >= LIGHT_CHANGE_MIN_CORRELATION:
            return MotionResult(0.0, not self.config.enabled, None, changed_fraction, True)
        changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, DESPECKLE_KERNEL)
        score, bbox = _largest_blob(changed)
        keep = score >= self.config.min_blob_fraction or not self.config.enabled
        return MotionResult(score, keep, bbox, changed_fraction, False)

    def _smooth(self, lores_y: np.ndarray) -> np.ndarray:
        k = self.config.blur_px
        return cv2.GaussianBlur(lores_y, (k, k), 0)


LEVELS = np.arange(256, dtype=np.float32)


def _cdf(image: np.ndarray) -> np.ndarray:
    return np.cumsum(np.bincount(image.ravel(), minlength=256)) / image.size


def _relit(background: np.ndarray, background_cdf: np.ndarray, current_cdf: np.ndarray) -> np.ndarray:
    """The background as it would look under the current frame's light: each
    level mapped to the level at the same rank in the current frame
    (histogram matching). An animal covers too little of the frame to move
    the ranks much."""
    lookup = np.interp(background_cdf, current_cdf, LEVELS).astype(np.float32)
    return lookup[background]


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denominator if denominator else 1.0


def _largest_blob(mask: np.ndarray) -> tuple[float, tuple[int, int, int, int] | None]:
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return 0.0, None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[largest])
    return area / mask.size, (x, y, w, h)
