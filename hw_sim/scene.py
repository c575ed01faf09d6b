"""A fixed camera's view of a forest clearing, rendered at any size and time.

What is simulated: a textured ground, vegetation clumps that sway with the
wind (gusty, per-clump phase), the sun going behind clouds (a whole-frame
light change the auto-exposure catches up with), night under an IR lamp
(grey, vignetted, noisier), and animals of a given size and speed crossing.
It knows, for every instant, which animals are in view: the ground truth a
run is scored against.

Geometry is in frame fractions, so lores and main frames of the same instant
show the same scene. Rendering is OpenCV drawing on a cached texture.

`TestChart` is the other scene: flat bands of known colour under a fixed
exposure, for tests that check pixel values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from hw_sim.scenario import AnimalPass, Scenario

NS = 1_000_000_000
# An animal counts as "in the frame" for scoring once this share of its body is visible.
VISIBLE_SHARE_FOR_TRUTH = 0.25
AE_TIME_CONSTANT_S = 0.6      # how fast the simulated auto-exposure follows a light change
NOISE_BANK = 4
NIGHT_AMBIENT = 0.06          # starlight and sky glow, relative to the IR lamp

# Under an 850 nm lamp fur reflects strongly: mammals show light grey against
# darker leaf litter (before the IR conversion's scaling).
IR_FUR_BGR = (200, 200, 200)
SPECIES_LOOK = {
    # body colour (BGR, by day), spot colour or None
    "leopard": ((70, 140, 200), (30, 40, 50)),
    "tiger": ((40, 110, 215), (20, 25, 30)),
    "deer": ((60, 95, 140), None),
    "hare": ((110, 125, 135), None),
    "badger": ((90, 90, 95), None),
    "bird": ((50, 60, 70), None),
    "person": ((120, 90, 70), None),
}


@dataclass(frozen=True)
class Light:
    night: bool
    level: float      # scene radiance relative to full sun (day) or lamp (night)
    wind: float       # 0 calm .. 1 gale
    rain: float       # 0 dry .. 1 downpour


class Scene:
    def __init__(self, scenario: Scenario, start_ns: int) -> None:
        self.scenario = scenario
        self.start_ns = start_ns
        rng = np.random.default_rng(scenario.seed)
        self._clumps = [
            (rng.uniform(0.02, 0.98), rng.uniform(0.45, 1.0), rng.uniform(0.06, 0.16),
             rng.uniform(0, 2 * math.pi), rng.uniform(0.6, 1.4))
            for _ in range(scenario.vegetation_clumps)
        ]
        self._seed = scenario.seed
        # The IR lamp's level at an instant (hw_sim.lamp.LampPin.level_at), or
        # None: no lamp wired, night frames rendered lit as by a lamp always on.
        self.lamp = None

    # -- the scene at an instant --------------------------------------------
    def seconds(self, t_ns: int) -> float:
        return (t_ns - self.start_ns) / NS

    def light(self, t_ns: int) -> Light:
        s = self.seconds(t_ns)
        conditions = self.scenario.conditions_at(s)
        return Light(conditions.light == "night", self.scenario.light_level_at(s), conditions.wind,
                     conditions.rain)

    def exposure_gain(self, t_ns: int) -> float:
        """Brightness after auto-exposure: a sudden light change shows at
        first, then fades as AE adapts (exponentially)."""
        s = self.seconds(t_ns)
        level = self.scenario.light_level_at(s)
        since, before = self.scenario.last_light_step(s)
        adapted = math.exp(-max(0.0, s - since) / AE_TIME_CONSTANT_S)
        target_level = before * adapted + level * (1 - adapted)
        return level / target_level if target_level else 1.0

    def lamp_level(self, t_ns: int) -> float:
        """How much IR lamp light there is: 1 without a wired lamp (always lit)."""
        return 1.0 if self.lamp is None else self.lamp(t_ns)

    def exposure(self, t_ns: int) -> dict:
        light = self.light(t_ns)
        if light.night:
            # The camera's Lux estimate sees the lamp's light on the scene too.
            return {"ExposureTime": 33000, "AnalogueGain": 8.0, "DigitalGain": 1.0,
                    "Lux": round(0.3 + 2.0 * self.lamp_level(t_ns), 2), "ColourTemperature": 3000}
        level = max(light.level, 0.05)
        return {"ExposureTime": int(4000 / level), "AnalogueGain": 1.0 + (1 - level) * 2,
                "DigitalGain": 1.0, "Lux": round(800 * level, 1), "ColourTemperature": 5600}

    def animals_in_view(self, t_ns: int) -> list[AnimalPass]:
        s = self.seconds(t_ns)
        return [a for a in self.scenario.animals if _visible_share(a, s) >= VISIBLE_SHARE_FOR_TRUTH]

    @property
    def passes(self) -> tuple[AnimalPass, ...]:
        """The ground truth a run is scored against: every animal pass."""
        return self.scenario.animals

    def truth(self, t_ns: int) -> str:
        return "animal" if self.animals_in_view(t_ns) else "empty"

    # -- rendering ----------------------------------------------------------
    def render_bgr(self, t_ns: int, size: tuple[int, int]) -> np.ndarray:
        w, h = size
        s = self.seconds(t_ns)
        light = self.light(t_ns)
        frame = _ground_texture(w, h, self._seed).copy()
        self._draw_vegetation(frame, s, light.wind)
        for animal in self.scenario.animals:
            _draw_animal(frame, animal, s, light.night)
        if light.rain:
            _draw_rain(frame, light.rain, t_ns)
        image = frame.astype(np.float32)
        if light.night:
            image = np.repeat(_as_infrared(image), 3, axis=2)
        image *= light.level * self.exposure_gain(t_ns)
        if light.night:
            image *= NIGHT_AMBIENT + (1 - NIGHT_AMBIENT) * self.lamp_level(t_ns)
        noise = _noise_bank(w, h, self._seed)[int(s * 1000) % NOISE_BANK]
        image += noise * (3.0 if light.night else 1.0)
        return np.clip(image, 0, 255).astype(np.uint8)

    def _draw_vegetation(self, frame: np.ndarray, s: float, wind: float) -> None:
        h, w = frame.shape[:2]
        gust = 0.6 + 0.4 * math.sin(2 * math.pi * s / 7.0)
        for i, (x, base_y, height, phase, stiffness) in enumerate(self._clumps):
            sway = wind * gust * 0.02 * math.sin(2 * math.pi * 0.8 * stiffness * s + phase)
            top_x, top_y = (x + sway) * w, (base_y - height) * h
            half = 0.018 * w
            blades = np.array([[x * w - half, base_y * h], [top_x - half * 0.3, top_y],
                               [top_x + half * 0.3, top_y + 0.01 * h], [x * w + half, base_y * h]],
                              np.int32)
            shade = 45 + (i * 37) % 40
            cv2.fillPoly(frame, [blades], (shade * 0.6, shade * 1.5, shade * 0.8), cv2.LINE_AA)


def _visible_share(animal: AnimalPass, s: float) -> float:
    box = animal.box_at(s)
    if box is None:
        return 0.0
    x0, y0, x1, y1 = box
    visible = max(0.0, min(x1, 1.0) - max(x0, 0.0)) * max(0.0, min(y1, 1.0) - max(y0, 0.0))
    return visible / ((x1 - x0) * (y1 - y0))


def _draw_animal(frame: np.ndarray, animal: AnimalPass, s: float, night: bool) -> None:
    box = animal.box_at(s)
    if box is None:
        return
    h, w = frame.shape[:2]
    colour, spots = SPECIES_LOOK.get(animal.species, SPECIES_LOOK["deer"])
    if night:
        colour = IR_FUR_BGR
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    bw, bh = x1 - x0, y1 - y0
    centre = (int((x0 + x1) / 2), int(y0 + bh * 0.45))
    axes = (max(1, int(bw * 0.38)), max(1, int(bh * 0.28)))
    cv2.ellipse(frame, centre, axes, 0, 0, 360, colour, -1, cv2.LINE_AA)
    head_x = x1 - bw * 0.12 if animal.direction > 0 else x0 + bw * 0.12
    cv2.circle(frame, (int(head_x), int(y0 + bh * 0.3)), max(1, int(bh * 0.17)), colour, -1, cv2.LINE_AA)
    stride = math.sin(s * 2 * math.pi * 2.0)
    for leg in (0.3, 0.7):
        lx = x0 + bw * leg
        cv2.line(frame, (int(lx), int(y0 + bh * 0.6)),
                 (int(lx + stride * bw * 0.05), int(y1)), colour, max(1, int(bw * 0.05)), cv2.LINE_AA)
    if spots is not None:
        rng = np.random.default_rng(len(animal.species))  # same spots every frame
        for sx, sy in rng.uniform(-0.8, 0.8, size=(14, 2)):
            spot = (int(centre[0] + sx * axes[0] * 0.8), int(centre[1] + sy * axes[1] * 0.7))
            cv2.circle(frame, spot, max(1, int(bh * 0.03)), spots, -1, cv2.LINE_AA)


def _draw_rain(frame: np.ndarray, rain: float, t_ns: int) -> None:
    """Drops near the lens: short bright streaks, new ones every frame."""
    h, w = frame.shape[:2]
    rng = np.random.default_rng(t_ns % 2**32)
    count = int(rain * 400)
    xs, ys = rng.uniform(0, w, count), rng.uniform(0, h, count)
    length, width = 0.02 * h, max(1, w // 640)
    for x, y in zip(xs, ys):
        cv2.line(frame, (int(x), int(y)), (int(x + length * 0.15), int(y + length)),
                 (200, 200, 200), width, cv2.LINE_AA)


def _as_infrared(image: np.ndarray) -> np.ndarray:
    """IR: no colour, foliage and fur bright, a lamp's hot spot in the middle."""
    grey = image.mean(axis=2, keepdims=True) * 0.7 + 30
    h, w = image.shape[:2]
    return grey * _vignette(w, h)[..., None]


