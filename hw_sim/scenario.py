"""Scenario files: what happens in front of the simulated trap, and when.

A scenario is YAML (format: hw_sim/scenarios/README.md; example:
hw_sim/scenarios/default.yaml): the light and wind over time, sun-and-cloud
light steps, the animals that cross (their passes are the ground truth a run
is scored against), and PIR behaviour including false triggers from
wind-warmed vegetation. With `footage:` the scene is real footage instead,
its labels the ground truth (hw_sim/footage.py).

Files are checked like config.yaml, by trapd/schema.py against the
dataclasses below: every mistake is reported at once with its line, key path,
the value found and what would be valid (ScenarioError), never a traceback.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from hw_sim.footage import Footage, FootageProblem, FootageSpec, load_footage
from trapd.errors import TrapdError
from trapd.schema import NO_VALUE, Problem, Rule, Section, choice, file_problem, flag, free_text, \
    integer, is_number, items, number, read_document, read_text, section, setting

SCENARIO_DIR = Path(__file__).parent / "scenarios"
# Body length over body height, which sets an animal's box from its height.
BODY_LENGTH_PER_HEIGHT = {"leopard": 1.65, "tiger": 1.7, "deer": 1.2, "hare": 1.1,
                          "badger": 1.35, "bird": 1.0, "person": 0.35}
# Longest scenario: a week of virtual time.
MAX_SCENARIO_S = 7 * 86400
# A wall-clock step of up to ten years either way.
MAX_CLOCK_STEP_S = 10 * 365 * 86400
POWER_MODES = ("streaming", "standby")


class ScenarioError(TrapdError, ValueError):
    """A scenario file cannot be used; `problems` lists every mistake, each
    with the file, line and key path."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def _seconds(low: float = 0, high: float = MAX_SCENARIO_S) -> Rule:
    return number(low, high, "seconds")


_FRACTION = number(0, 1)


def _is_zone(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value)
            and 0 <= value[0] < value[1] <= 1)


_ZONE = Rule(expected="[left, right]: two fractions of the frame width, 0 <= left < right <= 1",
             is_valid=_is_zone, convert=lambda v: (float(v[0]), float(v[1])))
_DIRECTION = choice(("right", "left"), convert=lambda v: -1 if v == "left" else 1)


@dataclass(frozen=True)
class Conditions(Section):
    from_s: float = setting(_seconds())
    light: str = setting(choice(("day", "night")), "day")   # night: IR lamp on
    wind: float = setting(_FRACTION, 0.2)      # 0 calm .. 1 gale
    rain: float = setting(_FRACTION, 0.0)      # 0 dry .. 1 downpour (or snow): streaks in every frame


@dataclass(frozen=True)
class LightStep(Section):
    at_s: float = setting(_seconds())
    level: float = setting(number(0, 2, "(relative radiance, 1 = full sun)"))  # after the step


@dataclass(frozen=True)
class AnimalPass(Section):
    species: str = setting(choice(tuple(BODY_LENGTH_PER_HEIGHT)))
    enter_s: float = setting(_seconds())      # its nose reaches the frame edge
    cross_s: float = setting(number(0.1, 600, "seconds"))   # time to walk across the frame
    height: float = setting(number(0.01, 1, "(fraction of the frame height)"))  # body height
    y: float = setting(_FRACTION, 0.65)       # where its feet are, fraction of the frame height
    direction: int = setting(_DIRECTION, 1)   # +1 left to right (right), -1 right to left (left)
    warm: bool = setting(flag(), True)        # seen by the PIR
    in_pir_range: bool = setting(flag(), True)

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
class FalseTrigger(Section):
    at_s: float = setting(_seconds())
    duration_s: float = setting(number(0.01, 3600, "seconds"))
    cause: str = setting(free_text(200), "wind-warmed vegetation")


@dataclass(frozen=True)
class PirSpec(Section):
    # from a warm body entering the zone to the output going high
    delay_s: float = setting(number(0, 10, "seconds"), 0.25)
    # output stays high this long after the body leaves
    hold_s: float = setting(number(0, 60, "seconds"), 2.0)
    # horizontal part of the frame the lens covers
    zone: tuple[float, float] = setting(_ZONE, (0.1, 0.9))
    false_triggers: tuple[FalseTrigger, ...] = items(FalseTrigger)


@dataclass(frozen=True)
class ClockJump(Section):
    at_s: float = setting(_seconds())          # scenario time of the step
    # how far the wall clock steps (negative = back)
    by_s: float = setting(number(-MAX_CLOCK_STEP_S, MAX_CLOCK_STEP_S, "seconds"))
    # the step is NTP's first sync: the clock is synchronised after it
    synchronises: bool = setting(flag(), False)


@dataclass(frozen=True)
class ClockSpec(Section):
    """The trap's wall clock: a Pi without RTC or network is not synchronised."""

    synchronised: bool = setting(flag(), True)
    jumps: tuple[ClockJump, ...] = items(ClockJump)


