"""Real footage as the camera's view: the scene of a scenario with `footage:`.

The camera shows the footage frame of the instant it samples, scaled to each
stream's size (stretched if the aspect ratio differs). The rig samples this
scene at a frame's SensorTimestamp rather than mid-exposure
(`sampled_at_sensor_timestamp`), so the frame a report matches by its
SensorTimestamp is the frame the trap was shown. Before the footage starts
the first frame is shown, after it ends the last one (a paused player);
frames there are unlabelled.
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np

from hw_sim.footage import Footage, FootageFrame, FootagePass
from hw_sim.scenario import Scenario
from trapd.evaluate import read_image

NS = 1_000_000_000
CACHED_IMAGES = 32        # scaled frames kept (two streams of a few footage frames)
DAY = {"ExposureTime": 10_000, "AnalogueGain": 1.0, "DigitalGain": 1.0, "Lux": 400.0,
       "ColourTemperature": 5600}
NIGHT = {"ExposureTime": 33_000, "AnalogueGain": 8.0, "DigitalGain": 1.0, "Lux": 2.3,
         "ColourTemperature": 3000}


class FootageScene:
    sampled_at_sensor_timestamp = True

    def __init__(self, scenario: Scenario, start_ns: int) -> None:
        if scenario.footage is None:
            raise ValueError(f"scenario {scenario.name} has no footage")
        self.scenario = scenario
        self.footage: Footage = scenario.footage
        self.start_ns = start_ns
        self.lamp = None          # set by hw_sim.lamp; footage brings its own lighting
        self._scaled: OrderedDict[tuple[int, tuple[int, int]], np.ndarray] = OrderedDict()

    def seconds(self, t_ns: int) -> float:
        return (t_ns - self.start_ns) / NS

    def frame_index(self, t_ns: int) -> int | None:
        """The footage frame shown at t_ns; None before the footage or after its end."""
        return self.footage.index_at(t_ns - self.start_ns)

    def frame_at(self, t_ns: int) -> FootageFrame | None:
        index = self.frame_index(t_ns)
        return None if index is None else self.footage.frames[index]

    @property
    def passes(self) -> tuple[FootagePass, ...]:
        return self.footage.passes

    def animals_in_view(self, t_ns: int) -> list[FootagePass]:
        index = self.frame_index(t_ns)
        return [p for p in self.passes if index is not None and p.first <= index <= p.last]

    def truth(self, t_ns: int) -> str:
        frame = self.frame_at(t_ns)
        return frame.label if frame and frame.label else "unlabelled"

    def exposure(self, t_ns: int) -> dict:
        """Fixed values (the pixels are the footage's), night ones under `conditions: light: night`."""
        night = self.scenario.conditions_at(self.seconds(t_ns)).light == "night"
        return dict(NIGHT if night else DAY)

    def render_bgr(self, t_ns: int, size: tuple[int, int]) -> np.ndarray:
        index = self.frame_index(t_ns)
        if index is None:
            index = 0 if t_ns < self.start_ns else len(self.footage.frames) - 1
        return self._scaled_frame(index, size).copy()

    def _scaled_frame(self, index: int, size: tuple[int, int]) -> np.ndarray:
        key = (index, tuple(size))
        if key in self._scaled:
            self._scaled.move_to_end(key)
            return self._scaled[key]
        image = read_image(self.footage.frames[index].file)
        shrinking = image.shape[1] > size[0]
        scaled = cv2.resize(image, tuple(size),
                            interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        self._scaled[key] = scaled
        if len(self._scaled) > CACHED_IMAGES:
            self._scaled.popitem(last=False)
        return scaled
