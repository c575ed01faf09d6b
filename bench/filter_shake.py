"""Camera shake on real photos: does the filter call a shaken empty view motion?

    .venv/bin/python bench/filter_shake.py [MANIFEST]

Each photo of the dev set (default ../shared/data/camtrap/manifest.csv), at the
lores size, is its own background (six copies with sensor grain); the frame
scored is the same photo displaced by a few pixels (edges replicated) with new
grain: the trap's post knocked by the wind, nothing new in the view. Every frame
kept is a false trigger. Baseline in the same run: the filter without its shift
test (step 7 in docs/filter.md).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from trapd.config import load_config
from trapd.evaluate import load_lores_y
from trapd.motion import MotionFilter

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1].parent / "shared/data/camtrap/manifest.csv"
SHAKES = ((1, 2), (2, 3), (3, -2), (-4, 1))   # (dy, dx) in lores pixels


def with_grain(frame: np.ndarray, rng) -> np.ndarray:
    return np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)


def kept_after_shakes(photos: list[np.ndarray], config, shift_test: bool) -> int:
    kept = 0
    for photo in photos:
        rng = np.random.default_rng(0)
        background = [with_grain(photo, rng) for _ in range(6)]
        for dy, dx in SHAKES:
            motion = MotionFilter(config.filter, config.hardware.camera)
            if not shift_test:
                motion._background_shift = lambda *args: None
            motion.set_background(background)
            shaken = cv2.warpAffine(photo, np.float32([[1, 0, dx], [0, 1, dy]]), photo.shape[::-1],
                                    borderMode=cv2.BORDER_REPLICATE)
            kept += motion.score(with_grain(shaken, rng)).keep
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", default=str(DEFAULT_MANIFEST))
    args = parser.parse_args()
    config = load_config()
    base = Path(args.manifest).parent
    photos = [load_lores_y(base / row["file"], config.hardware.camera.lores_size)
              for row in csv.DictReader(open(args.manifest, newline=""))]
    frames = len(photos) * len(SHAKES)
    print(f"{len(photos)} photos x {len(SHAKES)} shakes of 1-4 px, nothing new in view")
    print("| filter                           | shaken frames kept (false triggers) |")
    print("|----------------------------------|-------------------------------------|")
    for name, shift_test in (("baseline: without the shift test", False), ("trapd MotionFilter", True)):
        print(f"| {name:32s} | {kept_after_shakes(photos, config, shift_test):>14d}/{frames:<20d} |")


if __name__ == "__main__":
    main()
