"""Camera faults hw_sim's rig does not make, made at trapd's seams (the Picamera2
class, the clock) for tests and bench/camera_faults.py."""

from __future__ import annotations

from trapd.clock import VirtualClock


def failing_captures(picamera2_class: type) -> type:
    """The rig's Picamera2 class with one more fault: while `failing` is true,
    every capture raises at once (no wait) while opens still work. `attempts`
    holds the clock time of every capture tried."""

    class FailingCaptures(picamera2_class):
        failing = True
        attempts: list[int] = []

        def capture_request(self, wait=None, signal_function=None, flush=None):
            FailingCaptures.attempts.append(self._clock.monotonic_ns())
            if FailingCaptures.failing:
                raise RuntimeError("Failed to queue buffer for device: Invalid argument")
            return super().capture_request(wait=wait, signal_function=signal_function,
                                           flush=flush)

    FailingCaptures.__module__ = picamera2_class.__module__   # its MappedArray, as on a Pi
    return FailingCaptures


class FailingWaits(VirtualClock):
    """A clock on which every wait fails: `sleep` and `wait_for` give up after
    at most 50 ms, whatever they were asked (as if always interrupted), and
    `wait_for` says its event never came. The simulated hardware's own time
    (`advance_to`) still runs."""

    MOST_S = 0.05

    def sleep(self, seconds):
        super().sleep(min(seconds, self.MOST_S))

    def wait_for(self, event, timeout_s):
        super().wait_for(event, min(timeout_s, self.MOST_S))
        return False
