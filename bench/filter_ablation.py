"""With and without the filter's steps 7 (shift test) and 8 (confirmation by the
frame before), on every real set and the simulator scenarios.

    .venv/bin/python bench/filter_ablation.py [--sets SET ...] [--scenarios NAME ...]
                                              [--config PATH] [--shared DIR]

Variants (docs/filter.md, "How it decides"):
(a) shipped: trapd as it is;
(b) without step 8: MotionFilter.score is always passed previous=None, so a
    candidate is judged alone, never confirmed by the frame before;
(c) without step 7: trapd.motion.SHIFT_ROUNDS = 0, so no shift of the
    background is tried;
(d) without both.
The variants patch trapd in this process only, inside a context manager
(`variant`) that undoes the patch on leaving; trapd's files are not changed.

Real sets (manifests under ../shared/data, as in bench/filter_baselines.py;
default: every one present) are scored with trapd.evaluate.evaluate, each
frame decoded once. A cell is "kept a/b, dropped c/d, lost e": animal frames
kept, empty frames dropped, animal sequences with no frame kept. Steps 7 and 8
belong to the pre-trigger filter (MotionFilter); a sequence judged as in
standby (trapd.burst_filter: no background frames, or older ones) does not
use them, so each set's row says how many of its test frames were judged
against pre-trigger frames.

Simulator scenarios (default: wind, clouds, ir-switching, rain, animals,
default, sunset-window): hw_sim.run.run_scenario with the config (main stream
640x480: the filter sees only the lores stream, which is unchanged), its
report's summary; "lost" there is animal_events_lost.

Without ../shared the real sets are left out (one line says so; exit 1 where
TRAPD_REQUIRE_SHARED=1, else the simulator rows are still measured).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trapd.motion
from filter_loso import DEFAULT_SHARED, SETS, CachedLoader, chosen_sets
from trapd.config import Config, load_config
from trapd.evaluate import evaluate
from trapd.motion import MotionFilter

# name -> (step 8 on, step 7 on), in the table's column order
VARIANTS = {
    "(a) shipped": (True, True),
    "(b) without step 8 (confirmation)": (False, True),
    "(c) without step 7 (shift test)": (True, False),
    "(d) without steps 7 and 8": (False, False),
}
SHIPPED, NO_CONFIRM, NO_SHIFT, NEITHER = VARIANTS
SCENARIOS = ("wind", "clouds", "ir-switching", "rain", "animals", "default", "sunset-window")


@contextlib.contextmanager
def variant(name: str):
    """trapd with the variant's steps switched off in this process; restored on leaving."""
    confirm, shift = VARIANTS[name]
    real_score = MotionFilter.__dict__["score"]
    real_rounds = trapd.motion.SHIFT_ROUNDS
    try:
        if not confirm:
            @functools.wraps(real_score)
            def score(self, lores_y, previous=None):
                return real_score(self, lores_y, None)
            MotionFilter.score = score
        if not shift:
            trapd.motion.SHIFT_ROUNDS = 0
        yield
    finally:
        MotionFilter.score = real_score
        trapd.motion.SHIFT_ROUNDS = real_rounds


@dataclasses.dataclass(frozen=True)
class Cell:
    animal_kept: int
    animal_frames: int
    empty_dropped: int
    empty_frames: int
    lost: int

    def __str__(self) -> str:
        return (f"kept {self.animal_kept}/{self.animal_frames}, "
                f"dropped {self.empty_dropped}/{self.empty_frames}, lost {self.lost}")


@dataclasses.dataclass
class Row:
    name: str
    note: str
    cells: dict[str, Cell]


def set_cell(report: dict) -> Cell:
    return Cell(report["animal_frames_kept"], report["animal_frames"],
                report["empty_frames_dropped"], report["empty_frames"],
                report["animal_sequences"] - report["animal_sequences_kept"])


def set_row(name: str, manifest: Path, config: Config, load: CachedLoader) -> Row:
    cells, note = {}, ""
    for variant_name in VARIANTS:
        with variant(variant_name):
            report = evaluate(manifest, config, load=load)
        cells[variant_name] = set_cell(report)
        if variant_name == SHIPPED:
            pre = sum(f["reference"] == "pre-trigger" for f in report["frames"])
            note = f"{pre} of {len(report['frames'])} test frames judged against pre-trigger frames"
    return Row(name, note, cells)


def sim_config(config_path: str | None) -> Config:
    config = load_config(config_path)
    camera = dataclasses.replace(config.hardware.camera, main_size=(640, 480))
    return dataclasses.replace(config, hardware=dataclasses.replace(config.hardware, camera=camera))


def sim_cell(job: tuple[str, str, str | None]) -> Cell:
    """One scenario run under one variant (in a pool worker)."""
    from hw_sim.run import run_scenario
    from hw_sim.scenario import load_scenario

    scenario, variant_name, config_path = job
    logging.disable(logging.WARNING)
    config = sim_config(config_path)
    with variant(variant_name), tempfile.TemporaryDirectory() as storage:
        summary = run_scenario(load_scenario(scenario), config, storage).report()["summary"]
    return Cell(summary["animal_frames_kept"], summary["animal_frames"],
                summary["empty_frames_dropped"], summary["empty_frames"],
                summary["animal_events_lost"])


