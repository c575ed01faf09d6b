"""The PIR input: edges become timestamped triggers, from any thread."""

import threading

from hw_sim.pir import PirOutputPin
from trapd.clock import VirtualClock
from trapd.trigger import PIR, PirTrigger

PIN = 17


def test_a_rising_edge_becomes_a_trigger_stamped_at_the_edge(mock_factory):
    clock = VirtualClock()
    pir = PirTrigger(PIN, clock, mock_factory)
    clock.sleep(1.5)
    edge_ns = clock.monotonic_ns()
    mock_factory.pin(PIN).drive_high()
    clock.sleep(0.3)                       # the trap reads it later; the stamp is the edge's
    trigger = pir.get()
    assert trigger.source == PIR and trigger.t_monotonic_ns == edge_ns
    assert pir.get() is None


def test_the_falling_edge_is_not_a_trigger(mock_factory):
    pir = PirTrigger(PIN, VirtualClock(), mock_factory)
    pin = mock_factory.pin(PIN)
    pin.drive_high()
    pin.drive_low()
    assert pir.get() is not None and pir.get() is None


def test_edges_from_another_thread_coalesce_into_the_earliest_untaken_one(mock_factory):
    clock = VirtualClock()
    pir = PirTrigger(PIN, clock, mock_factory)
    pin = mock_factory.pin(PIN)
    first_ns = clock.monotonic_ns()

    def chatter():
        for _ in range(50):
            pin.drive_high()
            pin.drive_low()
            clock.sleep(0.001)

    thread = threading.Thread(target=chatter)
    thread.start()
    trigger = pir.get(timeout_s=2.0)
    thread.join()
    assert trigger.t_monotonic_ns == first_ns
    taken = 1 + (pir.get() is not None)
    assert taken + pir.coalesced_edges == 50     # every edge is a trigger or counted
    pin.drive_high()                              # an edge after the backlog is taken
    assert pir.get().t_monotonic_ns == clock.monotonic_ns() and pir.get() is None


def test_a_pir_already_high_at_start_counts_as_a_trigger(mock_factory):
    mock_factory.pin(PIN, pin_class=PirOutputPin).drive_high()   # an animal there at boot
    pir = PirTrigger(PIN, VirtualClock(), mock_factory)
    assert pir.is_active and pir.get() is not None


def test_a_pir_low_at_start_is_no_trigger(mock_factory):
    mock_factory.pin(PIN, pin_class=PirOutputPin)
    assert PirTrigger(PIN, VirtualClock(), mock_factory).get() is None
