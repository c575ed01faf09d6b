"""trapd's filter against three baselines on each real labelled set, at two operating points.

    .venv/bin/python bench/filter_baselines.py [--sets SET ...] [--config PATH] [--shared DIR]
    .venv/bin/python bench/filter_baselines.py MANIFEST [--config PATH]
    .venv/bin/python bench/filter_baselines.py --sim [SCENARIO ...]

Sets (manifests under ../shared/data, the evaluation contract's; default: every
one present): camtrap (camtrap/eval-manifest.csv), stills
(footage/camtrap-stills.csv: standby, the background frames an older empty view
minutes to days before), thermal (footage/thermal.csv), thermal-clips
(footage/thermal-animal-clips.csv: every frame animal).

trapd's numbers are those of trapd.evaluate.evaluate(manifest, config) with the
shipped config.yaml (or --config): its per-frame `kept`, nothing hard-coded.

Baselines (each scores every test frame):
- picamera2 example: mean squared difference to the previous frame
  (capture_motion.py), with its uint8 wrap-around fixed;
- Frigate-style: running-average background (accumulateWeighted), blur,
  threshold, dilate, largest contour area;
- OpenCV MOG2: mixture-of-Gaussians background subtractor, foreground share.
Every method sees the same frames: the sequence's background frames first,
then its test frames in order; a frame with nothing before it to compare
with is kept by every method (scored infinite, "unjudged"). A baseline keeps
a frame whose score is >= its threshold.

Each baseline's threshold is an oracle: chosen after the fact on the very set
it is measured on (the field has no such labels), at two operating points:
(a) trapd's recall: the highest threshold that still keeps at least as many
    animal frames as trapd kept on that set (the baseline's best empty-frame
    rejection at trapd's recall);
(b) trapd's rejection: the lowest threshold that still drops at least as many
    empty frames as trapd dropped (the baseline's best animal recall at
    trapd's rejection). On a set without empty frames rejection is undefined:
    (b) is reported as n/a.
An animal sequence is kept if any of its animal test frames is kept.

With --sim the frames are those trapd's filter saw in the simulator
scenarios (default: all), recorded as the trap ran, one sequence per event:
its background frames, then every frame scored, labelled by the scene's
ground truth; a frame the trap rebased on after a light or lamp switch is
shown to the baselines as background too (seen, not scored); the baselines
are compared at trapd's recall only.

Without ../shared (a clone without the team's shared folder) the real sets
cannot be measured: one line says so and the bench exits 0, or 1 where
TRAPD_REQUIRE_SHARED=1 (CI).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

from trapd.config import load_config
from trapd.evaluate import evaluate, load_lores_y, read_manifest
from trapd.motion import MotionFilter

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared"
# Short name -> manifest under SHARED/data, in the order the tables are printed.
SETS = {
    "camtrap": "camtrap/eval-manifest.csv",
    "stills": "footage/camtrap-stills.csv",
    "thermal": "footage/thermal.csv",
    "thermal-clips": "footage/thermal-animal-clips.csv",
}
TRAPD = "trapd"


class Picamera2Example:
    def __init__(self):
        self.previous = None

    def see(self, frame):
        self.previous = frame

    def score(self, frame):
        previous, self.previous = self.previous, frame
        if previous is None:
            return math.inf
        return float(np.square(frame.astype(np.int16) - previous.astype(np.int16)).mean())


class FrigateStyle:
    """After frigate/motion/improved_motion.py: running average, threshold, contours."""

    ALPHA, THRESHOLD = 0.2, 30

    def __init__(self):
        self.average = None

    def _blur(self, frame):
        return cv2.GaussianBlur(frame, (3, 3), 0).astype(np.float32)

    def see(self, frame):
        if self.average is None:
            self.average = self._blur(frame)
        cv2.accumulateWeighted(self._blur(frame), self.average, self.ALPHA)

    def score(self, frame):
        if self.average is None:
            self.see(frame)
            return math.inf
        blurred = self._blur(frame)
        delta = cv2.absdiff(blurred, self.average)
        cv2.accumulateWeighted(blurred, self.average, self.ALPHA)
        mask = cv2.dilate((delta > self.THRESHOLD).astype(np.uint8), None, iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        return max((cv2.contourArea(c) for c in contours), default=0.0) / mask.size


class Mog2:
    def __init__(self):
        self.subtractor = cv2.createBackgroundSubtractorMOG2(history=50, detectShadows=True)
        self.seen = 0

    def see(self, frame):
        self.subtractor.apply(frame)
        self.seen += 1

    def score(self, frame):
        foreground = self.subtractor.apply(frame)
        if not self.seen:
            self.seen += 1
            return math.inf
        moving = cv2.morphologyEx((foreground == 255).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        return float(moving.mean())


BASELINES = {"picamera2 example MSE": Picamera2Example, "Frigate-style running average": FrigateStyle,
             "OpenCV MOG2": Mog2}


@dataclasses.dataclass(frozen=True)
class TestFrame:
    file: str
    sequence_id: str
    label: str


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of a set's table: a method at one operating point."""
    method: str
    point: str            # "" for trapd, "a" (trapd's recall) or "b" (trapd's rejection)
    threshold: float | None   # None: trapd (its config), or the point is n/a
    animal_kept: int
    empty_dropped: int
    sequences_kept: int
    note: str = ""


