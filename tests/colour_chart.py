"""Reading a stored photo of the black / grey / white test chart (hw_sim's
TestChart, and the same chart replayed by the real-camera lane's virtual camera)."""

from __future__ import annotations

import numpy as np
import simplejpeg

BANDS = ("black", "grey", "white")


def chart_levels(jpeg: bytes) -> dict[str, np.ndarray]:
    """Median RGB of the middle of each band (left to right: black, grey, white)."""
    rgb = simplejpeg.decode_jpeg(jpeg, colorspace="RGB")
    h, w = rgb.shape[:2]
    levels = {}
    for i, name in enumerate(BANDS):
        x0, x1 = i * w // 3, (i + 1) * w // 3
        middle = rgb[h // 4: 3 * h // 4, x0 + (x1 - x0) // 4: x1 - (x1 - x0) // 4]
        levels[name] = np.median(middle.reshape(-1, 3), axis=0)
    return levels


def full_range_problems(levels: dict[str, np.ndarray], grey: int = 128) -> list[str]:
    """What a technician would see wrong: grey blacks, dull whites, a tinted grey."""
    problems = []
    if levels["black"].max() > 5:
        problems.append(f"black comes out as {levels['black'].tolist()} (want <= 5)")
    if levels["white"].min() < 250:
        problems.append(f"white comes out as {levels['white'].tolist()} (want >= 250)")
    if np.abs(levels["grey"] - grey).max() > 3:
        problems.append(f"grey comes out as {levels['grey'].tolist()} (want {grey} +/- 3)")
    return problems
