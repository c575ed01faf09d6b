"""Moon phase at a moment, as Reconyx traps record it (eight named phases).

Mean synodic month from a known new moon: good to about half a day, well
inside the 3.7 days each of the eight phases lasts. Pure; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SYNODIC_MONTH_S = 29.530588853 * 86400
# New moon of 2000-01-06 18:14 UTC (Meeus, Astronomical Algorithms, ch. 49).
REFERENCE_NEW_MOON_S = 947182440
PHASE_NAMES = ("New", "New Crescent", "First Quarter", "Waxing Gibbous",
               "Full", "Waning Gibbous", "Last Quarter", "Old Crescent")


@dataclass(frozen=True)
class MoonPhase:
    index: int           # 0 New .. 4 Full .. 7 Old Crescent (Reconyx MoonPhase numbering)
    name: str
    age_days: float      # days since the last new moon
    illumination: float  # lit fraction of the disc, 0..1


def moon_phase(wall_ns: int) -> MoonPhase:
    cycle = ((wall_ns / 1e9 - REFERENCE_NEW_MOON_S) / SYNODIC_MONTH_S) % 1.0
    index = int(cycle * 8 + 0.5) % 8
    return MoonPhase(index=index, name=PHASE_NAMES[index],
                     age_days=round(cycle * SYNODIC_MONTH_S / 86400, 2),
                     illumination=round((1 - math.cos(2 * math.pi * cycle)) / 2, 3))
