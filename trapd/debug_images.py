"""Pictures of the filter's decisions, so an engineer can look instead of read.

For each frame, a PNG: the lores frame with the kept blob's box (green if
kept, red if dropped) beside the change mask over the frame; and per
sequence a contact sheet of all its frames.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from trapd.motion import MotionResult

KEPT, DROPPED, MASK = (60, 200, 60), (40, 40, 220), (0, 200, 255)
SHEET_COLUMNS = 4


class DebugImages:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._tiles: list[np.ndarray] = []

    def frame(self, sequence_id: str, name: str, lores_y: np.ndarray, result: MotionResult,
              label: str | None = None) -> Path:
        tile = _tile(lores_y, result, label)
        self._tiles.append(tile)
        path = self.directory / _safe(sequence_id) / f"{_safe(name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), tile)
        return path

    def end_sequence(self, sequence_id: str) -> Path | None:
        tiles, self._tiles = self._tiles, []
        if not tiles:
            return None
        blank = np.zeros_like(tiles[0])
        tiles += [blank] * (-len(tiles) % SHEET_COLUMNS)
        rows = [np.hstack(tiles[i:i + SHEET_COLUMNS]) for i in range(0, len(tiles), SHEET_COLUMNS)]
        path = self.directory / f"{_safe(sequence_id)}_sheet.png"
        cv2.imwrite(str(path), np.vstack(rows))
        return path


def _tile(lores_y: np.ndarray, result: MotionResult, label: str | None) -> np.ndarray:
    frame = cv2.cvtColor(lores_y, cv2.COLOR_GRAY2BGR)
    overlay = frame.copy()
    if result.changed is not None:
        overlay[result.changed.astype(bool)] = MASK
    colour = KEPT if result.keep else DROPPED
    if result.bbox:
        x, y, w, h = result.bbox
        cv2.rectangle(frame, (x, y), (x + w, y + h), colour, 2)
    text = f"{'KEEP' if result.keep else 'drop'} {result.score * 100:.2f}%"
    text += " light" if result.light_change else ""
    text += f" [{label}]" if label else ""
    cv2.putText(frame, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return np.hstack([frame, overlay])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)
