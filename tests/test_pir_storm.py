"""PIR storms: a PIR chattering at 1 kHz for a minute and one stuck high for
two make a few coalesced events at the burst cadence, keep memory flat, and
the next real animal afterwards is captured."""

import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def storms():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "pir_storm.py"), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return {r["storm"]: r for r in json.loads(result.stdout)}


def test_a_1khz_chattering_pir_makes_a_few_events_at_the_burst_cadence(storms):
    chatter = storms["chatter"]
    assert chatter["edges_coalesced"] >= 59_000          # 60,000 edges, nearly all folded in
    assert chatter["events_during_storm"] <= 3           # max_event_s = 30 s each
    assert chatter["storm_event_frames"] <= 2 * 62 + 10  # 2 frames/s (interval 0.5 s), not 10
    assert chatter["rss_growth_mb"] < 5                  # no backlog of edges in memory


def test_a_pir_stuck_high_makes_one_capped_event(storms):
    stuck = storms["stuck-high"]
    assert stuck["events_during_storm"] == 1
    assert stuck["storm_event_frames"] <= 62 + 5
    assert stuck["rss_growth_mb"] < 5


@pytest.mark.parametrize("kind", ["chatter", "stuck-high"])
def test_the_next_animal_after_a_storm_is_captured(storms, kind):
    assert storms[kind]["animal_after_storm_images"] >= 5
    assert storms[kind]["verify_problems"] == 0
