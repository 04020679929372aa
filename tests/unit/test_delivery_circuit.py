"""The circuit breaker, on a clock the test moves by hand."""

from __future__ import annotations

from surge.delivery.circuit import Circuit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[Circuit, Clock]:
    clock = Clock()
    return Circuit(threshold=3, base_delay=1.0, max_delay=8.0, clock=clock), clock


def test_opens_after_threshold_consecutive_failures() -> None:
    circuit, _ = make()
    for _ in range(2):
        circuit.record_failure()
    assert circuit.admit() is None
    circuit.record_failure()
    assert circuit.is_open
    assert circuit.admit() == 1.0


def test_a_success_resets_the_failure_count() -> None:
    circuit, _ = make()
    circuit.record_failure()
    circuit.record_failure()
    circuit.record_success()
    circuit.record_failure()
    assert not circuit.is_open


def test_after_the_backoff_one_probe_goes_through_and_others_wait() -> None:
    circuit, clock = make()
    for _ in range(3):
        circuit.record_failure()
    clock.now += 1.0
    assert circuit.admit() is None  # the probe
    assert circuit.admit() is not None  # everyone else waits for its result
    circuit.record_success()
    assert circuit.admit() is None
    assert not circuit.is_open


def test_failed_probes_double_the_backoff_up_to_the_cap() -> None:
    circuit, clock = make()
    for _ in range(3):
        circuit.record_failure()
    delays = []
    for _ in range(5):
        delays.append(circuit.retry_after())
        clock.now += circuit.retry_after()
        started = clock()
        assert circuit.admit() is None
        circuit.record_failure(started)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_failures_of_attempts_started_before_opening_do_not_extend_it() -> None:
    circuit, clock = make()
    started = clock()
    clock.now += 0.1
    for _ in range(3):
        circuit.record_failure(started)
    # Ten more connections that were already under way fail as well.
    for _ in range(10):
        circuit.record_failure(started)
    assert circuit.retry_after() == 1.0
