"""bench/filter_loso.py and bench/filter_ablation.py run, split and patch as they
say: the held-out source is really left out of the tuning frames, the
criterion picks as documented, and the ablation's patches of trapd are undone.
No filter performance number is asserted (the filter is still being changed)."""

import importlib.util
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO, require_shared
from trapd.config import load_config
from trapd.evaluate import read_manifest
import trapd.motion
from trapd.motion import MotionFilter


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_load("filter_baselines")   # the others import it, as a script's folder would provide
loso = _load("filter_loso")
ablation = _load("filter_ablation")


def manifest(name):
    return require_shared(f"data/{loso.SETS[name]}")


# --- leave-one-source-out ----------------------------------------------------------

def test_every_sequence_of_the_real_sets_has_a_named_source_and_each_split_leaves_it_out():
    frames = [loso.Frame(name, loso.source_of(name, row.sequence_id), row.sequence_id, row.label,
                         str(row.file))
              for name in loso.SETS for sequence in read_manifest(manifest(name))
              for row in sequence if row.role == "test"]
    named = {source for _, source in loso.SOURCES}
    assert {f.source for f in frames} <= named, "a sequence fell through to the fallback source"
    sources = list(dict.fromkeys(f.source for f in frames))
    assert len(sources) >= 2
    for source in sources:
        tuning, held = loso.split(frames, source)
        assert held.any() and not (tuning & held).any() and (tuning | held).all()
        held_sequences = {(f.set, f.sequence_id) for f, h in zip(frames, held) if h}
        tuning_sequences = {(f.set, f.sequence_id) for f, t in zip(frames, tuning) if t}
        assert not held_sequences & tuning_sequences
        assert all(frames[i].source != source for i in np.flatnonzero(tuning))


def test_the_folds_on_real_frames_tune_without_the_held_out_source():
    sets = {name: manifest(name) for name in ("thermal", "camtrap")}
    measured = loso.measure(sets, loso.grid([18, 22], [0.4], (18, 0.4)))
    assert measured.shipped in measured.kept
    assert all(len(kept) == len(measured.frames) for kept in measured.kept.values())
    folds = loso.folds(measured)
    assert [f.source for f in folds] == measured.sources and len(folds) >= 2
    for fold in folds:
        held = {(f.set, f.sequence_id) for f in measured.frames if f.source == fold.source}
        assert held and not held & fold.tuning_sequences
        assert fold.tuning_frames + fold.held.animal_frames + fold.held.empty_frames == \
            len(measured.frames)
        assert fold.chosen in measured.kept


def _measured(kept_by_params, frames, shipped=(18, 0.4)):
    return loso.Measured(frames, {p: np.array(k) for p, k in kept_by_params.items()}, shipped, {})


def test_the_criterion_keeps_every_sequence_then_rejects_most_then_leans_to_shipped():
    F = loso.Frame
    frames = [F("s", "a", "seq1", "animal", "1"), F("s", "a", "seq2", "animal", "2"),
              F("s", "a", "e", "empty", "3"), F("s", "a", "e", "empty", "4")]
    everything = np.ones(len(frames), bool)
    # drops both empties but loses seq2: not chosen; of the two that drop one, the nearer to shipped
    measured = _measured({(18, 0.4): [1, 1, 1, 1], (12, 0.4): [1, 0, 0, 0],
                          (22, 0.4): [1, 1, 0, 1], (26, 0.5): [1, 1, 1, 0]}, frames)
    chosen, tally, met = loso.choose(measured, everything)
    assert chosen == (22, 0.4) and met and tally.empty_dropped == 1
    # a tie in rejection goes to the shipped values
    measured = _measured({(18, 0.4): [1, 1, 0, 1], (22, 0.4): [1, 1, 1, 0]}, frames)
    assert loso.choose(measured, everything)[0] == (18, 0.4)
    # per-sequence-only frames do not count in the recall, their sequences do
    clips = frames + [F("thermal-clips", "c", "clip", "animal", str(i)) for i in range(5, 9)]
    measured = _measured({(18, 0.4): [1, 1, 1, 0, 1, 1, 1, 1],
                          (22, 0.4): [1, 1, 0, 0, 1, 0, 0, 0],
                          (26, 0.4): [1, 1, 0, 0, 0, 0, 0, 0]}, clips)
    chosen, tally, met = loso.choose(measured, np.ones(len(clips), bool))
    assert chosen == (22, 0.4) and met and tally.recall == 1.0 and tally.sequences_kept == 3
    assert tally.frame_recall == 3 / 6