def sim_rows(scenarios: list[str], config_path: str | None) -> list[Row]:
    jobs = [(s, v, config_path) for s in scenarios for v in VARIANTS]
    with Pool(min(len(jobs), os.cpu_count() or 2)) as pool:
        cells = pool.map(sim_cell, jobs, chunksize=1)
    by_job = dict(zip(((s, v) for s, v, _ in jobs), cells))
    return [Row(s, "simulator", {v: by_job[(s, v)] for v in VARIANTS}) for s in scenarios]


def format_table(rows: list[Row]) -> str:
    lines = ["| set or scenario | " + " | ".join(VARIANTS) + " |",
             "|---|" + "---|" * len(VARIANTS)]
    for row in rows:
        lines.append(f"| {row.name} ({row.note}) | "
                     + " | ".join(str(row.cells[v]) for v in VARIANTS) + " |")
    return "\n".join(lines)


def _effect(rows: list[Row], with_it: str, without: str) -> dict[str, list[str]]:
    """What switching a step off does, row by row: empties it drops, animal
    frames and sequences/events it costs."""
    earns, costs, same = [], [], []
    for row in rows:
        on, off = row.cells[with_it], row.cells[without]
        dropped = on.empty_dropped - off.empty_dropped       # > 0: the step drops more empties
        animals = off.animal_kept - on.animal_kept           # > 0: the step costs animal frames
        lost = on.lost - off.lost                            # > 0: the step loses sequences/events
        if dropped:
            earns.append(f"{row.name} {'+' if dropped > 0 else ''}{dropped} empty dropped "
                         f"({off.empty_dropped} -> {on.empty_dropped} of {on.empty_frames})")
        if animals or lost:
            costs.append(f"{row.name} {animals:+d} animal frame(s) lost"
                         + (f", {lost:+d} sequence(s)/event(s) lost" if lost else ""))
        if not dropped and not animals and not lost:
            same.append(row.name)
    return {"earns": earns, "costs": costs, "same": same}


def format_notes(rows: list[Row]) -> str:
    """Which step earns its place where, from the table's numbers."""
    lines = ["Notes (computed from the table; + = the step drops that many more empty frames, "
             "an animal cost is frames the step drops that the variant without it kept):"]
    for step, pairs in (("step 8 (confirmation by the frame before)",
                         ((SHIPPED, NO_CONFIRM, "with step 7 on"), (NO_SHIFT, NEITHER, "with step 7 off"))),
                        ("step 7 (shift test)",
                         ((SHIPPED, NO_SHIFT, "with step 8 on"), (NO_CONFIRM, NEITHER, "with step 8 off")))):
        for with_it, without, context in pairs:
            effect = _effect(rows, with_it, without)
            total_dropped = sum(r.cells[with_it].empty_dropped - r.cells[without].empty_dropped
                                for r in rows)
            total_animals = sum(r.cells[without].animal_kept - r.cells[with_it].animal_kept
                                for r in rows)
            lines.append(f"- {step}, {context}: {total_dropped:+d} empty frames dropped over "
                         f"all rows, {total_animals} animal frame(s) cost. "
                         f"Drops more on: {'; '.join(effect['earns']) or 'none'}. "
                         f"Costs on: {'; '.join(effect['costs']) or 'none'}. "
                         f"No difference on: {', '.join(effect['same']) or 'none'}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="*", choices=list(SETS), metavar="SET",
                        help=f"real sets, of {', '.join(SETS)} (default: every one present; "
                             f"none with an empty list)")
    parser.add_argument("--scenarios", nargs="*", metavar="NAME", default=list(SCENARIOS),
                        help="simulator scenarios (default: %(default)s; none with an empty list)")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help="the team's shared folder (default: ../shared beside the repo)")
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    config = load_config(args.config)
    rows, seconds, status = [], {}, 0
    if args.sets != []:
        sets = chosen_sets(args.sets, args.shared)
        if isinstance(sets, str):
            print(sets + "; the real sets are left out")
            if args.sets or os.environ.get("TRAPD_REQUIRE_SHARED") == "1":
                return 1
        else:
            t = time.perf_counter()
            load = CachedLoader()
            load.preload(sets.values(), config.hardware.camera.lores_size)
            seconds["loading frames"] = time.perf_counter() - t
            t = time.perf_counter()
            rows += [set_row(name, manifest, config, load) for name, manifest in sets.items()]
            seconds["real sets"] = time.perf_counter() - t
    if args.scenarios:
        t = time.perf_counter()
        rows += sim_rows(args.scenarios, args.config)
        seconds["simulator"] = time.perf_counter() - t
    if not rows:
        print("nothing to measure")
        return status
    print(format_table(rows))
    print()
    print(format_notes(rows))
    timing = ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items())
    print(f"\n{len(rows)} row(s) x {len(VARIANTS)} variants in "
          f"{time.perf_counter() - start:.1f} s ({timing})")
    return status


if __name__ == "__main__":
    sys.exit(main())
