"""The status LED shows a degraded trap as a blink code (dark while healthy)."""

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
