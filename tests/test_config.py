"""config.yaml as a technician meets it: the shipped file loads, and every
mistake is reported with its line, its key and what would be valid."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from textwrap import dedent

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from trapd.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    check_config_main,
    load_config,
    parse_config,
)
from trapd.errors import ConfigError


def station_yaml(station_id: str = "LOL-A017") -> str:
    return dedent(
        f"""\
        station:
          station_id: {station_id}
          deployment_id: LOL-A017-2026-11
          location:
            latitude: 43.1056
            longitude: 131.4569
        """
    )


def problems_in(text: str) -> list:
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    return raised.value.problems


def problem_at(text: str, path: str):
    matching = [problem for problem in problems_in(text) if problem.path == path]
    assert len(matching) == 1, f"expected one problem at {path}, got {problems_in(text)}"
    return matching[0]


def line_of(text: str, fragment: str) -> int:
    """1-based number of the only line containing `fragment`."""
    lines = [number for number, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(lines) == 1
    return lines[0]


THREE_MISTAKES = station_yaml() + dedent(
    """\
    storage:
      jpeg_quality: 300
    filter:
      blur_px: five
      pixel_treshold: 20
    """
)


# --- the shipped file ------------------------------------------------------


def test_shipped_config_loads_and_is_the_default():
    shipped = load_config(DEFAULT_CONFIG_PATH)

    assert shipped.station.station_id == "LOL-A017"
    assert load_config(None).station.station_id == shipped.station.station_id


def test_values_are_converted_to_the_field_types():
    camera_yaml = "hardware:\n  camera:\n    main_size: [640, 480]\n    frame_rate: 10\n"

    config = parse_config(station_yaml() + camera_yaml)

    assert config.hardware.camera.main_size == (640, 480)
    assert isinstance(config.hardware.camera.frame_rate, float)
    assert isinstance(config.station.location.latitude, float)


def test_check_config_on_the_shipped_file_says_ok_and_summarises(capsys):
    assert check_config_main(str(DEFAULT_CONFIG_PATH)) == 0

    output = capsys.readouterr().out
    assert output.startswith(f"{DEFAULT_CONFIG_PATH}: OK\n")
    assert "LOL-A017" in output and "GPIO 17" in output and "2028x1520" in output


# --- all mistakes at once, each on its line ----------------------------------


def test_every_mistake_is_listed_with_its_line_and_key():
    problems = {problem.path: problem for problem in problems_in(THREE_MISTAKES)}

    assert set(problems) == {"filter.pixel_treshold", "filter.blur_px", "storage.jpeg_quality"}
    lines_in_reported_order = [problem.line for problem in problems.values()]
    assert lines_in_reported_order == sorted(lines_in_reported_order)
    typo = problems["filter.pixel_treshold"]
    assert typo.line == line_of(THREE_MISTAKES, "pixel_treshold")
    assert "did you mean 'pixel_threshold'?" in str(typo)
    assert problems["filter.blur_px"].line == line_of(THREE_MISTAKES, "blur_px")
    assert problems["storage.jpeg_quality"].line == line_of(THREE_MISTAKES, "jpeg_quality")
    assert str(problems["storage.jpeg_quality"]) == (
        f"config.yaml:{line_of(THREE_MISTAKES, 'jpeg_quality')}: storage.jpeg_quality = 300: "
        "expected an integer from 10 to 100"
    )


def test_check_config_prints_every_problem_and_fails(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(THREE_MISTAKES)

    assert check_config_main(str(path)) == 1

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert all(line.startswith(f"{path}:") for line in lines[:3])
    assert any("filter.pixel_treshold" in line for line in lines)
    assert any("filter.blur_px = 'five'" in line for line in lines)
    assert any("storage.jpeg_quality = 300" in line for line in lines)
    assert lines[-1] == f"3 problem(s) in {path}"


def test_an_unknown_key_without_a_close_match_lists_the_allowed_keys():
    problem = problem_at(station_yaml() + "burst:\n  zzz: 1\n", "burst.zzz")

    assert "frames, interval_s, pre_trigger_frames" in str(problem)


def test_an_unreadable_file_is_one_problem_naming_it(tmp_path):
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as raised:
        load_config(missing)

    [problem] = raised.value.problems
    assert problem.source == str(missing)
    assert str(problem).startswith(f"{missing}: cannot read the file")


# --- station identity ---------------------------------------------------------


@pytest.mark.parametrize("station_id", ["'../../etc'", "'A 1'", "ST_01", "''", "X" * 33])
def test_station_ids_that_would_break_file_names_are_rejected(station_id):
    problem = problem_at(station_yaml(station_id), "station.station_id")

    assert problem.line == 2
    assert "'_' separates the parts" in problem.expected


def test_a_numeric_station_id_is_rejected_as_not_text():
    problem = problem_at(station_yaml("123"), "station.station_id")

    assert problem.value == 123


def test_missing_required_keys_are_each_reported_under_their_section():
    text = "station:\n  owner: Somebody\n"

    problems = {problem.path: problem for problem in problems_in(text)}

    assert set(problems) == {"station.station_id", "station.deployment_id", "station.location"}
    assert all(problem.line == 1 for problem in problems.values())
    assert "missing" in str(problems["station.station_id"])


def test_a_missing_station_section_is_reported():
    problem = problem_at("filter:\n  enabled: false\n", "station")

    assert "missing" in str(problem)


# --- YAML-level mistakes --------------------------------------------------------


def test_a_duplicated_key_is_reported_at_its_second_line():
    text = station_yaml() + "filter:\n  blur_px: 5\n  blur_px: 7\n"

    problem = problem_at(text, "filter.blur_px")

    assert problem.line == len(text.splitlines())
    assert f"first at line {problem.line - 1}" in str(problem)


def test_a_yaml_syntax_error_is_one_problem_on_its_line_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    text = station_yaml() + "filter:\n  enabled: [true\n  blur_px: 5\n"
    path.write_text(text)

    assert check_config_main(str(path)) == 1

    output = capsys.readouterr().out
    assert "Traceback" not in output
    assert output.splitlines()[-1] == f"1 problem(s) in {path}"
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    [problem] = raised.value.problems
    # The bracket left open on the line above is noticed at the next ':'.
    assert problem.line == line_of(text, "blur_px")
    assert "YAML syntax error" in str(problem)


@pytest.mark.parametrize("tagged", ["!!int abc", "!!bool maybe", "!!timestamp soon", "!!int ''"])
def test_a_malformed_tagged_value_is_a_problem_on_its_line(tagged):
    text = station_yaml() + f"storage:\n  min_free_mb: {tagged}\n"

    problem = problem_at(text, "storage.min_free_mb")

    assert problem.line == line_of(text, "min_free_mb")


def test_absurdly_deep_nesting_is_a_problem_not_a_crash():
    [problem] = problems_in("station: " + "[" * 5000 + "]" * 5000)

    assert "nested too deeply" in str(problem)


def test_an_empty_file_is_a_problem():
    [problem] = problems_in("# nothing but a comment\n")

    assert "no settings" in str(problem)


def test_python_tags_are_rejected_without_running_anything(tmp_path):
    created = tmp_path / "created-by-yaml"
    text = station_yaml() + f"storage:\n  root: !!python/object/apply:os.mkdir ['{created}']\n"

    problem = problem_at(text, "storage.root")

    assert not created.exists()
    assert problem.line == line_of(text, "root:")
    assert "python/object/apply:os.mkdir" in str(problem)


# --- types and ranges --------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "20.0", "'20'"])
def test_pixel_threshold_must_be_a_real_integer(value):
    problem = problem_at(station_yaml() + f"filter:\n  pixel_threshold: {value}\n", "filter.pixel_threshold")

    assert "expected an integer from 1 to 255" in str(problem)


def test_a_size_must_be_two_even_integers():
    problem = problem_at(station_yaml() + "hardware:\n  camera:\n    main_size: [641, 480]\n",
                         "hardware.camera.main_size")

    assert "even" in problem.expected


def test_null_is_allowed_only_where_stated():
    config = parse_config(station_yaml() + "hardware:\n  ir_lamp_pin: null\n")
    assert config.hardware.ir_lamp_pin is None

    problem_at(station_yaml() + "hardware:\n  pir_pin: null\n", "hardware.pir_pin")


def test_utc_offset_gives_the_time_zone():
    config = parse_config(station_yaml() + "time:\n  utc_offset: '+10:00'\n")

    assert config.time.tz.utcoffset(None) == timedelta(hours=10)


@pytest.mark.parametrize("offset", ["'10'", "+10:00", "'+15:00'", "'+05:60'"])
def test_malformed_utc_offsets_are_rejected(offset):
    problem = problem_at(station_yaml() + f"time:\n  utc_offset: {offset}\n", "time.utc_offset")

    assert "in quotes" in problem.expected


# --- rules linking fields ---------------------------------------------------------------


def test_pre_trigger_frames_must_leave_two_camera_buffers_free():
    text = station_yaml() + "hardware:\n  camera:\n    buffer_count: 4\nburst:\n  pre_trigger_frames: 3\n"

    problem = problem_at(text, "burst.pre_trigger_frames")

    assert problem.line == line_of(text, "pre_trigger_frames")
    assert "hardware.camera.buffer_count" in str(problem)


def test_two_devices_on_one_pin_are_rejected_naming_both():
    text = station_yaml() + "hardware:\n  pir_pin: 4\n  status_led_pin: 4\n"

    problem = problem_at(text, "hardware.status_led_pin")

    assert problem.line == line_of(text, "status_led_pin")
    assert "pir_pin" in str(problem)


def test_gpio_4_on_its_own_is_a_valid_pir_pin():
    assert parse_config(station_yaml() + "hardware:\n  pir_pin: 4\n").hardware.pir_pin == 4


def test_the_burst_must_fit_in_the_longest_event():
    text = station_yaml() + "trigger:\n  max_event_s: 10\nburst:\n  frames: 30\n  interval_s: 0.5\n"

    problem = problem_at(text, "burst.frames")

    assert "trigger.max_event_s" in str(problem)


def test_the_lores_stream_may_not_be_larger_than_the_main_one():
    text = station_yaml() + "hardware:\n  camera:\n    main_size: [640, 480]\n    lores_size: [800, 240]\n"

    problem = problem_at(text, "hardware.camera.lores_size")

    assert "main_size [640, 480]" in str(problem)


# --- nothing but ConfigError, whatever is typed -------------------------------------------


def _key_paths(mapping: dict, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for key, value in mapping.items():
        paths.append(prefix + (key,))
        if isinstance(value, dict):
            paths.extend(_key_paths(value, prefix + (key,)))
    return paths


SHIPPED = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
KNOWN_PATHS = _key_paths(SHIPPED)
KNOWN_KEYS = sorted({path[-1] for path in KNOWN_PATHS})

any_key = st.sampled_from(KNOWN_KEYS) | st.text(max_size=8) | st.integers()
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.dates()
yaml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_key, inner, max_size=3),
    max_leaves=10,
)
key_paths = st.sampled_from(KNOWN_PATHS) | st.tuples(st.sampled_from(KNOWN_PATHS), any_key).map(
    lambda pair: pair[0] + (pair[1],)
)


def _with_override(document: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        if not isinstance(document.get(key), dict):
            document[key] = {}
        document = document[key]
    document[path[-1]] = value


def _assert_parses_or_explains(text: str, *, every_problem_has_a_path: bool) -> None:
    try:
        assert isinstance(parse_config(text), Config)
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            assert isinstance(problem.path, str)
            assert problem.path or not every_problem_has_a_path, problem
            assert problem.line is None or problem.line >= 1
            assert "\n" not in str(problem)


@settings(max_examples=2000, deadline=None)   # issue 5: >= 2,000 examples in CI
@given(st.lists(st.tuples(key_paths, yaml_values), min_size=1, max_size=4))
def test_any_values_merged_into_the_shipped_config_give_config_or_config_error(overrides):
    document = copy.deepcopy(SHIPPED)
    for path, value in overrides:
        _with_override(document, path, value)

    text = yaml.dump(document, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
    _assert_parses_or_explains(text, every_problem_has_a_path=True)


yaml_tokens = st.sampled_from(
    list(" \n\t:-[]{},#&*!|>'\"?%@`~.0123abc")
    + ["station", "  ", ": ", "- ", "!!python/object:x", "!!int ", "!!bool ", "\x00", "*a", "&a"]
)


@settings(max_examples=300, deadline=None)
@given(st.text() | st.lists(yaml_tokens, max_size=60).map("".join))
def test_arbitrary_text_gives_config_or_config_error(text):
    _assert_parses_or_explains(text, every_problem_has_a_path=False)



def test_publish_accepts_only_exact_rounded_or_omit_on_its_line():
    text = DEFAULT_CONFIG_PATH.read_text().replace("publish: exact", "publish: fuzzy")
    with pytest.raises(ConfigError) as error:
        parse_config(text)
    [problem] = error.value.problems
    line = text.splitlines().index("    publish: fuzzy") + 1
    assert (problem.path, problem.line, problem.value) == ("station.location.publish", line, "fuzzy")
    assert "exact, rounded, omit" in problem.expected


def test_project_contributors_with_a_bad_role_are_reported_on_their_line():
    text = DEFAULT_CONFIG_PATH.read_text().replace("role: rightsHolder}", "role: boss}")
    with pytest.raises(ConfigError) as error:
        parse_config(text)
    [problem] = error.value.problems
    assert problem.path == "project.contributors" and "principalInvestigator" in problem.expected
    assert text.splitlines()[problem.line - 1].strip() == "contributors:"


def test_the_shipped_project_and_sensors_sections_load():
    config = load_config(DEFAULT_CONFIG_PATH)
    assert config.station.location.publish == "exact"
    assert config.project.sampling_design == "targeted"
    assert config.project.contributors[0].role == "rightsHolder"
    assert config.sensors.ambient_temperature_file is None


# --- free text that ends up in every photo (issue 13) --------------------------------------


def test_an_owner_too_long_for_a_photo_is_a_problem_naming_the_limit_and_its_length():
    owner = "Land of the Leopard " * 1700                       # 34 KB: no EXIF segment holds it
    text = station_yaml() + f"  owner: '{owner}'\n"

    problem = problem_at(text, "station.owner")

    assert problem.line == line_of(text, "owner:")
    assert "at most 200 characters" in str(problem) and f"{len(owner)} characters" in str(problem)
    assert len(str(problem)) < 400                              # the value is shown cut short


@pytest.mark.parametrize("key", ["owner", "license"])
@pytest.mark.parametrize("value", [r'"Park\nRangers"', r'"Park\tRangers"', r'"Park\aRangers"',
                                   r'"Park\u2028Rangers"', r'"Park\ud800"'])
def test_station_texts_with_control_characters_are_rejected(key, value):
    text = station_yaml() + f"  {key}: {value}\n"

    problem = problem_at(text, f"station.{key}")

    assert "control character" in str(problem) and problem.line == line_of(text, f"{key}:")


@pytest.mark.parametrize("section, key, limit", [
    ("project", "title", 200),
    ("project", "data_license", 64),
])
def test_project_texts_are_bounded(section, key, limit):
    text = station_yaml() + f"{section}:\n  {key}: {'A' * (limit + 1)}\n"

    problem_at(text, f"{section}.{key}")
    parse_config(station_yaml() + f"{section}:\n  {key}: {'A' * limit}\n")


def test_a_contributor_with_a_name_too_long_is_reported():
    text = station_yaml() + f"project:\n  contributors:\n    - {{title: {'A' * 201}}}\n"

    problem = problem_at(text, "project.contributors")

    assert "at most 200 characters" in problem.expected


def test_every_text_at_its_longest_still_fits_in_a_photo():
    import piexif
    import simplejpeg
    import numpy as np

    from trapd.daemon import station_info
    from trapd.metadata import CaptureInfo, build_exif, build_xmp, tag_jpeg

    widest = "\U0001F406"                                        # 4 bytes in UTF-8
    text = dedent(f"""\
        station:
          station_id: {"S" * 32}
          deployment_id: {"D" * 64}
          owner: "{widest * 200}"
          license: "{widest * 200}"
          serial_number: "{"~" * 64}"
          location: {{latitude: -33.9, longitude: 18.4}}
        """)
    config = parse_config(text)
    station = station_info(config, "imx477")
    capture = CaptureInfo(wall_time_ns=1_800_000_000 * 10**9, media_id="0" * 32,
                          event_id="E" * 80, event_number=10**9, sequence=100, event_length=100,
                          capture_method="activityDetection", trigger_source="pir",
                          motion_score=0.123456789, width=4056, height=3040,
                          exposure_time_us=20000, analogue_gain=16.0, digital_gain=1.0)
    jpeg = simplejpeg.encode_jpeg(np.zeros((16, 16, 3), np.uint8))

    tagged = tag_jpeg(jpeg, build_exif(station, capture), build_xmp(station, capture))

    artist = piexif.load(tagged)["0th"][piexif.ImageIFD.Artist]
    assert artist.decode("utf-8") == widest * 200


# --- a relative storage root (issue 13) ------------------------------------------------


def test_a_relative_storage_root_is_taken_from_the_config_files_folder(tmp_path, monkeypatch):
    folder = tmp_path / "etc" / "trapd"
    folder.mkdir(parents=True)
    path = folder / "config.yaml"
    path.write_text(station_yaml() + "storage:\n  root: photos/queue\n")
    monkeypatch.chdir(tmp_path)                                  # not the config's folder

    assert load_config(path).storage.root == str(folder / "photos" / "queue")
    assert load_config("etc/trapd/config.yaml").storage.root == str(folder / "photos" / "queue")


def test_parse_config_keeps_a_relative_root_unless_given_a_folder(tmp_path):
    text = station_yaml() + "storage:\n  root: photos\n"

    assert parse_config(text).storage.root == "photos"
    assert parse_config(text, base_dir=tmp_path).storage.root == str(tmp_path / "photos")
    absolute = station_yaml() + f"storage:\n  root: {tmp_path / 'abs'}\n"
    assert parse_config(absolute, base_dir="/elsewhere").storage.root == str(tmp_path / "abs")


def test_the_shipped_config_stores_in_the_repository_wherever_trapd_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert load_config().storage.root == str(DEFAULT_CONFIG_PATH.parent / "sim-output" / "storage")


MOUNTINFO = """\
22 1 179:2 / / rw,noatime shared:1 - ext4 /dev/mmcblk0p2 rw
25 22 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=92160k,mode=755
"""


def test_check_config_warns_when_photos_would_be_kept_in_ram(tmp_path, capsys):
    from trapd.check_config import mount_of, storage_warnings

    config = parse_config(station_yaml() + "storage:\n  root: /run/trapd/storage\n")
    [warning] = storage_warnings(config, 8, "config.yaml", MOUNTINFO)
    assert warning.startswith("warning: config.yaml:8: storage.root /run/trapd/storage is on tmpfs")
    assert "lost at every reboot" in warning
    drive = tmp_path / "usb drive"                               # a space: escaped as \040
    drive.mkdir()
    usb = f"31 22 0:26 / {str(drive).replace(' ', chr(92) + '040')} rw - vfat /dev/sda1 rw\n"
    assert mount_of(str(drive / "not-yet" / "photos"), MOUNTINFO + usb).fstype == "vfat"
    on_card = parse_config(station_yaml() + "storage:\n  root: /var/lib/trapd\n")
    assert storage_warnings(on_card, 8, "config.yaml", MOUNTINFO) == []


def test_check_config_prints_the_warning_for_a_root_on_a_real_tmpfs_and_still_passes(
        tmp_path, capsys):
    from trapd.check_config import mount_of

    shm = Path("/dev/shm")
    if mount_of(str(shm)) is None or mount_of(str(shm)).fstype != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm on this machine")
    path = tmp_path / "config.yaml"
    text = station_yaml() + f"storage:\n  root: {shm / 'trapd-never-made' / 'storage'}\n"
    path.write_text(text)

    assert check_config_main(str(path)) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: OK"
    assert lines[-1].startswith(f"warning: {path}:{line_of(text, 'root:')}: storage.root ")
    assert "tmpfs" in lines[-1]
    assert not (shm / "trapd-never-made").exists()              # checking makes nothing