@dataclasses.dataclass
class SetResult:
    name: str
    manifest: Path
    sequences: int
    with_background: int
    animal_frames: int
    empty_frames: int
    animal_sequences: int
    unjudged: int         # test frames the baselines cannot judge (nothing before them)
    config: str
    rows: list[Row]
    seconds: dict[str, float]
    frames: list[TestFrame]            # the test frames, in manifest order
    scores: dict[str, list[float]]     # each baseline's score for each of them

    def row(self, method: str, point: str = "") -> Row:
        return next(r for r in self.rows if r.method == method and r.point == point)


def load_sequences(manifest: Path, lores_size) -> list[list[tuple[str, TestFrame, np.ndarray]]]:
    """Every sequence of the manifest, its frames in order as (role, test frame, lores Y)."""
    return [[(row.role, TestFrame(str(row.file), row.sequence_id, row.label),
              load_lores_y(row.file, lores_size)) for row in sequence]
            for sequence in read_manifest(manifest)]


def judge_sequences(sequences, make_method) -> list[float]:
    """The method's score for every test frame, in manifest order: each sequence
    starts from a fresh method shown its background frames first."""
    scores = []
    for sequence in sequences:
        method = make_method()
        for role, _, frame in sequence:
            if role == "background":
                method.see(frame)
            else:
                scores.append(method.score(frame))
    return scores


def count(frames: list[TestFrame], kept: list[bool]) -> tuple[int, int, int]:
    """(animal frames kept, empty frames dropped, animal sequences kept); a
    sequence is kept if any of its animal frames is."""
    animal_kept = sum(k for f, k in zip(frames, kept) if f.label == "animal")
    empty_dropped = sum(not k for f, k in zip(frames, kept) if f.label == "empty")
    sequences = {f.sequence_id for f, k in zip(frames, kept) if f.label == "animal" and k}
    return animal_kept, empty_dropped, len(sequences)


def threshold_at_recall(frames: list[TestFrame], scores: list[float], animal_needed: int) -> float:
    """The highest threshold (keep score >= it) that keeps at least
    `animal_needed` animal frames: the most empties dropped at that recall."""
    if animal_needed == 0:
        return math.inf  # keeps only what nothing can judge
    animal = sorted((s for f, s in zip(frames, scores) if f.label == "animal"), reverse=True)
    return animal[animal_needed - 1]


