"""The one retry policy of every portal client (``retries.retrying``): a transient failure is
retried with jittered backoff never shorter than ``Retry-After`` (capped), at most
``max_attempts`` times and within ``max_batch_wait``, then PortalUnavailable; each retry is
noted and logged with ids and reasons only; both clients' settings fit it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from structlog.testing import capture_logs
from tenacity import RetryCallState

from bridge import logs
from bridge.adapters.dnevnik.settings import DnevnikSettings
from bridge.adapters.portal_client.retries import (
    RetryPolicy,
    _TransientError,
    log_retry,
    retrying,
)
from bridge.adapters.portal_client.settings import PortalSettings
from bridge.core.errors import PortalFatalError, PortalUnavailable


@dataclass
class Policy:
    max_attempts: int = 4
    max_batch_wait: float = 100.0
    max_retry_after: float = 30.0
    backoff_initial: float = 1.0
    backoff_max: float = 8.0


class Failing:
    """Fails transiently ``times`` times (asking ``retry_after``), then answers "done"."""

    def __init__(self, times: int, retry_after: float | None = None) -> None:
        self.times, self.retry_after, self.calls = times, retry_after, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise _TransientError(f"503 try {self.calls}", self.retry_after)
        return "done"


def run(policy: RetryPolicy, attempt: Failing, random: float = 1.0) -> tuple[object, list[float]]:
    slept: list[float] = []
    noted: list[RetryCallState] = []
    policy_run = retrying(
        policy, random=lambda: random, sleep=slept.append, before_sleep=noted.append
    )
    result = policy_run(attempt)
    assert len(noted) == len(slept)
    return result, slept


def test_a_transient_failure_is_retried_with_growing_capped_backoff() -> None:
    """Three failures, then the answer: waits 1, 2, 4 s (full jitter at its ceiling)."""
    assert run(Policy(), Failing(3)) == ("done", [1.0, 2.0, 4.0])
    assert run(Policy(backoff_max=1.5), Failing(3))[1] == [1.0, 1.5, 1.5]


def test_the_wait_is_never_shorter_than_retry_after_and_that_is_capped() -> None:
    """Retry-After 5 s is honoured over a shorter backoff; 90 s is capped at max_retry_after."""
    assert run(Policy(), Failing(1, retry_after=5.0))[1] == [5.0]
    assert run(Policy(), Failing(1, retry_after=90.0))[1] == [30.0]


def test_retries_run_out_as_portal_unavailable_with_the_count_and_reason() -> None:
    """Every attempt failing: PortalUnavailable after max_attempts, naming the last reason."""
    attempt = Failing(10)
    with pytest.raises(PortalUnavailable, match="503 try 4") as raised:
        run(Policy(), attempt)
    assert attempt.calls == 4
    assert raised.value.attempts == 4


def test_the_waits_of_one_request_stay_within_the_budget() -> None:
    """A budget of 5 s: the waits add up to 5 s at most, then it gives up."""
    slept: list[float] = []
    policy = retrying(
        Policy(max_attempts=100, max_batch_wait=5.0),
        random=lambda: 1.0,
        sleep=slept.append,
        before_sleep=lambda _: None,
    )
    with pytest.raises(PortalUnavailable):
        policy(Failing(100, retry_after=3.0))
    assert sum(slept) <= 5.0
    assert slept == [3.0, 2.0]


def test_only_transient_failures_are_retried() -> None:
    """A fatal answer goes out at once, untried again."""
    calls: list[int] = []

    def fatal() -> None:
        calls.append(1)
        raise PortalFatalError(400, "parameterInvalid", "bad")

    with pytest.raises(PortalFatalError):
        retrying(Policy(), random=lambda: 1.0, sleep=lambda _: None, before_sleep=lambda _: None)(
            fatal
        )
    assert calls == [1]


def test_a_retry_is_logged_with_attempt_wait_and_reason_only() -> None:
    """The retry line carries the attempt, the wait and the reason, nothing else."""
    log = logs.get_logger(component="test")
    with capture_logs() as captured:
        retrying(
            Policy(),
            random=lambda: 0.5,
            sleep=lambda _: None,
            before_sleep=lambda state: log_retry(log, state),
        )(Failing(1))
    (line,) = captured
    assert {k: v for k, v in line.items() if k != "component"} == {
        "event": "portal_retry",
        "log_level": "warning",
        "attempt": 1,
        "wait": 0.5,
        "reason": "503 try 1",
    }


def test_both_clients_settings_drive_the_policy() -> None:
    """The reference client's settings and dnevnik.ru's each set the number of attempts."""
    reference = PortalSettings(
        base_url="http://127.0.0.1:1/", school="1", client_id="c", client_secret="s"
    )
    dnevnik = DnevnikSettings(base_url="http://127.0.0.1:1/v2/", school="1", token="t")
    for settings in (reference, dnevnik):
        attempt = Failing(1_000)
        policy = retrying(
            settings, random=lambda: 0.0, sleep=lambda _: None, before_sleep=lambda _: None
        )
        with pytest.raises(PortalUnavailable):
            policy(attempt)
        assert attempt.calls == settings.max_attempts