@lru_cache(maxsize=4)
def _vignette(w: int, h: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xs / w - 0.5) ** 2 + (ys / h - 0.5) ** 2) * 2.2
    return np.clip(1.1 - r2, 0.35, 1.0)


@lru_cache(maxsize=4)
def _ground_texture(w: int, h: int, seed: int) -> np.ndarray:
    """Soil, leaf litter and a darker tree line: smooth noise at a few scales."""
    rng = np.random.default_rng(seed)
    texture = np.zeros((h, w), np.float32)
    for cells, weight in ((6, 50), (24, 25), (96, 12)):
        small = rng.normal(0, 1, size=(cells * 3 // 4 + 1, cells + 1)).astype(np.float32)
        texture += weight * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    rows = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    brightness = 95 + texture - 45 * (rows < 0.35)
    bgr = np.stack([brightness * 0.75, brightness * 0.95, brightness * 1.05], axis=2)
    return np.clip(bgr, 0, 255).astype(np.uint8)


@lru_cache(maxsize=4)
def _noise_bank(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    return rng.normal(0, 1.5, size=(NOISE_BANK, h, w, 1)).astype(np.float32)


class TestChart:
    """A still test chart for checking pixel values: equal vertical bands of flat colour,
    by default black (0, 0, 0), grey (128, 128, 128) and white (255, 255, 255) from left to
    right, under a fixed exposure (so the camera applies no gain to it). `bands` are BGR."""

    __test__ = False        # not a pytest class, whatever its name
    BLACK_GREY_WHITE = ((0, 0, 0), (128, 128, 128), (255, 255, 255))
    EXPOSURE = {"ExposureTime": 10_000, "AnalogueGain": 1.0, "DigitalGain": 1.0,
                "Lux": 400.0, "ColourTemperature": 5000}

    def __init__(self, bands: tuple[tuple[int, int, int], ...] = BLACK_GREY_WHITE) -> None:
        self.bands = tuple(tuple(int(c) for c in band) for band in bands)

    def band_centres(self, width: int) -> list[int]:
        """The x of each band's middle column in a frame `width` pixels wide."""
        n = len(self.bands)
        return [(i * width // n + (i + 1) * width // n) // 2 for i in range(n)]

    def render_bgr(self, t_ns: int, size: tuple[int, int]) -> np.ndarray:
        w, h = size
        image = np.empty((h, w, 3), np.uint8)
        n = len(self.bands)
        for i, colour in enumerate(self.bands):
            image[:, i * w // n:(i + 1) * w // n] = colour
        return image

    def exposure(self, t_ns: int) -> dict:
        return dict(self.EXPOSURE)