def threshold_at_rejection(frames: list[TestFrame], scores: list[float],
                           empty_needed: int) -> float | None:
    """The lowest threshold (keep score >= it) that drops at least
    `empty_needed` empty frames: the most animals kept at that rejection;
    None if it cannot (some of those empties are unjudged, scored infinite)."""
    if empty_needed == 0:
        return min(scores)
    empty = sorted(s for f, s in zip(frames, scores) if f.label == "empty")
    highest_dropped = empty[empty_needed - 1]
    if highest_dropped == math.inf:
        return None
    above = [s for s in scores if s > highest_dropped]
    return min(above) if above else math.nextafter(highest_dropped, math.inf)


def baseline_rows(name: str, frames: list[TestFrame], scores: list[float],
                  animal_needed: int, empty_needed: int | None) -> list[Row]:
    """The baseline at (a) trapd's recall and (b) trapd's rejection (None: the
    set has no empty frames, so (b) is n/a)."""
    threshold = threshold_at_recall(frames, scores, animal_needed)
    rows = [Row(name, "a", threshold, *count(frames, [s >= threshold for s in scores]))]
    if empty_needed is None:
        rows.append(Row(name, "b", None, 0, 0, 0))
        return rows
    threshold = threshold_at_rejection(frames, scores, empty_needed)
    if threshold is None:  # the best it can: drop every empty it can judge
        rows.append(Row(name, "b", math.inf, *count(frames, [s == math.inf for s in scores]),
                        "cannot reach it: too many empties unjudged"))
    else:
        rows.append(Row(name, "b", threshold, *count(frames, [s >= threshold for s in scores])))
    return rows


def compare_set(name: str, manifest: Path, config, config_name: str = "config.yaml") -> SetResult:
    """trapd (trapd.evaluate.evaluate with `config`) and each baseline, its
    threshold an oracle on this set, at trapd's recall and at trapd's rejection."""
    seconds = {TRAPD: 0.0, "loading frames for the baselines": 0.0}

    def timed(name, function, *args):
        start = time.perf_counter()
        value = function(*args)
        seconds[name] = time.perf_counter() - start
        return value

    # Two threads: decoding the images (most of the time) lets go of the GIL.
    with ThreadPoolExecutor(2) as pool:
        trapd_run = pool.submit(timed, TRAPD, evaluate, manifest, config)
        loading = pool.submit(timed, "loading frames for the baselines", load_sequences, manifest,
                              config.hardware.camera.lores_size)
        report, sequences = trapd_run.result(), loading.result()
    frames = [frame for sequence in sequences for role, frame, _ in sequence if role == "test"]
    ours = report["frames"]
    assert [(f["file"], f["sequence_id"], f["label"]) for f in ours] == \
        [(f.file, f.sequence_id, f.label) for f in frames], "evaluate's frames are not the manifest's"
    kept = [bool(f["kept"]) for f in ours]
    animal_kept, empty_dropped, sequences_kept = count(frames, kept)
    empty_frames = sum(f.label == "empty" for f in frames)
    rows = [Row(TRAPD, "", None, animal_kept, empty_dropped, sequences_kept)]
    unjudged, all_scores = set(), {}
    for method_name, make_method in BASELINES.items():
        start = time.perf_counter()
        scores = judge_sequences(sequences, make_method)
        seconds[method_name] = time.perf_counter() - start
        unjudged.add(sum(s == math.inf for s in scores))
        all_scores[method_name] = scores
        rows += baseline_rows(method_name, frames, scores, animal_kept,
                              empty_dropped if empty_frames else None)
    return SetResult(
        name=name, manifest=manifest, sequences=len(sequences),
        with_background=sum(any(role == "background" for role, _, _ in s) for s in sequences),
        animal_frames=sum(f.label == "animal" for f in frames), empty_frames=empty_frames,
        animal_sequences=len({f.sequence_id for f in frames if f.label == "animal"}),
        unjudged=max(unjudged), config=config_name, rows=rows, seconds=seconds,
        frames=frames, scores=all_scores)


POINTS = {"": "", "a": ", (a) at trapd's recall", "b": ", (b) at trapd's rejection"}


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.1f}%)" if whole else "-"


