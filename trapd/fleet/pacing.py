"""When the image sync runs next, and what it says about it.

A store that is down, full or refusing this trap is tried again after an
exponential back-off with jitter (so 500 traps do not come back at once),
up to a ceiling; a policy stop (outside the windows, battery, byte budget)
waits `interval_s`. The log gets one line when the state changes (paused,
with why; resumed, with how many attempts failed over how long), never one
per attempt.
"""

from __future__ import annotations

import logging
import random
from typing import Callable

log = logging.getLogger(__name__)

BACKOFF_CEILING_S = 3600.0
JITTER = 0.2      # each delay is drawn within +-20 % of its nominal value


class SyncPacing:
    def __init__(self, interval_s: float, ceiling_s: float = BACKOFF_CEILING_S,
                 rng: Callable[[], float] = random.random) -> None:
        self.interval_s = interval_s
        self.ceiling_s = max(ceiling_s, interval_s)
        self.rng = rng
        self.paused: str | None = None       # why the store cannot take images now
        self.failures = 0
        self._paused_since: float | None = None
        self._policy: str | None = None

    def after_run(self, result, now: float) -> float:
        """The time (monotonic seconds) the next run is due, after this one."""
        if result.store_problem:
            return self._failed(result.stopped, now)
        self._resumed(now)
        if result.uploaded or result.skipped:
            log.info(result.summary())
        if result.stopped != self._policy:
            if result.stopped:
                log.info("fleet: sync waits: %s", result.stopped)
            self._policy = result.stopped
        return now + (self.interval_s if result.stopped or result.problems else 0)

    def after_error(self, error: Exception, now: float) -> float:
        """An error the sync did not expect: paced like a store problem."""
        return self._failed(f"unexpected error: {type(error).__name__}: {error}", now)

    def _failed(self, why: str, now: float) -> float:
        self.failures += 1
        delay = self._delay()
        if why != self.paused:
            log.warning("fleet: sync paused: %s; next attempt in %.0f s (then backing off to at "
                        "most %.0f s)", why, delay, self.ceiling_s)
            self.paused = why
            if self._paused_since is None:
                self._paused_since = now
        return now + delay

    def _resumed(self, now: float) -> None:
        if self.paused is None:
            return
        log.warning("fleet: sync resumed after %d failed attempt(s) over %.0f s (last: %s)",
                    self.failures, now - self._paused_since, self.paused)
        self.paused, self.failures, self._paused_since = None, 0, None

    def _delay(self) -> float:
        nominal = min(self.ceiling_s, self.interval_s * 2 ** (self.failures - 1))
        return nominal * (1 - JITTER + 2 * JITTER * self.rng())
