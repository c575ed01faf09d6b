"""bench/filter_baselines.py on the team's real labelled sets: trapd (as
trapd.evaluate scores it) against each baseline, the baseline's threshold an
oracle chosen on the same set at trapd's recall (a) and at trapd's rejection
(b); and trapd, with its shipped config, at or beyond every baseline's point."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, require_shared
from trapd.config import load_config

BENCH_PATH = REPO / "bench" / "filter_baselines.py"
_spec = importlib.util.spec_from_file_location("filter_baselines", BENCH_PATH)
bench = sys.modules["filter_baselines"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def measured():
    """`measured(name)`: the bench's result on one real set, run once per module."""
    results = {}

    def measure(name):
        if name not in results:
            manifest = require_shared(f"data/{bench.SETS[name]}")
            results[name] = bench.compare_set(name, manifest, load_config())
        return results[name]

    return measure


def best_by_brute_force(result, method, animal_needed, empty_needed):
    """Over every threshold that makes a difference (each score, and above them
    all): the most empties dropped keeping >= animal_needed animals, and the
    most animals kept dropping >= empty_needed empties (None: none reaches it)."""
    scores = np.array(result.scores[method])
    animal = np.array([f.label == "animal" for f in result.frames])
    thresholds = np.append(np.unique(scores), np.inf)
    kept = scores[None, :] >= thresholds[:, None]          # one row per threshold
    animal_kept = (kept & animal).sum(axis=1)
    empty_dropped = (~kept & ~animal).sum(axis=1)
    best_dropped = empty_dropped[animal_kept >= animal_needed].max(initial=-1)
    reaching = animal_kept[empty_dropped >= empty_needed]
    return best_dropped, (reaching.max() if reaching.size else None)


@pytest.mark.parametrize("name", list(bench.SETS))
def test_each_baseline_threshold_is_an_oracle_at_trapds_recall_and_at_its_rejection(name, measured):
    result = measured(name)
    ours = result.row(bench.TRAPD)
    assert result.animal_frames > 0
    for method in bench.BASELINES:
        at_recall, at_rejection = result.row(method, "a"), result.row(method, "b")
        assert at_recall.animal_kept >= ours.animal_kept, (name, method)
        best_dropped, best_kept = best_by_brute_force(result, method, ours.animal_kept,
                                                      ours.empty_dropped)
        assert at_recall.empty_dropped == best_dropped, (name, method)
        if not result.empty_frames:  # rejection undefined: (b) is n/a
            assert at_rejection.threshold is None, (name, method)
            continue
        assert best_kept is not None, f"{name}: {method} cannot drop trapd's share of empties"
        assert at_rejection.empty_dropped >= ours.empty_dropped, (name, method)
        assert at_rejection.animal_kept == best_kept, (name, method)


@pytest.mark.parametrize("name", list(bench.SETS))
def test_trapd_is_at_or_beyond_every_baselines_oracle_point(name, measured):
    """At trapd's recall no baseline drops more empties; at trapd's rejection
    none keeps more animal frames or sequences."""
    result = measured(name)
    ours = result.row(bench.TRAPD)
    for method in bench.BASELINES:
        at_recall, at_rejection = result.row(method, "a"), result.row(method, "b")
        if result.empty_frames:
            assert at_recall.empty_dropped <= ours.empty_dropped, (name, method)
            assert at_rejection.animal_kept <= ours.animal_kept, (name, method)
            assert at_rejection.sequences_kept <= ours.sequences_kept, (name, method)
    assert ours.sequences_kept == result.animal_sequences, name


@pytest.mark.parametrize("name", list(bench.SETS))
def test_the_table_has_a_row_per_method_per_operating_point(name, measured):
    result = measured(name)
    lines = bench.format_set(result).splitlines()
    assert lines[0].startswith(f"{name} (") and f"{result.animal_frames} animal" in lines[0]
    header = [c.strip() for c in lines[1].strip("|").split("|")]
    assert header == ["method", "threshold", "animal frames kept", "empty frames dropped",
                      "animal sequences kept"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[3:]
            if line.startswith("| ")]
    expected = [bench.TRAPD] + [f"{method}, {point}" for method in bench.BASELINES
                                for point in ("(a) at trapd's recall", "(b) at trapd's rejection")]
    assert [cells[0] for cells in rows] == expected
    assert all(len(cells) == 5 for cells in rows)
    ours = result.row(bench.TRAPD)
    assert rows[0][2].startswith(f"{ours.animal_kept}/{result.animal_frames}")
    assert rows[0][4].startswith(f"{ours.sequences_kept}/{result.animal_sequences}")


def test_without_the_shared_folder_the_bench_says_so_in_one_line(tmp_path):
    missing = tmp_path / "shared"
    env = {k: v for k, v in os.environ.items() if k != "TRAPD_REQUIRE_SHARED"}
    result = subprocess.run([sys.executable, str(BENCH_PATH), "--shared", str(missing)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [result.stdout.strip()]
    assert "not present" in result.stdout and str(missing) in result.stdout
    required = subprocess.run([sys.executable, str(BENCH_PATH), "--shared", str(missing)],
                              capture_output=True, text=True, timeout=120,
                              env={**env, "TRAPD_REQUIRE_SHARED": "1"})
    assert required.returncode != 0 and "not present" in required.stdout
