"""Bookkeeping of one event: the event in flight (its burst, the frames whose
filter decision waits) and the report of how each of its frames went."""

from __future__ import annotations

from dataclasses import dataclass, field

from trapd.burst_filter import BurstFilter
from trapd.camera import Frame
from trapd.sensors import SensorReadings
from trapd.storage import EventRecord
from trapd.trigger import Trigger
from trapd.writer import YuvCopy


@dataclass(frozen=True)
class FrameOutcome:
    sensor_timestamp_ns: int
    score: float
    kept: bool
    pre_trigger: bool
    file: str | None
    arrived_ns: int | None = None   # when the capture thread received the frame
    stored_ns: int | None = None    # when its file was durable (None: not saved)
    reference: str = "pre-trigger"  # what the filter judged it by (MotionResult.reference)


@dataclass
class EventReport:
    event_id: str
    trigger: str
    trigger_ns: int
    frames: list[FrameOutcome] = field(default_factory=list)
    note: str | None = None

    def line(self) -> str:
        kept = sum(f.kept for f in self.frames)
        saved = sum(f.file is not None for f in self.frames)
        text = (f"event {self.event_id} {self.trigger}: {len(self.frames)} frames, "
                f"{kept} kept, {saved} saved")
        return text + (f" ({self.note})" if self.note else "")


class EventInFlight:
    """Bookkeeping for the event in progress."""

    def __init__(self, record: EventRecord, trigger: Trigger, frames_due: int,
                 readings: SensorReadings, clock_synced: bool | None) -> None:
        self.record = record
        self.readings = readings
        self.clock_synced = clock_synced
        self.trigger = trigger
        self.frames_due = frames_due
        self.next_frame_ns = trigger.t_monotonic_ns
        self.last_edge_ns = trigger.t_monotonic_ns
        self.sequence = 0
        self.frames_taken = 0   # post-edge frames submitted (pre-trigger ones excluded)
        self.report = EventReport(record.event_id, trigger.source, trigger.t_monotonic_ns)
        self.ended = False
        self.note: str | None = None
        self.tail = 0           # frames left before closing, after the burst
        # With no background from before the trigger (standby, or just started)
        # the burst judges itself; frames whose decision waits for the next one.
        self.burst: BurstFilter | None = None
        self.undecided: list[UndecidedFrame] = []


@dataclass
class UndecidedFrame:
    """A frame scored but not yet submitted: what its record needs."""
    frame: Frame
    sequence: int
    pre_trigger: bool
    forced: bool            # kept whatever the filter says
    arrived_ns: int | None
    image: YuvCopy | None = None

    def hold(self) -> None:
        """Its decision waits for the next frame: copy it out of the camera buffer."""
        if self.image is None:
            self.image = YuvCopy.of(self.frame)
            self.frame.release()


def evenly_spread(frames: list, count: int) -> list:
    """`count` frames evenly spread over the list, oldest and newest included."""
    if len(frames) <= count:
        return frames
    step = (len(frames) - 1) / max(count - 1, 1)
    return [frames[round(i * step)] for i in range(count)]


def frame_metadata(metadata: dict, result) -> dict:
    """What a frame's index row keeps of its camera metadata and the filter's judgement."""
    keys = ("ExposureTime", "AnalogueGain", "DigitalGain", "Lux", "ColourTemperature",
            "SensorTemperature")
    out = {k: metadata[k] for k in keys if k in metadata}
    out.update(changed_fraction=round(result.changed_fraction, 5), light_change=result.light_change,
               bbox=result.bbox)
    return out
