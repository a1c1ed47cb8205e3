"""The watchdog's liveness: idle is alive, a run is alive while it beats, a long wait beats."""

from __future__ import annotations

from bridge.service.liveness import Liveness, sliced


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_idle_is_alive_and_a_run_is_quiet_since_its_last_beat() -> None:
    clock = Clock()
    alive = Liveness(clock)
    assert alive.quiet_for() is None
    with alive.working():
        clock.now += 30
        assert alive.quiet_for() == 30
        alive.beat()
        clock.now += 4
        assert alive.quiet_for() == 4
    assert alive.quiet_for() is None


def test_a_long_wait_is_waited_in_slices_that_beat_and_a_stop_ends_it() -> None:
    clock, beats, asked = Clock(), [], []

    def wait(seconds: float) -> bool:  # an Event.wait that is never set
        asked.append(seconds)
        clock.now += seconds
        return False

    assert sliced(wait, lambda: beats.append(clock.now), 5.0, clock)(12.0) is False
    assert asked == [5.0, 5.0, 2.0]
    assert len(beats) == 3

    def stopped(seconds: float) -> bool:
        return True

    assert sliced(stopped, lambda: beats.append(0.0), 5.0, clock)(60.0) is True
    assert len(beats) == 3  # stopped in the first slice: no beat after it
