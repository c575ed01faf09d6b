"""Writes the JPEG folders the lane's replay cameras show (run.sh calls it every run).

    python make_frames.py FRAMES_DIR SHARED_DIR

- FRAMES_DIR/target/0.jpg: a test chart, 640x480: left third black (0,0,0), middle
  third mid-grey (128,128,128), right third white (255,255,255); JPEG quality 100, no
  chroma subsampling, so the decoded values are exact.
- FRAMES_DIR/footage/0.jpg, 1.jpg, ...: a real camera-trap burst, resized to 640x480:
  ../shared/data/footage/camtrap-stills.csv sequence FOOTAGE_SEQUENCE (three empty
  frames of the scene, then three frames with the animal; day). The images are used here
  only, never copied into the repo (their source asks not to redistribute them).
  Listed with source and label in FRAMES_DIR/footage.csv (not inside the folder: the
  camera reads every file in it as a JPEG).

The virtual camera shows each image for 4 frames, then the next, and loops.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (640, 480)
CHART_LEVELS = (0, 128, 255)  # left, middle, right third
FOOTAGE_MANIFEST = "data/footage/camtrap-stills.csv"
FOOTAGE_SEQUENCE = "peruS90_SDZG2_b000068"


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def write_target(folder: Path) -> None:
    width, height = SIZE
    chart = np.zeros((height, width, 3), np.uint8)
    edges = [round(i * width / 3) for i in range(4)]
    for level, left, right in zip(CHART_LEVELS, edges, edges[1:]):
        chart[:, left:right] = level
    Image.fromarray(chart).save(fresh(folder) / "0.jpg", quality=100, subsampling=0)


def write_footage(folder: Path, shared: Path) -> None:
    manifest = shared / FOOTAGE_MANIFEST
    with manifest.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["sequence_id"] == FOOTAGE_SEQUENCE]
    if not rows:
        sys.exit(f"make_frames: sequence {FOOTAGE_SEQUENCE} not in {manifest}")
    rows.sort(key=lambda r: int(r["frame_index"]))
    fresh(folder)
    with (folder.parent / "footage.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image", "source", "label", "condition"])
        for i, row in enumerate(rows):
            source = manifest.parent / row["file"]
            with Image.open(source) as im:
                im.convert("RGB").resize(SIZE, Image.LANCZOS).save(folder / f"{i}.jpg", quality=92)
            out.writerow([f"{i}.jpg", f"../shared/data/footage/{row['file']}", row["label"],
                          row["condition"]])


def main() -> None:
    frames, shared = Path(sys.argv[1]), Path(sys.argv[2])
    write_target(frames / "target")
    write_footage(frames / "footage", shared)


if __name__ == "__main__":
    main()
