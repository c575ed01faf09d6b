"""Leave-one-source-out: are the filter's shipped defaults fitted to one clip?

    .venv/bin/python bench/filter_loso.py [--sets SET ...] [--config PATH] [--shared DIR]
                                          [--thresholds N ...] [--lengths M ...]

Sets (manifests under ../shared/data, the evaluation contract's; default: every
one present): camtrap (camtrap/eval-manifest.csv), stills
(footage/camtrap-stills.csv), thermal (footage/thermal.csv), thermal-clips
(footage/thermal-animal-clips.csv).

Sources: the sequences of the sets grouped by where they come from (camera /
clip / carrier, from the sequence id and the sets' READMEs; see SOURCES): the
MICA heron burst, the Snapshot Serengeti E03 hippo bursts, the three
same-camera photo pairs, the two thermal false-trigger clips (noise_01, edge),
the Peru S90 stills, the possum clip (ospri13), the hedgehog clips (Hubble 5)
and the thermal-recorder `animals/` clips.

Tuned: `filter.pixel_threshold` x `filter.min_animal_length_m` over a small grid
around the shipped values (the config's own values are always in the grid).
Every grid point is scored once on every frame with trapd.evaluate.evaluate
(the shipped config with the two values overridden; a sequence is judged on
its own, so a fold only re-counts); then for each source the values are
chosen on all the other sources by CRITERION and scored on the held-out one,
beside the shipped values.

Frames are decoded once (the stills are 3264x2448 JPEGs) and handed to
evaluate through a cache keyed by (path, lores size).

Without ../shared (a clone without the team's shared folder) one line says so
and the bench exits 0, or 1 where TRAPD_REQUIRE_SHARED=1 (CI).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from trapd.config import Config, load_config, load_config_with
from filter_baselines import DEFAULT_SHARED, SETS
from trapd.evaluate import evaluate, load_lores_y, read_manifest

# Sets whose animal frames are scored per sequence only, not per frame: the
# footage README says so for thermal-animal-clips.csv (an animal may be still
# or out of view inside a clip labelled animal throughout).
PER_SEQUENCE_ONLY = {"thermal-clips"}
# Sequence id prefix -> source, first match wins (from ../shared/data/camtrap/README.md,
# ../shared/data/thermal/README.md and ../shared/data/footage/README.md).
SOURCES = (
    ("mica_", "heron burst (MICA, Reconyx)"),
    ("ss_", "hippo bursts (Serengeti E03)"),
    ("pair_", "photo pairs (Caltech, Serengeti, WCS)"),
    ("thermal_noise_", "thermal noise_01 (false trigger)"),
    ("thermal_edge_", "thermal edge (false trigger)"),
    ("peruS90_", "Peru S90 stills"),
    ("thermal_cp_possum", "possum (ospri13)"),
    ("thermal_cp_hedgehog", "hedgehog (Hubble 5)"),
    ("thermal_tr_", "thermal-recorder animals/"),
)
DEFAULT_THRESHOLDS = (12, 15, 18, 22, 26)
DEFAULT_LENGTHS = (0.3, 0.4, 0.5)
MIN_RECALL = 0.95
CRITERION = (
    "over all sources but the held-out one: every animal sequence kept (at least one of its "
    f"animal frames), then the highest empty-frame rejection with animal-frame recall >= "
    f"{MIN_RECALL} (recall over the frames labelled per frame: thermal-clips is scored per "
    "sequence only, as its README says), ties broken towards the shipped values (least "
    "relative distance, summed over the two settings; then the higher recall, then the "
    "more sensitive values). If no grid point meets both conditions: the most sequences, "
    "then the highest recall, then as above, marked (!)")


def source_of(set_name: str, sequence_id: str) -> str:
    """Where a sequence comes from (see SOURCES); an unknown prefix is its own
    source (the sequence id without a thermal window's _wNNNN suffix)."""
    for prefix, source in SOURCES:
        if sequence_id.startswith(prefix):
            return source
    return f"{set_name}: {re.sub(r'_w[0-9]+$', '', sequence_id)}"


class CachedLoader:
    """`load(path, lores_size)` for trapd.evaluate: each image decoded once.
    The frames are read-only, so a filter writing into one would fail loudly."""

    def __init__(self) -> None:
        self.frames: dict[tuple[Path, tuple[int, int]], np.ndarray] = {}

    def __call__(self, path, lores_size) -> np.ndarray:
        key = (Path(path), tuple(lores_size))
        if key not in self.frames:
            frame = load_lores_y(key[0], key[1])
            frame.flags.writeable = False
            self.frames[key] = frame
        return self.frames[key]

    def preload(self, manifests, lores_size) -> None:
        """Decode every frame of the manifests, on every core (decoding lets go of the GIL)."""
        files = sorted({row.file for manifest in manifests
                        for sequence in read_manifest(manifest) for row in sequence})
        with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            frames = list(pool.map(lambda f: load_lores_y(f, tuple(lores_size)), files))
        for file, frame in zip(files, frames):
            frame.flags.writeable = False
            self.frames[(Path(file), tuple(lores_size))] = frame


def chosen_sets(names: list[str] | None, shared: Path) -> dict[str, Path] | str:
    """{set: manifest} of the sets asked for (default: every one present), or
    the line to print when they cannot be measured."""
    if not shared.is_dir():
        return (f"{shared} not present (a clone without the team's shared folder): no real set "
                f"to measure")
    chosen = {name: shared / "data" / SETS[name] for name in names or SETS}
    absent = [name for name, path in chosen.items() if not path.is_file()]
    if names and absent:
        return f"set(s) {', '.join(absent)} not present under {shared / 'data'}"
    chosen = {name: path for name, path in chosen.items() if name not in absent}
    return chosen or f"no set present under {shared / 'data'}"


def shared_missing(message: str) -> int:
    """The newcomer's case: say so in one line; exit 1 only where CI requires ../shared."""
    print(message)
    return 1 if os.environ.get("TRAPD_REQUIRE_SHARED") == "1" else 0


# --- the grid, scored once ----------------------------------------------------

Params = tuple[float, float]     # (pixel_threshold, min_animal_length_m)


@dataclasses.dataclass(frozen=True)
class Frame:
    """One test frame of a set, as evaluate reported it."""
    set: str
    source: str
    sequence_id: str
    label: str
    file: str

    @property
    def per_frame(self) -> bool:
        """Does this frame count in the per-frame recall?"""
        return self.set not in PER_SEQUENCE_ONLY


@dataclasses.dataclass
class Measured:
    frames: list[Frame]
    kept: dict[Params, np.ndarray]     # per grid point, per frame (aligned with frames)
    shipped: Params
    seconds: dict[str, float]

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(f.source for f in self.frames))


