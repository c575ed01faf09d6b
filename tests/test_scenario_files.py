"""Scenario files as someone writing one meets them: every mistake is a
ScenarioError naming the file, line and key, like config.yaml's, never a
traceback; the shipped files load; the README documents every key."""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hw_sim.scenario import (
    SCENARIO_DIR,
    AnimalPass,
    ClockJump,
    ClockSpec,
    Conditions,
    FalseTrigger,
    LightStep,
    PirSpec,
    Scenario,
    ScenarioError,
    ScenarioFile,
    SensorSpec,
    load_scenario,
    parse_scenario,
    scenario_names,
)
from trapd.cli import main
from trapd.schema import schema_fields

MINIMAL = "duration_s: 10\n"
HARE = "animals:\n  - {species: hare, enter_s: 1, cross_s: 2, height: 0.1}\n"


def problems_in(text: str, source: str = "s.yaml") -> list:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(text, source)
    return raised.value.problems


# The malformed files of issue 13: each crashed with a traceback (or ran absurdly)
# before scenario files were checked. (file bytes, key path, line, words in the message)
MALFORMED = {
    "huge-number-as-text": (b"duration_s: 1e400\n", "duration_s", 1, "1.0e+400"),
    "infinite": (b"duration_s: .inf\n", "duration_s", 1, "0.1 to 604800 seconds"),
    "not-a-number": (b"duration_s: .nan\n", "duration_s", 1, "0.1 to 604800 seconds"),
    "zero-crossing-time": (MINIMAL.encode() + b"animals:\n  - {species: hare, enter_s: 1, "
                           b"cross_s: 0, height: 0.1}\n", "animals[1].cross_s", 3, "0.1 to 600"),
    "top-level-list": (b"- duration_s: 10\n", "", 1, "'key: value' lines, not a list"),
    "not-utf8": (MINIMAL.encode() + b"description: caf\xe9\n", "", 2, "not UTF-8"),
    "clock-step-as-text": (MINIMAL.encode() + b"clock:\n  jumps:\n    - {at_s: 1, by_s: 1e30}\n",
                           "clock.jumps[1].by_s", 4, "1.0e+30"),
    "missing-duration": (b"seed: 3\n", "duration_s", None, "missing"),
    "missing-height": (MINIMAL.encode() + b"animals:\n  - {species: hare, enter_s: 1, cross_s: 2}\n",
                       "animals[1].height", 3, "missing"),
    "typo-in-a-key": (MINIMAL.encode() + b"pir:\n  hold: 2\n", "pir.hold", 3, "did you mean 'hold_s'"),
    "unknown-species": (MINIMAL.encode() + b"animals:\n  - {species: leapord, enter_s: 1, "
                        b"cross_s: 2, height: 0.2}\n", "animals[1].species", 3, "leopard"),
    "naive-start-time": (MINIMAL.encode() + b"start_time: '2026-06-01T12:00:00'\n", "start_time", 2,
                         "UTC offset"),
    "zone-backwards": (MINIMAL.encode() + b"pir:\n  zone: [0.9, 0.1]\n", "pir.zone", 3, "left < right"),
    "python-tag": (b"duration_s: !!python/object/apply:os.getcwd []\n", "duration_s", 1, "tag"),
    "empty": (b"# nothing\n", "", None, "no settings"),
    "yaml-syntax": (b"duration_s: [10\nseed: 2\n", "", 2, "YAML syntax error"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_scenario_is_one_problem_naming_file_line_and_key(name, tmp_path):
    data, path, line, words = MALFORMED[name]
    file = tmp_path / f"{name}.yaml"
    file.write_bytes(data)

    with pytest.raises(ScenarioError) as raised:
        load_scenario(file)

    [problem] = raised.value.problems
    assert (problem.path, problem.line) == (path, line)
    assert words in str(problem)
    assert str(problem).startswith(f"{file}:{line}:" if line else f"{file}:")


@pytest.mark.parametrize("name", ["zero-crossing-time", "not-utf8", "top-level-list", "missing-height"])
def test_trapd_sim_on_a_malformed_scenario_says_so_in_one_line(name, tmp_path, capsys):
    data, path, line, _ = MALFORMED[name]
    file = tmp_path / f"{name}.yaml"
    file.write_bytes(data)

    assert main(["sim", str(file), "--storage", str(tmp_path / "storage")]) == 1

    captured = capsys.readouterr()
    [error] = captured.err.splitlines()
    assert error.startswith(f"trapd: {file}:{line}: {path}")
    assert "Traceback" not in captured.err and "scenario" not in captured.out
    assert not (tmp_path / "storage").exists()          # nothing ran


def test_every_mistake_in_a_scenario_is_listed_at_once():
    text = "duration_s: -5\nseed: x\nanimals:\n  - {species: cat, enter_s: 1, cross_s: 2, height: 3}\n"

    problems = problems_in(text)

    assert [(p.path, p.line) for p in problems] == [
        ("duration_s", 1), ("seed", 2), ("animals[1].species", 4), ("animals[1].height", 4)]


def test_an_unknown_scenario_name_lists_the_shipped_ones(capsys):
    assert main(["sim", "defualt"]) == 1

    [error] = capsys.readouterr().err.splitlines()
    assert "did you mean 'default'?" in error
    assert all(name in error for name in scenario_names())


def test_a_missing_scenario_file_is_named():
    with pytest.raises(ScenarioError, match=r"^/nonexistent/x.yaml: no such scenario file"):
        load_scenario("/nonexistent/x.yaml")


def test_every_shipped_scenario_loads_as_written():
    names = scenario_names()
    assert "default" in names and len(names) >= 8
    for name in names:
        scenario = load_scenario(name)
        assert isinstance(scenario, Scenario) and scenario.name == name
    jumps = load_scenario("unsynced-clock").clock.jumps
    assert [(j.at_s, j.by_s) for j in jumps] == [(30.0, -86400.0)]
    default = load_scenario("default")
    assert default.animals[1] == AnimalPass("hare", 40, 3, 0.12, 0.88, -1)
    assert default.pir.false_triggers[1].cause == "wind-warmed vegetation as the sun goes in"


def test_defaults_fill_what_a_file_leaves_out():
    scenario = parse_scenario(MINIMAL + HARE, default_name="tiny")

    assert scenario.name == "tiny" and scenario.seed == 1
    assert scenario.conditions == (Conditions(0),)
    assert scenario.animals[0].direction == 1 and scenario.animals[0].y == 0.65
    assert scenario.pir == PirSpec() and scenario.clock == ClockSpec()
    assert scenario.sensors == SensorSpec()
    assert scenario.start_time.utcoffset() is not None


def test_clock_jumps_are_taken_in_time_order():
    text = MINIMAL + "clock:\n  jumps:\n    - {at_s: 8, by_s: 5}\n    - {at_s: 2, by_s: -5}\n"

    assert [j.at_s for j in parse_scenario(text).clock.jumps] == [2.0, 8.0]


def _documented_keys() -> set[str]:
    """Every name in backticks in the README (`key`, `{at_s, by_s}`)."""
    readme = (SCENARIO_DIR / "README.md").read_text()
    return {word for quoted in re.findall(r"`([^`]*)`", readme)
            for word in re.findall(r"[a-z_]+", quoted)}


def test_the_readme_documents_every_key_a_scenario_file_may_hold():
    keys = set()
    for cls in (ScenarioFile, Conditions, LightStep, AnimalPass, FalseTrigger, PirSpec,
                ClockJump, ClockSpec, SensorSpec):
        keys |= {f.name for f in schema_fields(cls)}

    assert keys - _documented_keys() == set()


def test_the_readme_example_is_a_valid_scenario():
    readme = (SCENARIO_DIR / "README.md").read_text()
    [example] = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)

    scenario = parse_scenario(example)

    assert scenario.name == "hare-at-dusk" and scenario.animals[0].species == "hare"


# --- nothing but ScenarioError, whatever is written ---------------------------------------

DEFAULT = yaml.safe_load((SCENARIO_DIR / "default.yaml").read_text())
TOP_KEYS = sorted(DEFAULT) + ["clock", "sensors"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
           | st.sampled_from(["1e30", "1e400", ".inf", "-.inf", "left", "night", "hare"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=10) | st.sampled_from(
                          ["at_s", "by_s", "cross_s", "height", "species", "from_s", "zone"]),
                          inner, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TOP_KEYS), values), min_size=1, max_size=3))
def test_any_values_in_a_scenario_give_a_scenario_or_a_scenario_error(overrides):
    document = copy.deepcopy(DEFAULT)
    for key, value in overrides:
        document[key] = value
    text = yaml.safe_dump(document, sort_keys=False)
    try:
        scenario = parse_scenario(text)
    except ScenarioError as error:
        assert error.problems and all("\n" not in str(p) for p in error.problems)
        return
    assert dataclasses.is_dataclass(scenario)
    for animal in scenario.animals:
        assert animal.cross_s > 0 and animal.box_at(animal.enter_s + animal.cross_s / 2)
