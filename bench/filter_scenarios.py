"""The filter on every simulator scenario, scored against ground truth.

    .venv/bin/python bench/filter_scenarios.py [SCENARIO ...]

Runs each scenario (default: all in hw_sim/scenarios) through the whole trap
with the shipped config.yaml, main stream at 640x480 to save rendering time
(the filter only sees the lores stream, which is unchanged), two at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
from multiprocessing import Pool

from hw_sim.run import run_scenario
from hw_sim.scenario import SCENARIO_DIR, load_scenario
from trapd.config import load_config


def summary(name: str) -> tuple[str, dict]:
    logging.disable(logging.WARNING)
    config = load_config()
    camera = dataclasses.replace(config.hardware.camera, main_size=(640, 480))
    config = dataclasses.replace(config, hardware=dataclasses.replace(config.hardware, camera=camera))
    with tempfile.TemporaryDirectory() as storage:
        return name, run_scenario(load_scenario(name), config, storage).report()["summary"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*",
                        default=sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
    names = parser.parse_args().scenarios
    with Pool(2) as pool:
        results = pool.map(summary, names)
    print("| scenario       | animal frames kept | empty frames dropped | animal events lost |")
    print("|----------------|--------------------|----------------------|--------------------|")
    for name, s in results:
        kept = f"{s['animal_frames_kept']}/{s['animal_frames']}" if s["animal_frames"] else "-"
        dropped = f"{s['empty_frames_dropped']}/{s['empty_frames']}"
        lost = f"{s['animal_events_lost']}/{s['animal_events']}" if s["animal_events"] else "-"
        print(f"| {name:14s} | {kept:>18s} | {dropped:>20s} | {lost:>18s} |")


if __name__ == "__main__":
    main()