def config_for(params: Params, config_path: str | None) -> Config:
    threshold, length = params
    return load_config_with({"filter": {"pixel_threshold": threshold,
                                        "min_animal_length_m": length}}, config_path)


def shipped_params(config: Config) -> Params:
    return (config.filter.pixel_threshold, config.filter.min_animal_length_m)


def grid(thresholds, lengths, shipped: Params) -> list[Params]:
    """Every (threshold, length) pair, the shipped values always among them."""
    thresholds = sorted(set(thresholds) | {shipped[0]})
    lengths = sorted(set(lengths) | {shipped[1]})
    return [(t, l) for t in thresholds for l in lengths]


def measure(sets: dict[str, Path], points: list[Params], config_path: str | None = None,
            load: CachedLoader | None = None) -> Measured:
    """Every grid point's per-frame decisions on every set (trapd.evaluate.evaluate)."""
    shipped = shipped_params(load_config(config_path))
    load = load or CachedLoader()
    seconds = {}
    start = time.perf_counter()
    load.preload(sets.values(), load_config(config_path).hardware.camera.lores_size)
    seconds["loading frames"] = time.perf_counter() - start
    frames: list[Frame] | None = None
    kept: dict[Params, np.ndarray] = {}
    start = time.perf_counter()
    for params in points:
        config = config_for(params, config_path)
        reported = []
        for name, manifest in sets.items():
            reported += [(name, f) for f in evaluate(manifest, config, load=load)["frames"]]
        these = [Frame(name, source_of(name, f["sequence_id"]), f["sequence_id"], f["label"],
                       f["file"]) for name, f in reported]
        if frames is None:
            frames = these
        assert these == frames, "evaluate reported other frames for another grid point"
        kept[params] = np.array([bool(f["kept"]) for _, f in reported])
    seconds[f"scoring {len(points)} grid points"] = time.perf_counter() - start
    return Measured(frames or [], kept, shipped, seconds)


# --- folds ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Tally:
    animal_frames: int
    animal_kept: int
    recall_frames: int        # animal frames counted in the recall (labelled per frame)
    recall_kept: int
    empty_frames: int
    empty_dropped: int
    animal_sequences: int
    sequences_kept: int

    @property
    def recall(self) -> float | None:
        return self.recall_kept / self.recall_frames if self.recall_frames else None

    @property
    def frame_recall(self) -> float | None:
        """Over every animal frame, per-sequence sets included."""
        return self.animal_kept / self.animal_frames if self.animal_frames else None

    @property
    def rejection(self) -> float | None:
        return self.empty_dropped / self.empty_frames if self.empty_frames else None


