"""The pipeline: PIR trigger -> burst -> filter -> tag -> queue, one event at a time.

The loop is paced by the camera: each `step()` takes one frame. Idle frames
go into the ring (pre-trigger frames and background). A trigger opens an
event: the held frames from before the edge are its pre-trigger frames, then
one frame every `burst.interval_s` from the first frame exposed after the
edge. A new PIR edge (or a PIR still high when the burst ends) extends the
event, up to `trigger.max_event_s`.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Callable

from trapd.burst_filter import BurstFilter, OlderViews
from trapd.event import (EventInFlight, EventReport, FrameOutcome, UndecidedFrame,
                         evenly_spread, frame_metadata)
from trapd.camera import RETRY_WAIT_STEP_S, Camera, Frame, FrameRing, LentMain
from trapd.clock import Clock
from trapd.config import CAMERA_FREE_BUFFERS, Config
from trapd.errors import CaptureFailed
from trapd.metadata import CaptureInfo, StationInfo, build_exif, build_xmp, local_time, tag_jpeg
from trapd.moon import moon_phase
from trapd.motion import MotionFilter
from trapd.operating import IDLE, STANDBY, Operating
from trapd.sensors import Sensors
from trapd.storage import FrameRecord, Store
from trapd.timekeeping import WallClockWatch
from trapd.trigger import TIMER, PirTrigger, Trigger
from trapd.writer import FrameWriter, Written, YuvCopy

log = logging.getLogger(__name__)

NS = 1_000_000_000
# A standby reference wake-up lets the camera settle (exposure, lamp) this long.
REFERENCE_SETTLE_S = 1.0
CAPTURE_METHOD = {"pir": "activityDetection", "manual": "activityDetection", "timer": "timeLapse"}


def held_buffers(config: Config, buffers: int) -> int:
    """Pre-trigger frames the ring may hold in their camera buffers, of `buffers`
    granted: the camera needs CAMERA_FREE_BUFFERS to keep capturing."""
    return max(0, min(config.burst.pre_trigger_frames, buffers - CAMERA_FREE_BUFFERS))


def lendable_buffers(config: Config, buffers: int) -> int:
    """Camera buffers, of `buffers` granted, the encoders may read in place
    beside the pre-trigger frames the ring holds."""
    return max(0, buffers - CAMERA_FREE_BUFFERS - held_buffers(config, buffers))


class Trap:
    def __init__(self, config: Config, camera: Camera, pir: PirTrigger, store: Store,
                 clock: Clock, station: StationInfo,
                 on_event: Callable[[EventReport], None] | None = None,
                 sensors: Sensors | None = None, debug=None, operating: Operating | None = None,
                 writer: FrameWriter | None = None) -> None:
        self.camera = camera
        self.debug = debug          # a DebugImages, or None
        self.pir = pir
        self.store = store
        self.clock = clock
        self.on_event = on_event
        self.sensors = sensors or Sensors()
        self._event: EventInFlight | None = None
        self._closing: list[EventInFlight] = []     # ended, waiting for their frames to be written
        self._timer_pending = False
        self.operating = operating or Operating(config, camera, clock, self.sensors)
        self.writer = writer or FrameWriter(store.save_file, clock.monotonic_ns)
        self._quiet_until_ns = 0
        self._wall_watch = WallClockWatch()
        self._wall_jump_ns = 0  # steps seen since the last event opened
        self.last_frame_ns: int | None = None  # newest SensorTimestamp (the watchdog's proof of life)
        self.status_led = None      # a StatusLed showing the degraded states, if configured
        self._next_reference_ns: int | None = None   # standby: next view of the empty scene
        # The newest frame's (SensorTimestamp, wall time, lores Y), for a remote preview.
        self.latest_view: tuple[int, int, object] | None = None
        # Optional watchers (the setup link): each frame while its buffer is held,
        # and each trigger with the event it opened or extended; both return at once.
        self.frame_tap: Callable[[Frame], None] | None = None
        self.on_trigger: Callable[[Trigger, str], None] | None = None
        self.references_taken = 0
        self._woken = False
        self._apply(config, station)

    def _apply(self, config: Config, station: StationInfo) -> None:
        self.config = config
        self.station = station
        camera = config.hardware.camera
        self.filter = MotionFilter(config.filter, camera)
        self._older_views = OlderViews()
        window_frames = int(config.filter.background_window_s * camera.frame_rate)
        self._ring = FrameRing(config.burst.pre_trigger_frames,
                               config.burst.pre_trigger_frames + max(window_frames, 1),
                               camera.lores_size)

    def reconfigure(self, config: Config, station: StationInfo) -> None:
        """Take a new config between events (SIGHUP). Pins and camera modes
        need a restart; everything else (schedule, power mode, night, filter,
        burst) applies from the next event."""
        if config.hardware != self.config.hardware:
            log.warning("hardware settings changed: they take effect at the next restart")
            config = dataclasses.replace(config, hardware=self.config.hardware)
        self._ring.clear()
        self.operating.reconfigure(config)
        self._apply(config, station)

    @property
    def in_event(self) -> bool:
        return self._event is not None

    @property
    def stop_requested(self) -> bool:
        """The battery is critical: the daemon should stop cleanly."""
        return self.operating.stop_requested

    def wake(self) -> None:
        """Cut short a standby wait (a stop, or work handed to the daemon's loop)."""
        self._woken = True      # a wake between _idle_wait's clear and its wait is not lost
        self.pir.edge.set()

    def step(self) -> None:
        """Take one frame and move the pipeline on (or, camera stopped, wait for a trigger)."""
        self._collect_written()
        if self._event is None and self._idle_wait():
            return
        try:
            frame = self.camera.next_frame()
        except CaptureFailed as exc:   # the camera retries with back-off; the trap stays up
            self._camera_failed(str(exc))
            return
        self.last_frame_ns = frame.sensor_timestamp_ns
        self.latest_view = (frame.sensor_timestamp_ns, frame.wall_ns, frame.lores_y)
        if self.frame_tap:
            self.frame_tap(frame)
        self._ring.hold = held_buffers(self.config, self.camera.buffers)
        if self.station.camera_model != self.camera.model:   # opened after a degraded start
            self.station = dataclasses.replace(self.station, camera_model=self.camera.model)
        frame.arrived_ns = self.clock.monotonic_ns()
        self._watch_wall_clock(frame)
        self.operating.observe_frame(frame)
        rebase = self.operating.needs_rebase(frame)
        if rebase:
            self._rebase(frame)
        self._ring.see(frame)
        trigger = self._next_trigger()
        if self._event is None and trigger is not None:
            if frame.sensor_timestamp_ns < trigger.t_monotonic_ns:
                self._ring.push(frame)
                frame = None
            self._start_event(trigger)
        elif self._event is not None and trigger is not None:
            if frame.sensor_timestamp_ns < trigger.t_monotonic_ns:
                self._event_frame(frame, rebase)   # from before the re-trigger edge
                frame = None
            if self._event is not None:
                self._extend(trigger)
            else:
                self._start_event(trigger)
        if frame is None:
            return
        if self._event is None:
            self._ring.push(frame)
        else:
            self._event_frame(frame, rebase)

    def finish(self) -> None:
        """Close the event in flight and write all its frames (SIGTERM: finish, then stop)."""
        while self._event is not None:
            self.step()
        self.flush_written()

    def flush_written(self) -> None:
        """Wait until every frame handed to the writer is saved and indexed,
        and close the events that completes."""
        self.writer.collect(wait=True)
        self._close_written_events()

    def close(self) -> None:
        self.finish()
        self.writer.close()
        self._ring.clear()
        self.operating.close()
        self.sensors.close()

    # -- power: a stopped camera waits for the PIR ----------------------------
    def _idle_wait(self) -> bool:
        """In standby or outside every window: camera stopped, wait for an edge,
        the next timelapse or a schedule change. True if no frame should be taken now."""
        mode = self.operating.mode()
        if mode not in (STANDBY, IDLE) or self._closing or self.operating.camera_kept_on():
            self._ensure_running()
            return False
        if mode == IDLE:
            self._drop_pir_edges()
        if self.operating.timelapse_due():
            self._timer_pending = True
        if self._has_trigger_waiting(mode):
            self._ensure_running()
            return False
        if mode == STANDBY and self._reference_due():
            self._take_reference()
            if self._has_trigger_waiting(mode):
                return False   # an edge came while the camera was awake: it is running
        self._ensure_stopped()
        self.pir.edge.clear()
        if self._woken or self._has_trigger_waiting(mode):
            self._woken = False
            return True
        self.clock.wait_for(self.pir.edge, min(self.operating.idle_timeout_s(), self._to_reference_s(mode)))
        self._woken = False     # whoever woke it queued its work first: the loop runs it next
        return True

    def _reference_due(self) -> bool:
        return self._to_reference_s(STANDBY) <= 0

    def _to_reference_s(self, mode: str) -> float:
        every = self.config.filter.reference_every_s
        if mode != STANDBY or not every:
            return float("inf")
        if self._next_reference_ns is None:
            self._next_reference_ns = self.clock.monotonic_ns() + int(every * NS)
        return max(0.0, (self._next_reference_ns - self.clock.monotonic_ns()) / NS)

    def _take_reference(self) -> None:
        """Standby, the PIR quiet: wake the camera for a view of the empty
        scene (the older view the next event's first frame is judged by),
        its last frame after REFERENCE_SETTLE_S of settling."""
        self._next_reference_ns = self.clock.monotonic_ns() + int(self.config.filter.reference_every_s * NS)
        if self.pir.is_active:
            return
        self._ensure_running()
        settle = max(1, round(REFERENCE_SETTLE_S * self.config.hardware.camera.frame_rate))
        for _ in range(settle):
            try:
                frame = self.camera.next_frame()
            except CaptureFailed as exc:
                self._camera_failed(str(exc))
                return
            self.operating.observe_frame(frame)
            lores, _ = frame.lores_y, frame.release()
            if self.pir.has_pending():
                return
        self._older_views.add(self._night(), lores)
        self.references_taken += 1

    def _has_trigger_waiting(self, mode: str) -> bool:
        return self._timer_pending or (mode == STANDBY and self.pir.has_pending())

    def _drop_pir_edges(self) -> None:
        while self.pir.get() is not None:
            log.debug("PIR edge outside the operating windows: ignored")

    def _ensure_stopped(self) -> None:
        if self.camera.running:
            self._ring.clear()
            self.camera.stop()

    def _ensure_running(self) -> None:
        if not self.camera.running:
            self.camera.start()

    def _rebase(self, frame: Frame) -> None:
        """Light switched (lamp or day/night): older background frames no longer match."""
        self._ring.forget_lores()
        self.filter.rebase(frame.lores_y)
        self.operating.rebased()

    def _watch_wall_clock(self, frame: Frame) -> None:
        jump_ns = self._wall_watch.observe(frame.sensor_timestamp_ns, frame.wall_ns)
        if not jump_ns:
            return
        log.warning("wall clock jumped by %+.3f s (monotonic clock as reference); "
                    "recorded with the %s event", jump_ns / NS,
                    "current" if self._event else "next")
        if self._event is not None:
            self.store.add_wall_jump(self._event.record, jump_ns)
        else:
            self._wall_jump_ns += jump_ns

    # -- triggers ---------------------------------------------------------
    def _next_trigger(self) -> Trigger | None:
        mode = self.operating.mode()
        if self._timer_pending or (
                self._event is None and self.operating.timelapse_due()):
            self._timer_pending = False
            if self._event is None:
                return Trigger(TIMER, self.clock.monotonic_ns(), self.clock.wall_ns())
        if mode == IDLE:
            self._drop_pir_edges()
            return None
        while (trigger := self.pir.get()) is not None:
            if trigger.t_monotonic_ns >= self._quiet_until_ns:
                return trigger
            log.debug("PIR edge in the quiet period after an event: ignored")
        return None

    def _start_event(self, trigger: Trigger) -> None:
        clock_synced = self.clock.is_synchronised()
        record = self.store.open_event(self.station.station_id, self.station.deployment_id,
                                       trigger.source, trigger.t_monotonic_ns, trigger.t_wall_ns,
                                       clock_synced, self._wall_jump_ns)
        self._wall_jump_ns = 0
        timer = trigger.source == TIMER
        self._event = EventInFlight(record, trigger, 1 if timer else self.config.burst.frames,
                             self.sensors.read(), clock_synced)
        self.operating.event_started()
        if self.on_trigger:
            self.on_trigger(trigger, record.event_id)
        pre_trigger = [] if timer else self._ring.take_before(trigger.t_monotonic_ns)
        first_ns = pre_trigger[0].sensor_timestamp_ns if pre_trigger else trigger.t_monotonic_ns
        background = (self._ring.lores_before(first_ns)
                      or self._ring.lores_before(trigger.t_monotonic_ns))
        self.filter.set_background(evenly_spread(background, self.config.filter.background_frames))
        if not background and not timer:
            self._event.burst = BurstFilter(self.config.filter, self.config.hardware.camera,
                                            self._older_views.of(self._night()))
        for frame in pre_trigger:
            self._store_frame(frame, pre_trigger=True)

    def _extend(self, trigger: Trigger) -> None:
        event = self._event
        if trigger.source == TIMER:
            return  # the trap is recording anyway
        if event.trigger.source == TIMER:
            # A PIR edge during a timelapse shot: the shot ends, a PIR event opens.
            self._end_event()
            self._start_event(trigger)
            return
        event.frames_due = self.config.burst.frames
        event.tail = 0
        if self.on_trigger:
            self.on_trigger(trigger, event.record.event_id)
        fresh = trigger.t_monotonic_ns - event.last_edge_ns > self._interval_ns()
        event.last_edge_ns = trigger.t_monotonic_ns
        if not fresh:
            # A PIR chattering faster than the burst interval extends the event
            # but does not turn it into a frame-rate recording.
            return
        event.next_frame_ns = min(event.next_frame_ns, trigger.t_monotonic_ns)
        # The frames just before a new movement that the event did not store
        # are its pre-trigger frames too (every edge gets its view from before it).
        for frame in self._ring.take_before(trigger.t_monotonic_ns):
            self._store_frame(frame, pre_trigger=True)

    # -- frames -----------------------------------------------------------
    def _event_frame(self, frame: Frame, rebased: bool = False) -> None:
        event = self._event
        if frame.sensor_timestamp_ns - event.trigger.t_monotonic_ns >= self.config.trigger.max_event_s * NS:
            self._ring.push(frame)
            self._end_event()
            return
        if frame.sensor_timestamp_ns < event.next_frame_ns or event.frames_due <= 0:
            if event.burst is not None:
                event.burst.observe(frame.lores_y)
            self._ring.push(frame)
            if event.frames_due <= 0:
                event.tail -= 1
                if event.tail <= 0:
                    self._end_event()
            return
        self._store_frame(frame, pre_trigger=False, always_keep=rebased)
        event.frames_due -= 1
        event.next_frame_ns = frame.sensor_timestamp_ns + self._interval_ns()
        if event.frames_due == 0:
            if self.pir.is_active and event.trigger.source != TIMER:
                event.frames_due = self.config.burst.frames
            elif event.trigger.source != TIMER and self._ring.hold:
                # Stay open for as many frames as the ring holds: an edge now extends
                # the event and still gets its frames from before the edge.
                event.tail = self._ring.hold
            else:
                self._end_event()

    def _interval_ns(self) -> int:
        # Half a frame of slack so a 0.5 s interval at 10 fps takes every 5th frame.
        half_frame = int(NS / self.config.hardware.camera.frame_rate / 2)
        return max(0, int(self.config.burst.interval_s * NS) - half_frame)

    def _store_frame(self, frame: Frame, pre_trigger: bool, always_keep: bool = False) -> None:
        """Score the frame and hand its image (lent or copied out of the camera
        buffer) to a writer thread for encode + tag + save."""
        event = self._event
        event.sequence += 1
        # A timelapse shot is kept whatever moves; a frame the filter was just
        # rebased on cannot be judged (it is its own background), so it is kept.
        first_post = not pre_trigger and event.frames_taken == 0
        forced = (always_keep or event.trigger.source == TIMER
                  or (self.config.filter.keep_first_post_trigger and first_post))
        if not pre_trigger:
            event.frames_taken += 1
        waiting = UndecidedFrame(frame, event.sequence, pre_trigger, forced,
                             getattr(frame, "arrived_ns", None))
        if event.burst is None:
            # The camera frame just before this one (not stored, it is in the ring):
            # a change the filter finds must show there too.
            frame_ns = int(NS / self.config.hardware.camera.frame_rate)
            previous = self._ring.lores_just_before(frame.sensor_timestamp_ns, frame_ns * 3 // 2)
            self._submit(waiting, self.filter.score(frame.lores_y, previous))
            return
        event.undecided.append(waiting)
        self._submit_decided(event.burst.add(frame.lores_y))
        for undecided in event.undecided:
            undecided.hold()

    def _submit_decided(self, results) -> None:
        for result in results:
            self._submit(self._event.undecided.pop(0), result)

    def _submit(self, waiting: UndecidedFrame, result) -> None:
        event, frame = self._event, waiting.frame
        keep = result.keep or waiting.forced
        record = FrameRecord(
            event_number=event.record.number, sequence=waiting.sequence,
            sensor_timestamp_ns=frame.sensor_timestamp_ns, capture_wall_ns=frame.wall_ns,
            pre_trigger=waiting.pre_trigger, score=result.score, kept=keep,
            media_id=uuid.uuid4().hex, metadata=frame_metadata(frame.metadata, result))
        if self.debug:
            self.debug.frame(event.record.event_id, f"{waiting.sequence:02d}", frame.lores_y, result)
        if not result.keep and not result.light_change:
            self._older_views.add(self._night(), frame.lores_y)
        image = (waiting.image or self._image_of(frame)) if keep else None
        tag = self._tagger(frame, record, result.reference) if keep else None
        frame.release()

        def written(result_: Written) -> None:
            self.store.index_frame(record, result_.jpeg, result_.saved)
            event.report.frames.append(FrameOutcome(
                frame.sensor_timestamp_ns, result.score, keep, waiting.pre_trigger, result_.saved,
                waiting.arrived_ns, result_.stored_ns if result_.saved else None, result.reference))

        self.writer.submit(image, self.config.storage.jpeg_quality, tag,
                           self._file_name(record) if keep else None, written)

    def _night(self) -> bool:
        return self.operating.day_night.night

    def _image_of(self, frame: Frame) -> YuvCopy | LentMain:
        """The frame's camera buffer itself while the camera can spare it, else a copy."""
        return self.camera.lend_main(frame, lendable_buffers(self.config, self.camera.buffers)) or YuvCopy.of(frame)

    def _tagger(self, frame: Frame, record: FrameRecord, reference: str):
        """A function adding this frame's EXIF and XMP to its JPEG (run on a writer thread)."""
        event = self._event
        m = frame.metadata
        w, h = frame.main_size
        capture = CaptureInfo(
            wall_time_ns=record.capture_wall_ns, media_id=record.media_id,
            event_id=event.record.event_id, event_number=event.record.number,
            sequence=record.sequence,  # no total: the burst may still be extended
            capture_method=CAPTURE_METHOD.get(event.trigger.source, "activityDetection"),
            trigger_source=event.trigger.source, motion_score=round(record.score, 5),
            filter_reference=reference,
            width=w, height=h, exposure_time_us=m.get("ExposureTime"),
            analogue_gain=m.get("AnalogueGain"), digital_gain=m.get("DigitalGain"),
            lux=m.get("Lux"), temperature_c=event.readings.ambient_temperature_c,
            cpu_temperature_c=event.readings.cpu_temperature_c,
            battery_voltage_v=event.readings.battery_voltage_v,
            moon_phase=moon_phase(record.capture_wall_ns).name,
            clock_synchronised=event.clock_synced, pre_trigger=record.pre_trigger,
            sensor_timestamp_ns=record.sensor_timestamp_ns)
        exif, xmp = build_exif(self.station, capture), build_xmp(self.station, capture)
        return lambda jpeg: tag_jpeg(jpeg, exif, xmp)

    def _file_name(self, record: FrameRecord) -> str:
        when = local_time(record.capture_wall_ns, self.station.utc_offset)
        name = (f"{self.station.station_id}_{when:%Y%m%d_%H%M%S}_"
                f"E{record.event_number:06d}_{record.sequence:02d}.jpg")
        return f"{when:%Y-%m-%d}/{name}"

    def _end_event(self, note: str | None = None) -> None:
        """The event takes no more frames; it is closed once its frames are written,
        while the next event may already be recording (no dead time)."""
        if self._event.burst is not None:   # a frame still waiting: judged with what there is
            self._submit_decided(self._event.burst.finish())
        event, self._event = self._event, None
        event.note = note
        event.ended_wall_ns = self.clock.wall_ns()
        self._quiet_until_ns = self.clock.monotonic_ns() + int(self.config.trigger.quiet_period_s * NS)
        self.operating.event_ended()
        self._closing.append(event)
        self._marker_pending(event)
        self._collect_written()

    def _marker_pending(self, event: EventInFlight) -> None:
        """A place in the writer's order: all the event's frames are indexed before it."""
        self.writer.submit(None, 0, None, None, lambda _: setattr(event, "ended", True))

    def _collect_written(self) -> None:
        self.writer.collect()
        self._close_written_events()

    def _close_written_events(self) -> None:
        while self._closing and self._closing[0].ended:
            event = self._closing.pop(0)
            event.report.note = event.note
            self.store.close_event(event.record, event.ended_wall_ns, event.note)
            log.info(event.report.line())
            if self.debug:
                self.debug.end_sequence(event.record.event_id)
            if self.on_event:
                self.on_event(event.report)

    def _camera_failed(self, why: str) -> None:
        """End the event in flight; a PIR edge that came while the camera was
        failing becomes an event without images, so the record shows that
        something passed (PirTrigger keeps the earliest untaken edge). Then wait
        towards the camera's next attempt (its back-off), in waits of at most
        RETRY_WAIT_STEP_S that a PIR edge or a stop request (`wake`) cuts short;
        the caller steps again, and the camera is tried only when it is due."""
        self._ring.clear()
        missed = self._next_trigger()   # before _end_event restarts the quiet period
        ended = self._event is not None
        if ended:
            self._end_event(f"camera error: {why}")
        if missed is not None:
            self._start_event(missed)
            self._end_event(f"no images, camera unavailable: {why}")
        wait_s = min(self.camera.retry_in_s(), RETRY_WAIT_STEP_S)
        if ended or wait_s <= 0:
            return      # finish() may be stepping to close that event: no wait
        self.pir.edge.clear()
        if not self.pir.has_pending():
            self.clock.wait_for(self.pir.edge, wait_s)
