"""Retrying: full-jitter exponential backoff never shorter than the portal's ``Retry-After``,
a budget on the time one batch may spend waiting, and the client-side rate limit; one policy
(``retrying``) and one retry log line (``log_retry``) for every portal client."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential

from bridge.adapters.portal_client.answers import Disposition, Verdict
from bridge.core.errors import PortalAuthError, PortalFatalError, PortalUnavailable


class _TransientError(Exception):
    """Internal: this attempt failed in a way a later attempt may not. Never leaves the client."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def raise_unless_ok(verdict: Verdict, retry_after: float | None = None) -> None:
    """Return on OK; otherwise raise what the disposition says (AUTH as PortalAuthError)."""
    if verdict.disposition is Disposition.OK:
        return
    if verdict.disposition is Disposition.RETRIABLE:
        raise _TransientError(verdict.reason, retry_after)
    if verdict.disposition is Disposition.AUTH:
        raise PortalAuthError(verdict.status, f"{verdict.kind}: {verdict.detail}")
    raise PortalFatalError(verdict.status, verdict.kind, verdict.detail)


class Backoff(Protocol):
    """The settings a backoff is built from (a portal client's, whichever portal)."""

    @property
    def backoff_initial(self) -> float: ...
    @property
    def backoff_max(self) -> float: ...


def jittered_backoff(
    settings: Backoff, random: Callable[[], float]
) -> Callable[[RetryCallState], float]:
    """Full jitter: uniform in [0, min(backoff_max, backoff_initial * 2**(attempt - 1)))."""
    ceiling = wait_exponential(multiplier=settings.backoff_initial, max=settings.backoff_max)
    return lambda state: random() * ceiling(state)


class RetryPolicy(Backoff, Protocol):
    """The settings a request's retries are built from (a portal client's, whichever portal)."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def max_batch_wait(self) -> float: ...
    @property
    def max_retry_after(self) -> float: ...


def retrying(
    settings: RetryPolicy,
    *,
    random: Callable[[], float],
    sleep: Callable[[float], None],
    before_sleep: Callable[[RetryCallState], None],
) -> Retrying:
    """The retries of one request, built from the settings now (never frozen): a transient
    failure is retried with jittered backoff (never earlier than ``Retry-After`` asks, capped
    at ``max_retry_after``), at most ``max_attempts`` times and until the waits of the request
    add up to ``max_batch_wait``; then PortalUnavailable. ``before_sleep`` notes each retry."""
    budget = settings.max_batch_wait
    wait = honour_retry_after(jittered_backoff(settings, random), settings.max_retry_after)
    attempts, waited = stop_after_attempt(settings.max_attempts), waited_for(budget)
    return Retrying(
        stop=lambda state: attempts(state) or waited(state),
        wait=lambda state: min(wait(state), max(0.0, budget - state.idle_for)),
        retry=retry_if_exception_type(_TransientError),
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=_give_up,
    )


def log_retry(log: Any, state: RetryCallState) -> None:
    """The log line of one retry: attempt, wait, reason (never the token, secret or data)."""
    failure = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "portal_retry",
        attempt=state.attempt_number,
        wait=round(state.upcoming_sleep, 3),
        reason=failure.reason if isinstance(failure, _TransientError) else None,
    )


def waited_for(budget: float) -> Callable[[RetryCallState], bool]:
    """A stop: the retries of one request have waited ``budget`` seconds in all."""
    return lambda state: state.idle_for >= budget


def honour_retry_after(
    backoff: Callable[[RetryCallState], float], cap: float
) -> Callable[[RetryCallState], float]:
    """Wait max(backoff, Retry-After capped at ``cap``): never earlier than the portal asked."""

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        asked = failure.retry_after if isinstance(failure, _TransientError) else None
        return max(backoff(state), min(asked, cap) if asked is not None else 0.0)

    return wait


class _Pacer:
    """Client-side rate limit: request starts at least ``1 / rate`` seconds apart, whichever
    thread starts them (the slot is booked under a lock, the wait is outside it)."""

    def __init__(
        self, rate: float, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def wait_turn(self) -> None:
        """Book the next free slot, then sleep until it comes."""
        if self._interval == 0.0:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            self._sleep(slot - now)


def _give_up(state: RetryCallState) -> None:
    """Retries ran out: PortalUnavailable with the attempt count and the last reason."""
    failure = state.outcome.exception() if state.outcome is not None else None
    reason = failure.reason if isinstance(failure, _TransientError) else "unknown"
    raise PortalUnavailable(state.attempt_number, reason) from failure