def tally(frames: list[Frame], kept: np.ndarray, which: np.ndarray) -> Tally:
    animal = np.array([f.label == "animal" for f in frames], bool) & which
    empty = np.array([f.label == "empty" for f in frames], bool) & which
    per_frame = np.array([f.per_frame for f in frames], bool)
    sequences: dict[tuple[str, str], bool] = {}
    for i in np.flatnonzero(animal):
        key = (frames[i].set, frames[i].sequence_id)
        sequences[key] = sequences.get(key, False) or bool(kept[i])
    return Tally(int(animal.sum()), int((animal & kept).sum()),
                 int((animal & per_frame).sum()), int((animal & per_frame & kept).sum()),
                 int(empty.sum()), int((empty & ~kept).sum()),
                 len(sequences), sum(sequences.values()))


def split(frames: list[Frame], held_out: str) -> tuple[np.ndarray, np.ndarray]:
    """(tuning, held-out) frame masks: every frame of the held-out source in the
    second, none in the first."""
    held = np.array([f.source == held_out for f in frames], bool)
    return ~held, held


def meets(t: Tally) -> bool:
    return t.sequences_kept == t.animal_sequences and (t.recall is None or t.recall >= MIN_RECALL)


def choose(measured: Measured, which: np.ndarray) -> tuple[Params, Tally, bool]:
    """The grid point CRITERION picks on the frames in `which`; its tally; whether it met
    the criterion's conditions."""
    shipped = measured.shipped

    def distance(params: Params) -> float:
        return sum(abs(v - s) / s for v, s in zip(params, shipped))

    def key(item):
        params, t = item
        recall = t.recall if t.recall is not None else 1.0
        sensitive = tuple(-v for v in params)
        if meets(t):
            return (1, t.empty_dropped, -distance(params), recall, sensitive)
        return (0, t.sequences_kept, recall, -distance(params), sensitive)

    tallies = {params: tally(measured.frames, kept, which) for params, kept in measured.kept.items()}
    params, t = max(tallies.items(), key=key)
    return params, t, meets(t)


@dataclasses.dataclass(frozen=True)
class Fold:
    source: str
    sets: tuple[str, ...]
    held: Tally                   # the held-out source with the values chosen without it
    held_shipped: Tally           # ... and with the shipped values
    chosen: Params
    met: bool
    tuning: Tally                 # the other sources with the values chosen on them
    tuning_shipped: Tally         # ... and with the shipped values
    tuning_frames: int
    tuning_sequences: frozenset   # (set, sequence_id) of the tuning frames


def folds(measured: Measured) -> list[Fold]:
    result = []
    for source in measured.sources:
        tuning, held = split(measured.frames, source)
        chosen, _, met = choose(measured, tuning)
        result.append(Fold(
            source=source,
            sets=tuple(dict.fromkeys(f.set for f, h in zip(measured.frames, held) if h)),
            held=tally(measured.frames, measured.kept[chosen], held),
            held_shipped=tally(measured.frames, measured.kept[measured.shipped], held),
            chosen=chosen, met=met,
            tuning=tally(measured.frames, measured.kept[chosen], tuning),
            tuning_shipped=tally(measured.frames, measured.kept[measured.shipped], tuning),
            tuning_frames=int(tuning.sum()),
            tuning_sequences=frozenset((f.set, f.sequence_id)
                                       for f, t in zip(measured.frames, tuning) if t)))
    return result


# --- output ----------------------------------------------------------------------

def _params(params: Params) -> str:
    return f"{params[0]:g} / {params[1]:g}"


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.1f}%)" if whole else "-"


def _cells(t: Tally) -> str:
    recall = _share(t.animal_kept, t.animal_frames)
    if t.animal_frames and t.recall_frames < t.animal_frames:
        recall += " †"
    return (f"{recall} | {_share(t.empty_dropped, t.empty_frames)} | "
            f"{t.sequences_kept}/{t.animal_sequences}" if t.animal_sequences else
            f"{recall} | {_share(t.empty_dropped, t.empty_frames)} | -")