@dataclass(frozen=True)
class SensorSpec(Section):
    """What the trap's temperature sensors read (written to the sysfs-style files)."""

    cpu_temperature_c: float = setting(number(-40, 125, "°C"), 47.5)
    # None: no ambient probe fitted
    ambient_temperature_c: float | None = setting(number(-60, 70, "°C", nullable=True), 12.5)


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
    footage: Footage | None = None      # real frames instead of the synthetic scene
    power_mode: str | None = None       # overrides config power.mode; None: the config's

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



def _as_start_time(value: Any) -> datetime | None:
    """An aware datetime from 1970 to 2099 for `start_time`, or None."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        return None
    return value if 1970 <= value.year <= 2099 else None


_START_TIME = Rule(
    expected="a date and time with its UTC offset, from 1970 to 2099, in quotes, "
             "e.g. '2026-06-01T12:00:00+10:00'",
    is_valid=lambda v: _as_start_time(v) is not None,
    convert=_as_start_time,
)


@dataclass(frozen=True)
class ScenarioFile(Section):
    """A scenario file as written (hw_sim/scenarios/README.md); `scenario()` makes the Scenario."""

    # None: as long as the footage (required without footage)
    duration_s: float | None = setting(number(0.1, MAX_SCENARIO_S, "seconds"), None)
    name: str | None = setting(free_text(64, min_chars=1), None)   # None: the file's name
    description: str = setting(free_text(2000, allow_newlines=True), "")
    seed: int = setting(integer(0, 2**32 - 1), 1)
    start_time: datetime = setting(_START_TIME, _as_start_time("2026-06-01T12:00:00+00:00"))
    vegetation_clumps: int = setting(integer(0, 200, "clumps"), 12)
    conditions: tuple[Conditions, ...] = items(Conditions, (Conditions(0),), min_items=1)
    light_steps: tuple[LightStep, ...] = items(LightStep)
    animals: tuple[AnimalPass, ...] = items(AnimalPass)
    pir: PirSpec = section(PirSpec)
    clock: ClockSpec = section(ClockSpec)
    sensors: SensorSpec = section(SensorSpec)
    footage: FootageSpec = section(FootageSpec)
    power_mode: str | None = setting(choice(POWER_MODES), None)

    def validate(self) -> list[Problem]:
        if self.footage.path is None:
            if self.duration_s is None:
                return [Problem("duration_s", None, NO_VALUE, "missing; expected a number from "
                                "0.1 to 604800 seconds (it may be left out with footage:)")]
            return []
        if self.animals:
            return [Problem("animals", None, NO_VALUE, "cannot be used with footage: the "
                            "footage's labels are the ground truth; remove animals: or footage:")]
        return []

    def scenario(self, default_name: str, footage: Footage | None = None) -> Scenario:
        clock = replace(self.clock, jumps=tuple(sorted(self.clock.jumps, key=lambda j: j.at_s)))
        duration_s = self.duration_s
        if footage is not None:      # the run ends when the footage does
            duration_s = min(duration_s or footage.duration_s, footage.duration_s)
        return Scenario(
            name=self.name or default_name, description=self.description,
            duration_s=duration_s, seed=self.seed, start_time=self.start_time,
            conditions=self.conditions, light_steps=self.light_steps, animals=self.animals,
            pir=self.pir, vegetation_clumps=self.vegetation_clumps, clock=clock,
            sensors=self.sensors, footage=footage, power_mode=self.power_mode)


def scenario_names() -> list[str]:
    """The scenarios shipped in hw_sim/scenarios, by name."""
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.yaml"))


def scenario_path(name_or_path: str | Path) -> Path:
    """The file for a scenario name or path; ScenarioError listing the shipped
    names when there is none."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SCENARIO_DIR / f"{name_or_path}.yaml"
    if "/" not in str(name_or_path) and shipped.is_file():
        return shipped
    names = scenario_names()
    if path.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        message = f"no such scenario file; the shipped scenarios are {', '.join(names)}"
    else:
        close = difflib.get_close_matches(str(name_or_path), names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        message = f"no scenario of that name in {SCENARIO_DIR}; {hint}available: {', '.join(names)}"
    raise ScenarioError(file_problem(message, str(name_or_path)))


def parse_scenario(text: str, source: str = "scenario.yaml", default_name: str = "scenario",
                   base_dir: str | Path | None = None) -> Scenario:
    """A scenario from YAML text; ScenarioError listing every problem, with lines.
    Footage paths are relative to `base_dir` (default: the folder of `source`)."""
    document = read_document(ScenarioFile, text, source, ScenarioError)
    written: ScenarioFile = document.value
    footage = None
    if written.footage.path is not None:
        base = Path(base_dir) if base_dir is not None else Path(source).parent
        try:
            footage = load_footage(written.footage, base)
        except FootageProblem as exc:
            key = f"footage.{exc.key}"
            line = document.key_lines.get(key, document.key_lines.get("footage"))
            raise ScenarioError([Problem(key, line, NO_VALUE, str(exc), source)]) from None
    return written.scenario(default_name, footage)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (`default`) or a scenario file by path."""
    path = scenario_path(name_or_path)
    source = str(path)
    return parse_scenario(read_text(path, source, ScenarioError), source, path.stem)


