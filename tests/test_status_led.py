"""The status LED shows a degraded trap as a blink code (dark while healthy)."""

import threading
import time

from gpiozero.pins.mock import MockFactory

from trapd.health import CAMERA_UNAVAILABLE, STORAGE_FULL, Health
from trapd.status_led import TICK_S, StatusLed, blink_code, pattern


def flashes_since(pin, start, seconds):
    """How many times the LED lit from pin.states[start:] within `seconds` (real time)."""
    time.sleep(seconds)
    return sum(1 for s in pin.states[start:] if s.state)


def test_the_led_is_dark_while_healthy_and_blinks_the_code_of_the_worst_state():
    factory = MockFactory()
    led = StatusLed(17, factory)
    health = Health()
    health.listen(led.show)
    pin = factory.pin(17)
    assert flashes_since(pin, 0, 6 * TICK_S) == 0
    health.set(STORAGE_FULL, "0 MB free")
    start = len(pin.states)
    health.set(CAMERA_UNAVAILABLE, "no camera")
    assert led.code == blink_code({CAMERA_UNAVAILABLE: {}}) == 5
    assert flashes_since(pin, start, 14 * TICK_S) == 5       # five flashes, then a long pause
    health.clear(CAMERA_UNAVAILABLE)
    health.clear(STORAGE_FULL)
    time.sleep(2 * TICK_S)
    assert not pin.state and led.code == 0
    led.close()
    factory.close()


def test_the_pattern_repeats_its_flashes_every_period():
    values = [next(v) for v in [pattern(2)] for _ in range(160)]
    assert values[:5] == [1, 0, 1, 0, 0] and sum(values) == 4 and values[80:84] == [1, 0, 1, 0]


# -- status codes: at start-up and on demand (issue 18) ------------------------------

from trapd.daemon import Daemon  # noqa: E402
from trapd.status_led import (BATTERY_LOW, CARD_FULL, CLOCK_NOT_SYNCED, DEGRADED,  # noqa: E402
                              HEALTHY, NO_CAMERA, SHOW_S, STATUS_PATTERNS, status_code,
                              status_pattern)
from trapd.health import INDEX_FULL  # noqa: E402


def test_the_status_code_is_the_most_serious_that_holds():
    assert status_code({}, False, True) == HEALTHY
    assert status_code({}, False, None) == HEALTHY          # unknown sync is not flagged
    assert status_code({}, False, False) == CLOCK_NOT_SYNCED
    assert status_code({}, True, False) == BATTERY_LOW
    assert status_code({INDEX_FULL: {}}, True, False) == DEGRADED
    assert status_code({INDEX_FULL: {}, STORAGE_FULL: {}}, True, False) == CARD_FULL
    assert status_code({STORAGE_FULL: {}, CAMERA_UNAVAILABLE: {}}, True, False) == NO_CAMERA


def test_each_status_has_its_own_pattern_shown_for_about_ten_seconds():
    shapes = {tuple(p) for p in STATUS_PATTERNS.values()}
    assert len(shapes) == len(STATUS_PATTERNS) == 6
    for status in STATUS_PATTERNS:
        shown_s = len(status_pattern(status)) * TICK_S
        assert SHOW_S - 3 <= shown_s <= SHOW_S + 3 and status_pattern(status)[-1] == 0


def test_a_shown_status_plays_once_then_the_degraded_code_resumes_and_edges_flash():
    factory = MockFactory()
    led = StatusLed(17, factory)
    pin = factory.pin(17)
    led.show_status(CARD_FULL, seconds=0)          # one showing: 1 short flash, a pause
    assert flashes_since(pin, 0, 12 * TICK_S) == 1
    start = len(pin.states)
    led.flash()                                    # a PIR edge in the walk test
    assert flashes_since(pin, start, 4 * TICK_S) == 1
    led.close()
    factory.close()


def test_the_daemon_shows_the_status_code_at_start_up(bench, tmp_path):
    b = bench({"hardware": {"status_led_pin": 23}})
    b.clock.synchronised = False
    daemon = Daemon(None, b.config, b.trap)
    steps = iter(range(3))
    daemon.run(until=lambda: next(steps, None) is None)
    assert b.trap.status_led.status == CLOCK_NOT_SYNCED
    missing = bench({"hardware": {"status_led_pin": 23}}, present=False)
    Daemon(None, missing.config, missing.trap).run(until=lambda: True)
    assert missing.trap.status_led.status == NO_CAMERA


def test_a_chattering_pir_queues_only_a_few_flashes():
    factory = MockFactory()
    led = StatusLed(17, factory)
    pin = factory.pin(17)
    for _ in range(100):
        led.flash()
    assert flashes_since(pin, 0, 10 * TICK_S) == 3
    led.close()
    factory.close()


def test_a_healthy_dark_led_keeps_no_thread_ticking():
    """On a battery trap nothing should wake the CPU four times a second for a dark LED."""
    factory = MockFactory()
    before = set(threading.enumerate())
    led = StatusLed(17, factory)
    pin = factory.pin(17)
    led.show({})
    assert set(threading.enumerate()) == before
    led.flash()                                 # a walk-test edge: one flash, then dark again
    time.sleep(6 * TICK_S)
    assert flashes_since(pin, 0, 0) == 1 and not pin.state
    assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]
    led.close()
    factory.close()