def test_loso_without_the_shared_folder_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRAPD_REQUIRE_SHARED", raising=False)
    assert loso.main(["--shared", str(tmp_path / "absent")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    monkeypatch.setenv("TRAPD_REQUIRE_SHARED", "1")
    assert loso.main(["--shared", str(tmp_path / "absent")]) == 1


def test_loso_prints_its_table_on_the_thermal_set(capsys):
    manifest("thermal")
    assert loso.main(["--sets", "thermal", "--thresholds", "18", "22", "--lengths", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "| held-out source |" in out and "| possum (ospri13) | thermal |" in out
    assert "criterion:" in out and "equal the shipped defaults in" in out


# --- ablation ----------------------------------------------------------------------

def _candidate_filter():
    """A MotionFilter with a flat background, and a frame with a body in it."""
    config = load_config()
    motion = MotionFilter(config.filter, config.hardware.camera)
    rng = np.random.default_rng(0)
    background = [np.clip(100 + rng.normal(0, 1, (240, 320)), 0, 255).astype(np.uint8)
                  for _ in range(6)]
    motion.set_background(background)
    frame = background[-1].copy()
    cv2.ellipse(frame, (160, 120), (20, 12), 0, 0, 360, 200, -1)
    return motion, frame


def test_each_variant_switches_its_steps_and_restores_trapd_on_leaving():
    real_score, real_rounds = MotionFilter.__dict__["score"], trapd.motion.SHIFT_ROUNDS
    motion, frame = _candidate_filter()
    assert motion.score(frame, frame).confirmed is True
    for name, (confirm, shift) in ablation.VARIANTS.items():
        with ablation.variant(name):
            assert (MotionFilter.__dict__["score"] is real_score) == confirm
            assert (trapd.motion.SHIFT_ROUNDS == real_rounds) == shift
            assert trapd.motion.SHIFT_ROUNDS == (real_rounds if shift else 0)
            result = motion.score(frame, frame)
            assert result.keep
            assert (result.confirmed is True) if confirm else (result.confirmed is None)
        assert MotionFilter.__dict__["score"] is real_score
        assert trapd.motion.SHIFT_ROUNDS == real_rounds
    with pytest.raises(RuntimeError):
        with ablation.variant(ablation.NEITHER):
            raise RuntimeError("a variant that fails")
    assert MotionFilter.__dict__["score"] is real_score and trapd.motion.SHIFT_ROUNDS == real_rounds


def test_the_ablation_bench_runs_on_the_thermal_set_and_one_scenario():
    # In a process of its own: its Pool forks, and a fork of this test process (with
    # the threads earlier tests left, e.g. a server fixture's) can hang on a lock.
    manifest("thermal")
    result = subprocess.run([sys.executable, str(REPO / "bench" / "filter_ablation.py"),
                             "--sets", "thermal", "--scenarios", "wind"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "| set or scenario | " + " | ".join(ablation.VARIANTS) + " |" in out
    rows = [line for line in out.splitlines() if line.startswith(("| thermal (", "| wind ("))]
    assert len(rows) == 2
    for row in rows:
        cells = row.strip("|").split("|")[1:]
        assert len(cells) == len(ablation.VARIANTS)
        assert all(c.strip().startswith("kept ") and ", lost " in c for c in cells)
    assert "step 8 (confirmation by the frame before)" in out and "step 7 (shift test)" in out