def _threshold(row: Row, result: SetResult) -> str:
    if row.point == "":
        return f"its {result.config}"
    if row.threshold is None:
        return "n/a"
    return "inf" if row.threshold == math.inf else f"{row.threshold:.4g}"


def format_set(result: SetResult) -> str:
    """A line naming the set and its counts, then its table."""
    where = "" if result.name == str(result.manifest) else f" ({result.manifest})"
    lines = [f"{result.name}{where}: {result.sequences} sequences "
             f"({result.with_background} with background frames); test frames: "
             f"{result.animal_frames} animal in {result.animal_sequences} sequences, "
             f"{result.empty_frames} empty; {result.unjudged} unjudged by the baselines "
             f"(nothing before them: kept by each)"
             + ("; no empty frames, so (b) is n/a" if not result.empty_frames else ""),
             "| method | threshold | animal frames kept | empty frames dropped | animal sequences kept |",
             "|---|---|---|---|---|"]
    for row in result.rows:
        n_a = row.point == "b" and row.threshold is None
        note = f" [{row.note}]" if row.note else ""
        lines.append(
            f"| {row.method}{POINTS[row.point]}{note} | {_threshold(row, result)} | "
            f"{'n/a' if n_a else _share(row.animal_kept, result.animal_frames)} | "
            f"{'n/a' if n_a else _share(row.empty_dropped, result.empty_frames)} | "
            f"{'n/a' if n_a else _share(row.sequences_kept, result.animal_sequences)} |")
    timing = ", ".join(f"{name} {s:.1f}" for name, s in result.seconds.items())
    lines.append(f"seconds: {timing}")
    return "\n".join(lines)


def at_recall(scored: list[tuple[float, str]], recall: float) -> tuple[float, float, float]:
    """(threshold, recall, empty rejection) with the highest threshold that keeps `recall`."""
    animal = sorted((s for s, label in scored if label == "animal"), reverse=True)
    empty = [s for s, label in scored if label == "empty"]
    needed = max(1, math.ceil(recall * len(animal) - 1e-9))
    threshold = animal[needed - 1]
    kept_animal = sum(s >= threshold for s in animal)
    dropped_empty = sum(s < threshold for s in empty)
    return threshold, kept_animal / len(animal), dropped_empty / len(empty) if empty else 0.0


def record_filter_inputs(sequences: list[list[tuple]]) -> None:
    """Make every MotionFilter append what it is shown to `sequences`, one list
    per event: ("background", frame) for its background frames, ("rebase",
    frame) for a frame it rebased on, ("score", frame, previous camera frame)."""
    real_set, real_rebase, real_score = (MotionFilter.set_background, MotionFilter.rebase,
                                         MotionFilter.score)

    def set_background(self, frames):
        sequences.append([("background", f.copy()) for f in frames])
        return real_set(self, frames)

    def rebase(self, lores_y):
        if sequences:
            sequences[-1].append(("rebase", lores_y.copy()))
        return real_rebase(self, lores_y)

    def score(self, lores_y, previous=None):
        sequences[-1].append(("score", lores_y.copy(), None if previous is None else previous.copy()))
        return real_score(self, lores_y, previous)

    MotionFilter.set_background, MotionFilter.rebase, MotionFilter.score = set_background, rebase, score


def recorded_filter_inputs(name: str) -> tuple[list[list[tuple]], dict]:
    """What trapd's filter was shown, per event (see record_filter_inputs), in one run of
    the scenario with the shipped config (main stream 640x480: the filter sees only the
    unchanged lores stream), and the run's report. Run it in a child process: it
    patches MotionFilter for good."""
    from hw_sim.run import run_scenario
    from hw_sim.scenario import load_scenario

    logging.disable(logging.WARNING)
    config = load_config()
    camera = dataclasses.replace(config.hardware.camera, main_size=(640, 480))
    config = dataclasses.replace(config, hardware=dataclasses.replace(config.hardware, camera=camera))
    sequences: list[list[tuple]] = []
    record_filter_inputs(sequences)
    with tempfile.TemporaryDirectory() as storage:
        report = run_scenario(load_scenario(name), config, storage).report()
    return sequences, report


