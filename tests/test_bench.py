"""Benchmarks run in CI on a few frames so they cannot rot (no timing asserted)."""

import subprocess
import sys

from conftest import REPO


def test_filter_cost_bench_prints_its_table_with_the_baseline():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "filter_cost.py"), "--frames", "12"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "baseline" in result.stdout and "trapd MotionFilter.score" in result.stdout
    assert "JPEG encode" in result.stdout and "peak RSS" in result.stdout
    assert "as the trap scores them" in result.stdout


def test_filter_scenarios_bench_prints_a_row_per_scenario():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "filter_scenarios.py"), "clouds"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "| clouds" in result.stdout and "empty frames dropped" in result.stdout


def test_trigger_bench_prints_modes_and_baselines():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "trigger.py"), "--events", "2",
                             "--idle-s", "1"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    for row in ("streaming (writer threads)", "standby", "baseline: streaming, sync writer",
                "baseline: still switch (pi-timolo)", "dead time"):
        assert row in result.stdout


def test_burst_bench_prints_throughput_against_the_limit_and_rss():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "burst.py"), "--frames", "2",
                             "--rounds", "1"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    for row in ("limit: cores x single encode", "baseline: 1 writer thread",
                "every frame copied, sustained", "trapd:", "encoders, sustained", "peak RSS"):
        assert row in result.stdout


def test_filter_baselines_bench_compares_on_a_sim_scenario():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "filter_baselines.py"), "--sim", "default"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    for row in ("trapd MotionFilter", "picamera2 example MSE", "Frigate-style", "OpenCV MOG2"):
        assert row in result.stdout
