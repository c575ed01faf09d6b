"""The `trapd` command as a technician meets it."""

import subprocess
import sys

from conftest import write_config
from trapd.config import DEFAULT_CONFIG_PATH

TRAPD = [sys.executable, "-m", "trapd.cli"]


def trapd(*args):
    return subprocess.run(TRAPD + list(args), capture_output=True, text=True, timeout=120)


BAD_CONFIG = """\
station:
  station_id: LOL-A017
  deployment_id: LOL-A017-2026-11
  location:
    latitude: 43.1
    longitude: 131.4
burst:
  frames: five
  interval_s: 0.5
filter:
  pixel_treshold: 20
storage:
  jpeg_quality: 250
"""


def test_check_config_reports_every_problem_with_its_line_and_exits_1(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(BAD_CONFIG)
    result = trapd("check-config", str(path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(":8:" in l and "burst.frames" in l and "five" in l for l in lines)
    assert any(":11:" in l and "pixel_treshold" in l and "pixel_threshold" in l for l in lines)
    assert any(":13:" in l and "storage.jpeg_quality" in l and "250" in l for l in lines)
    assert "3 problem" in result.stdout


def test_check_config_accepts_the_shipped_file():
    result = trapd("check-config", str(DEFAULT_CONFIG_PATH))
    assert result.returncode == 0, result.stdout
    assert "OK" in result.stdout and "LOL-A017" in result.stdout


def test_run_without_a_camera_stack_says_so_in_one_line(tmp_path):
    config = write_config(tmp_path / "config.yaml", tmp_path)
    result = trapd("run", "--config", str(config))
    assert result.returncode not in (0, 1)
    error_lines = [l for l in result.stderr.splitlines() if l.startswith("trapd:")]
    assert len(error_lines) == 1 and "camera" in error_lines[0]
    assert "Traceback" not in result.stderr


def test_run_with_an_invalid_config_names_the_problem(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(BAD_CONFIG)
    result = trapd("run", "--config", str(path))
    assert result.returncode == 2 and "pixel_treshold" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_on_an_empty_root_explains_instead_of_crashing(tmp_path):
    result = trapd("status", "--storage", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and "no image queue" in result.stderr


def test_run_with_the_storage_root_in_ram_warns_before_it_starts(tmp_path):
    from trapd.check_config import mount_of

    shm = "/dev/shm"
    if mount_of(shm) is None or mount_of(shm).fstype != "tmpfs":
        import pytest
        pytest.skip("no tmpfs at /dev/shm on this machine")
    config = write_config(tmp_path / "config.yaml", tmp_path,
                          {"storage": {"root": f"{shm}/trapd-test-never-made"}})
    result = trapd("run", "--config", str(config))
    assert "storage.root /dev/shm/trapd-test-never-made is on tmpfs" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_of_a_34_kb_owner_is_one_problem_naming_line_and_limit(tmp_path):
    path = tmp_path / "config.yaml"
    text = DEFAULT_CONFIG_PATH.read_text().replace(
        'owner: "Land of the Leopard National Park"', f'owner: "{"Leopard " * 4400}"')
    path.write_text(text)
    result = trapd("check-config", str(path))
    line = text.splitlines().index(f'  owner: "{"Leopard " * 4400}"') + 1
    assert result.returncode == 1
    [problem, count] = result.stdout.splitlines()
    assert problem.startswith(f"{path}:{line}: station.owner = ")
    assert "at most 200 characters" in problem and "35200 characters" in problem
    assert count == f"1 problem(s) in {path}"
