"""Whether the daemon's work moves, for the systemd watchdog.

The watchdog ping must mean "the work goes on", not "a timer fired": a sync stuck in a database
driver that never returns, or a query waiting on a lock for ever, must stop the pings, so that
systemd kills and restarts the service (``WatchdogSec=`` in the unit). The work beats as it
moves: each chunk of rows read from the source, each batch recorded, each slice of a retry
wait. Between runs the daemon is idle, and idle is alive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Liveness:
    """Beats of the work in progress; thread-safe (the sync runs on the scheduler's thread,
    the watchdog job on another)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._last = clock()

    def beat(self) -> None:
        """The work moved."""
        now = self._clock()
        with self._lock:
            self._last = now

    @contextmanager
    def working(self) -> Iterator[None]:
        """The block is work that must keep beating (a sync)."""
        with self._lock:
            self._running += 1
            self._last = self._clock()
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

    def quiet_for(self) -> float | None:
        """Seconds since the work in progress last beat; None when no work is in progress."""
        with self._lock:
            if not self._running:
                return None
            return max(0.0, self._clock() - self._last)


def sliced(
    wait: Callable[[float], bool],
    beat: Callable[[], None],
    slice_seconds: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[float], bool]:
    """``wait`` (an ``Event.wait``: True once stopped) in slices of at most ``slice_seconds``,
    beating after each: a Retry-After of minutes is waiting, not being stuck."""

    def waited(seconds: float) -> bool:
        end = clock() + max(0.0, seconds)
        while True:
            left = end - clock()
            if left <= 0:
                return False
            if wait(min(left, slice_seconds)):
                return True
            beat()

    return waited
