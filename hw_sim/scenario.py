"""Scenario files: what happens in front of the simulated trap, and when.

A scenario is YAML (see `hw_sim/scenarios/default.yaml`): the light and wind
over time, sun-and-cloud light steps, the animals that cross (their passes
are the ground truth a run is scored against), and PIR behaviour including
false triggers from wind-warmed vegetation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

SCENARIO_DIR = Path(__file__).parent / "scenarios"
# Body length over body height, which sets an animal's box from its height.
BODY_LENGTH_PER_HEIGHT = {"leopard": 1.65, "tiger": 1.7, "deer": 1.2, "hare": 1.1,
                          "badger": 1.35, "bird": 1.0, "person": 0.35}


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True)
class Conditions:
    from_s: float
    light: str = "day"        # day | night (IR lamp on)
    wind: float = 0.2         # 0 calm .. 1 gale
    rain: float = 0.0         # 0 dry .. 1 downpour (or snow): streaks in every frame


@dataclass(frozen=True)
class LightStep:
    at_s: float
    level: float              # relative radiance after the step (1 = full sun)


@dataclass(frozen=True)
class AnimalPass:
    species: str
    enter_s: float            # its nose reaches the frame edge
    cross_s: float            # time to walk across the frame
    height: float             # body height as a fraction of the frame height
    y: float = 0.65           # where its feet are, fraction of the frame height
    direction: int = 1        # +1 left to right, -1 right to left
    warm: bool = True         # seen by the PIR
    in_pir_range: bool = True

    def box_at(self, s: float) -> tuple[float, float, float, float] | None:
        """(x0, y0, x1, y1) in frame fractions, or None before/after the pass."""
        length = self.height * BODY_LENGTH_PER_HEIGHT.get(self.species, 1.2)
        progress = (s - self.enter_s) / self.cross_s
        if not 0.0 <= progress <= 1.0:
            return None
        lead = -length + progress * (1.0 + 2 * length)      # from fully left to fully right
        x0 = lead if self.direction > 0 else 1.0 - lead - length
        return (x0, self.y - self.height, x0 + length, self.y)

    @property
    def leave_s(self) -> float:
        return self.enter_s + self.cross_s


@dataclass(frozen=True)
class FalseTrigger:
    at_s: float
    duration_s: float
    cause: str = "wind-warmed vegetation"


@dataclass(frozen=True)
class PirSpec:
    delay_s: float = 0.25     # from a warm body entering the zone to the output going high
    hold_s: float = 2.0       # output stays high this long after the body leaves
    zone: tuple[float, float] = (0.1, 0.9)   # horizontal part of the frame the lens covers
    false_triggers: tuple[FalseTrigger, ...] = ()


@dataclass(frozen=True)
class ClockJump:
    at_s: float               # scenario time of the step
    by_s: float               # how far the wall clock steps (negative = back)
    synchronises: bool = False  # the step is NTP's first sync: the clock is synchronised after it


@dataclass(frozen=True)
class ClockSpec:
    """The trap's wall clock: a Pi without RTC or network is not synchronised."""

    synchronised: bool = True
    jumps: tuple[ClockJump, ...] = ()


@dataclass(frozen=True)
class SensorSpec:
    """What the trap's temperature sensors read (written to the sysfs-style files)."""

    cpu_temperature_c: float = 47.5
    ambient_temperature_c: float | None = 12.5  # None: no ambient probe fitted


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    seed: int
    start_time: datetime
    conditions: tuple[Conditions, ...]
    light_steps: tuple[LightStep, ...] = ()
    animals: tuple[AnimalPass, ...] = ()
    pir: PirSpec = field(default_factory=PirSpec)
    vegetation_clumps: int = 12
    description: str = ""
    clock: ClockSpec = field(default_factory=ClockSpec)
    sensors: SensorSpec = field(default_factory=SensorSpec)

    def conditions_at(self, s: float) -> Conditions:
        current = self.conditions[0]
        for c in self.conditions:
            if c.from_s <= s:
                current = c
        return current

    def light_level_at(self, s: float) -> float:
        return self.last_light_step(s, after=True)[1]

    def last_light_step(self, s: float, after: bool = False) -> tuple[float, float]:
        """(time of the last step at or before s, level before it, or after it with after=True)."""
        when, before, level = -1e9, 1.0, 1.0
        for step in self.light_steps:
            if step.at_s <= s:
                when, before, level = step.at_s, level, step.level
        return when, (level if after else before)


def load_scenario(name_or_path: str | Path) -> Scenario:
    path = Path(name_or_path)
    if not path.exists() and (SCENARIO_DIR / f"{name_or_path}.yaml").exists():
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    try:
        return _scenario_from(raw, default_name=path.stem)
    except (TypeError, KeyError, ValueError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc


def _scenario_from(raw: dict, default_name: str) -> Scenario:
    pir = dict(raw.get("pir") or {})
    false_triggers = tuple(FalseTrigger(**f) for f in pir.pop("false_triggers", []) or [])
    if "zone" in pir:
        pir["zone"] = tuple(pir["zone"])
    animals = tuple(
        AnimalPass(**{**a, "direction": -1 if a.get("direction") == "left" else 1})
        for a in raw.get("animals") or [])
    start = raw.get("start_time", "2026-06-01T12:00:00+00:00")
    return Scenario(
        name=raw.get("name", default_name),
        description=raw.get("description", ""),
        duration_s=float(raw["duration_s"]),
        seed=int(raw.get("seed", 1)),
        start_time=start if isinstance(start, datetime) else datetime.fromisoformat(str(start)),
        conditions=tuple(Conditions(**c) for c in raw.get("conditions") or [{"from_s": 0}]),
        light_steps=tuple(LightStep(**l) for l in raw.get("light_steps") or []),
        animals=animals,
        pir=PirSpec(**pir, false_triggers=false_triggers),
        vegetation_clumps=int(raw.get("vegetation_clumps", 12)),
        clock=_clock_from(raw.get("clock") or {}),
        sensors=SensorSpec(**(raw.get("sensors") or {})),
    )


def _clock_from(raw: dict) -> ClockSpec:
    jumps = tuple(ClockJump(**j) for j in raw.get("jumps") or [])
    return ClockSpec(synchronised=bool(raw.get("synchronised", True)),
                     jumps=tuple(sorted(jumps, key=lambda j: j.at_s)))
