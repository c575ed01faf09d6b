"""The fault campaign (bench/faults.py), short and seeded: every kind once
against one card; nothing committed lost, nothing outside the root
touched, no number reused, the trap back to capturing, no traceback."""

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import faults  # noqa: E402


def test_a_short_seeded_campaign_over_every_kind_finds_nothing(tmp_path):
    outcomes = faults.run_campaign(len(faults.KINDS), seed=13, workdir=tmp_path)
    tried = {o.kind for o in outcomes if not o.skipped}
    assert tried >= set(faults.KINDS) - {"card-full", "camera-fail"}
    assert faults.failures(outcomes) == []