def sim_scores(name: str) -> dict[str, list[tuple[float, str]]]:
    """Ours ((1 if kept else 0), truth) and each baseline's (score, truth), per frame the
    trap scored in one scenario run."""
    sequences, report = recorded_filter_inputs(name)
    frames = [f for e in report["events"] for f in e["frames"]]
    truths = [f["truth"] for f in frames]
    scored = {"trapd MotionFilter": [(float(f["kept"]), f["truth"]) for f in frames]}
    for method_name, make_method in BASELINES.items():
        scores = []
        for sequence in sequences:
            method = make_method()
            for role, frame, *_ in sequence:
                if role == "score":
                    scores.append(method.score(frame))
                else:
                    method.see(frame)
        assert len(scores) == len(truths), (name, len(scores), len(truths))
        scored[method_name] = list(zip(scores, truths))
    return scored


def print_table(rows: list[tuple[str, float, float]]) -> None:
    print("| method                         | animal recall | empty rejection |")
    print("|--------------------------------|---------------|-----------------|")
    for name, recall, rejection in rows:
        print(f"| {name:30s} | {recall:13.3f} | {rejection:15.3f} |")


def compare_on_sim(names: list[str]) -> None:
    with Pool(2) as pool:
        runs = pool.map(sim_scores, names)
    pooled = {name: [x for run in runs for x in run[name]] for name in runs[0]}
    ours = pooled.pop("trapd MotionFilter")
    animal = [kept for kept, truth in ours if truth == "animal"]
    empty = [kept for kept, truth in ours if truth == "empty"]
    recall = sum(animal) / len(animal)
    rows = [("trapd MotionFilter", recall, 1 - sum(empty) / len(empty))]
    for name, scored in pooled.items():
        _, r, rejection = at_recall(scored, recall)
        rows.append((name, r, rejection))
    print(f"simulator scenarios {', '.join(names)}: {len(animal)} animal, {len(empty)} empty frames scored")
    print_table(rows)


def shared_missing(shared: Path) -> int:
    """The newcomer's case: say so in one line; exit 1 only where CI requires ../shared."""
    print(f"{shared} not present (a clone without the team's shared folder): no real set to "
          f"measure; --sim compares on the simulator")
    return 1 if os.environ.get("TRAPD_REQUIRE_SHARED") == "1" else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", help="measure this manifest only, instead of --sets")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), metavar="SET",
                        help=f"real sets to measure, of {', '.join(SETS)} (default: every one present)")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help="the team's shared folder (default: ../shared beside the repo)")
    parser.add_argument("--config")
    parser.add_argument("--sim", nargs="*", metavar="SCENARIO",
                        help="compare on simulator scenarios instead (default: all)")
    args = parser.parse_args()
    if args.sim is not None:
        from hw_sim.scenario import SCENARIO_DIR

        compare_on_sim(args.sim or sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
        return 0
    config = load_config(args.config)
    if args.manifest:
        chosen = {args.manifest: Path(args.manifest)}
    else:
        if not args.shared.is_dir():
            return shared_missing(args.shared)
        chosen = {name: args.shared / "data" / SETS[name] for name in args.sets or SETS}
        absent = [name for name, path in chosen.items() if not path.is_file()]
        if args.sets and absent:
            print(f"set(s) {', '.join(absent)} not present under {args.shared / 'data'}")
            return 1
        chosen = {name: path for name, path in chosen.items() if name not in absent}
        if not chosen:
            return shared_missing(args.shared / "data")
    start = time.perf_counter()
    for name, manifest in chosen.items():
        print(format_set(compare_set(name, manifest, config, args.config or "config.yaml")))
        print()
    print(f"{len(chosen)} set(s) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