def format_folds(measured: Measured, result: list[Fold], config_name: str) -> str:
    names = list(dict.fromkeys(f.set for f in measured.frames))
    thresholds = sorted({p[0] for p in measured.kept})
    lengths = sorted({p[1] for p in measured.kept})
    lines = [
        f"leave-one-source-out on {', '.join(names)}: {len(result)} sources, "
        f"{len(measured.frames)} test frames; grid pixel_threshold "
        f"{{{', '.join(f'{t:g}' for t in thresholds)}}} x min_animal_length_m "
        f"{{{', '.join(f'{v:g}' for v in lengths)}}} ({len(measured.kept)} points); shipped "
        f"{_params(measured.shipped)} ({config_name})",
        f"criterion: {CRITERION}",
        "",
        "| held-out source | set | frames animal / empty | chosen without it (pixel_threshold / "
        "min_animal_length_m) | chosen: animal recall | chosen: empty rejection | chosen: "
        "sequences kept | shipped: animal recall | shipped: empty rejection | shipped: "
        "sequences kept | other sources, chosen vs shipped: recall* / empty dropped |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for fold in result:
        t = fold.held
        mark = "" if fold.met else " (!)"
        same = " (= shipped)" if fold.chosen == measured.shipped else ""
        lines.append(f"| {fold.source} | {', '.join(fold.sets)} | {t.animal_frames} / "
                     f"{t.empty_frames} | {_params(fold.chosen)}{same}{mark} | "
                     f"{_cells(t)} | {_cells(fold.held_shipped)} | "
                     f"{_tuning(fold.tuning)} vs {_tuning(fold.tuning_shipped)} |")
    equal = [f for f in result if f.chosen == measured.shipped]
    lines.append("")
    lines.append(f"the values chosen without a source equal the shipped defaults in "
                 f"{len(equal)} of {len(result)} folds"
                 + ("" if len(equal) == len(result) else "; otherwise: " + "; ".join(
                     f"without {f.source}: {_params(f.chosen)}" for f in result
                     if f.chosen != measured.shipped)))
    better = [f for f in result if f.chosen != measured.shipped and _worse(f.held_shipped, f.held)]
    worse = [f for f in result if f.chosen != measured.shipped and _worse(f.held, f.held_shipped)]
    lines.append(f"on the held-out source the values chosen without it do better than the "
                 f"shipped ones in {len(better)} fold(s), worse in {len(worse)} (more animal "
                 f"sequences kept first, then animal frames, then empty frames dropped)")
    if any(not f.met for f in result):
        lines.append("(!): no grid point met the criterion on the other sources")
    if any(f.held.recall_frames < f.held.animal_frames for f in result):
        lines.append("†: labelled per clip, not per frame (thermal-animal-clips.csv: an animal "
                     "may be still or out of view inside a clip): frame recall is pessimistic "
                     "there and is left out of the criterion's recall (recall*); its sequences "
                     "count")
    all_frames = np.ones(len(measured.frames), bool)
    chosen, t, met = choose(measured, all_frames)
    lines.append(f"chosen on every source: {_params(chosen)}"
                 + (" (= shipped)" if chosen == measured.shipped else "")
                 + ("" if met else " (!)"))
    lines += ["", "every grid point on every source (sequences: animal sequences kept; "
              "recall*: the criterion's, per-frame sets only):",
              "| pixel_threshold / min_animal_length_m | animal recall (all frames) | recall* | "
              "empty rejection | sequences kept | meets |",
              "|---|---|---|---|---|---|"]
    for params, kept in measured.kept.items():
        t = tally(measured.frames, kept, all_frames)
        recall = "-" if t.recall is None else f"{t.recall:.3f}"
        lines.append(f"| {_params(params)}{' (shipped)' if params == measured.shipped else ''} | "
                     f"{_share(t.animal_kept, t.animal_frames)} | {recall} | "
                     f"{_share(t.empty_dropped, t.empty_frames)} | "
                     f"{t.sequences_kept}/{t.animal_sequences} | {'yes' if meets(t) else 'no'} |")
    return "\n".join(lines)


def _tuning(t: Tally) -> str:
    recall = "-" if t.recall is None else f"{t.recall:.3f}"
    return f"{recall} / {t.empty_dropped}/{t.empty_frames}"


def _worse(a: Tally, b: Tally) -> bool:
    """Is `a` worse than `b` on the same frames?"""
    return (a.sequences_kept, a.animal_kept, a.empty_dropped) < \
        (b.sequences_kept, b.animal_kept, b.empty_dropped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), metavar="SET",
                        help=f"real sets, of {', '.join(SETS)} (default: every one present)")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help="the team's shared folder (default: ../shared beside the repo)")
    parser.add_argument("--config", help="the config whose filter values are the shipped ones "
                        "(default: config.yaml)")
    parser.add_argument("--thresholds", nargs="+", type=float, default=DEFAULT_THRESHOLDS,
                        metavar="N", help="pixel_threshold grid (default: %(default)s)")
    parser.add_argument("--lengths", nargs="+", type=float, default=DEFAULT_LENGTHS,
                        metavar="M", help="min_animal_length_m grid (default: %(default)s)")
    args = parser.parse_args(argv)
    sets = chosen_sets(args.sets, args.shared)
    if isinstance(sets, str):
        return shared_missing(sets)
    start = time.perf_counter()
    config = load_config(args.config)
    points = grid([_number(t) for t in args.thresholds], args.lengths, shipped_params(config))
    measured = measure(sets, points, args.config)
    print(format_folds(measured, folds(measured), args.config or "config.yaml"))
    timing = ", ".join(f"{name} {s:.1f} s" for name, s in measured.seconds.items())
    print(f"\n{len(sets)} set(s) in {time.perf_counter() - start:.1f} s ({timing})")
    return 0


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


if __name__ == "__main__":
    sys.exit(main())
