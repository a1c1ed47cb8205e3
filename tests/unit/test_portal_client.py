"""PortalClient over a mocked HTTP layer: classification, retries and waits, auth, rate limit."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import requests
import responses
from structlog.testing import capture_logs

from bridge.adapters.portal_client import (
    Disposition,
    PortalClient,
    PortalSettings,
    classify,
    classify_result,
    parse_retry_after,
)
from bridge.adapters.portal_client import client as client_module
from bridge.adapters.portal_client.wire import encode_batch
from bridge.core.errors import PortalAuthError, PortalFatalError, PortalUnavailable
from bridge.ports import Operation, OperationResult

BASE = "https://portal.example"
SECRET = "s3cr3t-client-value"
TOKEN = "tok-AAA"
TOKEN_URL = f"{BASE}/oauth/token"
BATCH_URL = f"{BASE}/api/v1/schools/school-7/batch"
NOW = datetime(2025, 1, 6, 12, 0, 0, tzinfo=UTC)


class FakeTime:
    """A clock that moves only when slept on; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        """The current reading."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Record the wait and advance the clock by it."""
        self.sleeps.append(seconds)
        self.now += seconds


def settings(**overrides: Any) -> PortalSettings:
    """Settings for the mocked portal, with ``overrides``."""
    values: dict[str, Any] = {
        "base_url": BASE,
        "school": "school-7",
        "client_id": "bridge",
        "client_secret": SECRET,
    }
    return PortalSettings(**(values | overrides))


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """Every request goes to ``responses``; each registered answer must be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def fake_time() -> FakeTime:
    """Injected clock and sleep."""
    return FakeTime()


@pytest.fixture
def make(fake_time: FakeTime) -> Iterator[Callable[..., PortalClient]]:
    """Builds clients on the fake time (jitter fixed at 0.5) and closes them afterwards."""
    built: list[PortalClient] = []

    def build(**overrides: Any) -> PortalClient:
        client = PortalClient(
            settings(**overrides),
            sleep=fake_time.sleep,
            clock=fake_time.clock,
            now=lambda: NOW,
            random=lambda: 0.5,
        )
        built.append(client)
        return client

    yield build
    for client in built:
        client.close()


@pytest.fixture
def client(make: Callable[..., PortalClient]) -> PortalClient:
    """A client with default settings."""
    return make()


def put(op_id: str, key: str = "p1", entity: str = "pupil") -> Operation:
    """A PUT with some personal data in it."""
    return Operation(
        op_id,
        "PUT",
        entity,
        key,
        "fp-" + key,
        {"last_name": "Иванова", "birth_date": date(2012, 3, 4), "value": 5},
    )


def ok(op_id: str) -> dict[str, Any]:
    """A successful per-operation result."""
    return {"id": op_id, "status": 200}


def token(mocked: responses.RequestsMock, value: str = TOKEN, expires_in: int = 3600) -> None:
    """Register one successful token answer."""
    mocked.post(
        TOKEN_URL, json={"access_token": value, "token_type": "Bearer", "expires_in": expires_in}
    )


def results(mocked: responses.RequestsMock, *items: dict[str, Any]) -> None:
    """Register one 200 batch answer with ``items``."""
    mocked.post(BATCH_URL, json={"results": list(items)})


def failure(
    mocked: responses.RequestsMock,
    status: int,
    kind: str = "serverError",
    headers: dict[str, str] | None = None,
) -> None:
    """Register one JSON error answer on the batch endpoint."""
    mocked.post(
        BATCH_URL, status=status, json={"type": kind, "description": "try later"}, headers=headers
    )


def batch_calls(mocked: responses.RequestsMock) -> list[Any]:
    """Recorded calls to the batch endpoint."""
    return [c for c in mocked.calls if c.request.url == BATCH_URL]


# --- the pure policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"results": []}, Disposition.OK),
        (200, None, Disposition.RETRIABLE),
        (401, {"type": "tokenExpired"}, Disposition.AUTH),
        (408, None, Disposition.RETRIABLE),
        (429, {"type": "tooManyRequests"}, Disposition.RETRIABLE),
        (500, {"type": "serverError"}, Disposition.RETRIABLE),
        (502, None, Disposition.RETRIABLE),
        (503, {"type": "unavailable"}, Disposition.RETRIABLE),
        (504, None, Disposition.RETRIABLE),
        (400, {"type": "badRequest"}, Disposition.FATAL),
        (403, {"type": "forbidden"}, Disposition.FATAL),
        (404, None, Disposition.FATAL),
        (413, {"type": "payloadTooLarge"}, Disposition.FATAL),
        (301, None, Disposition.FATAL),
        (501, None, Disposition.FATAL),
    ],
)
def test_classify_maps_each_status_to_its_disposition(
    status: int, body: object, expected: Disposition
) -> None:
    """classify follows the table in the module docstring."""
    assert classify(status, "application/json", body).disposition is expected


def test_classify_describes_a_non_json_body_by_content_type_only() -> None:
    """An HTML error page is described by its media type, never by its text."""
    verdict = classify(502, "text/html; charset=utf-8", None)
    assert (verdict.kind, verdict.detail) == ("nonJson", "text/html body")
    assert verdict.reason == "HTTP 502 nonJson: text/html body"


def test_classify_carries_the_portal_type_and_description() -> None:
    """A JSON error body gives the verdict its type and description."""
    verdict = classify(403, "application/json", {"type": "forbidden", "description": "no"})
    assert (verdict.status, verdict.kind, verdict.detail) == (403, "forbidden", "no")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Disposition.OK),
        (201, Disposition.OK),
        (204, Disposition.OK),
        (404, Disposition.REJECTED),
        (409, Disposition.REJECTED),
        (422, Disposition.REJECTED),
        (429, Disposition.RETRIABLE),
        (500, Disposition.RETRIABLE),
        (503, Disposition.RETRIABLE),
        (302, Disposition.RETRIABLE),
        (0, Disposition.RETRIABLE),
    ],
)
def test_classify_result_maps_per_operation_statuses(status: int, expected: Disposition) -> None:
    """Per operation: 2xx ok, 4xx rejects the record, 429/5xx/nonsense retries the batch."""
    assert classify_result(status) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("Mon, 06 Jan 2025 12:00:42 GMT", 42.0),
        ("Mon, 06 Jan 2025 11:00:00 GMT", 0.0),
        ("soon", None),
        ("-3", None),
        (None, None),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(
    header: str | None, expected: float | None
) -> None:
    """Retry-After as delay-seconds or an HTTP date; a past date is 0; nonsense is None."""
    assert parse_retry_after(header, NOW) == expected


# --- success and per-record rejections -----------------------------------------------------------


def test_send_returns_one_ok_result_per_operation(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """A 200 batch answer becomes ok results in order, with no waits."""
    token(mocked)
    results(mocked, ok("1"), ok("2"))
    got = client.send([put("1", "p1"), Operation("2", "DELETE", "mark", "m9")])
    assert got == [OperationResult("1", True, 200), OperationResult("2", True, 200)]
    assert fake_time.sleeps == []


def test_send_writes_the_wire_format_with_bearer_token(
    mocked: responses.RequestsMock, client: PortalClient
) -> None:
    """The batch carries the bearer token, JSON operations, and dates as ISO strings."""
    token(mocked)
    results(mocked, ok("1"), ok("2"))
    client.send([put("1", "p1"), Operation("2", "DELETE", "mark", "m9")])
    token_form = mocked.calls[0].request.body
    assert "grant_type=client_credentials" in token_form
    request = batch_calls(mocked)[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body)["operations"] == [
        {
            "id": "1",
            "method": "PUT",
            "entity": "pupil",
            "sourcedId": "p1",
            "fingerprint": "fp-p1",
            "data": {"last_name": "Иванова", "birth_date": "2012-03-04", "value": 5},
        },
        {
            "id": "2",
            "method": "DELETE",
            "entity": "mark",
            "sourcedId": "m9",
            "fingerprint": None,
            "data": None,
        },
    ]


def test_token_is_reused_across_batches(
    mocked: responses.RequestsMock, client: PortalClient
) -> None:
    """One token serves several batches while it is fresh."""
    token(mocked)
    results(mocked, ok("1"))
    results(mocked, ok("2"))
    client.send([put("1")])
    client.send([put("2")])
    assert [c.request.url for c in mocked.calls] == [TOKEN_URL, BATCH_URL, BATCH_URL]


def test_rejections_are_per_record_alongside_ok_operations(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """422 and 409 reject only their records; the batch is not retried."""
    token(mocked)
    results(
        mocked,
        ok("1"),
        {"id": "2", "status": 422, "type": "grade1Mark", "description": "grade 1"},
        {"id": "3", "status": 409, "type": "hasDependents", "description": "has marks"},
    )
    got = client.send([put("1"), put("2", "p2"), put("3", "p3")])
    assert got == [
        OperationResult("1", True, 200),
        OperationResult("2", False, 422, "grade1Mark", "grade 1"),
        OperationResult("3", False, 409, "hasDependents", "has marks"),
    ]
    assert fake_time.sleeps == []
    assert len(batch_calls(mocked)) == 1


def test_empty_batch_makes_no_request(mocked: responses.RequestsMock, client: PortalClient) -> None:
    """Sending nothing asks nothing of the portal."""
    assert client.send([]) == []
    assert len(mocked.calls) == 0


def test_oversized_batch_and_unknown_method_are_programming_errors(client: PortalClient) -> None:
    """More operations than batch_size, or a method other than PUT/DELETE, is a ValueError."""
    with pytest.raises(ValueError, match="batch_size"):
        client.send([put(str(i)) for i in range(501)])
    with pytest.raises(ValueError, match="PUT or DELETE"):
        client.send([Operation("1", "POST", "pupil", "p1")])


# --- retriable answers and their waits -----------------------------------------------------------


def test_429_waits_retry_after_seconds(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """Retry-After in seconds is honoured exactly when it exceeds the backoff."""
    token(mocked)
    failure(mocked, 429, "tooManyRequests", {"Retry-After": "7"})
    results(mocked, ok("1"))
    assert client.send([put("1")])[0].ok
    assert fake_time.sleeps == [7.0]


def test_429_waits_until_the_retry_after_http_date(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """Retry-After as an HTTP date is measured against the injected now()."""
    token(mocked)
    failure(mocked, 429, "tooManyRequests", {"Retry-After": "Mon, 06 Jan 2025 12:00:42 GMT"})
    results(mocked, ok("1"))
    assert client.send([put("1")])[0].ok
    assert fake_time.sleeps == [42.0]


def test_retry_after_is_capped(
    mocked: responses.RequestsMock, make: Callable[..., PortalClient], fake_time: FakeTime
) -> None:
    """A Retry-After beyond max_retry_after waits only the cap."""
    client = make(max_retry_after=60.0)
    token(mocked)
    failure(mocked, 429, "tooManyRequests", {"Retry-After": "86400"})
    results(mocked, ok("1"))
    client.send([put("1")])
    assert fake_time.sleeps == [60.0]


def test_backoff_wins_when_longer_than_retry_after(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """wait = max(backoff, Retry-After): a short Retry-After does not shorten the backoff."""
    token(mocked)
    for _ in range(3):
        failure(mocked, 503, headers={"Retry-After": "0"})
    results(mocked, ok("1"))
    client.send([put("1")])
    assert fake_time.sleeps == [0.25, 0.5, 1.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_with_jittered_exponential_backoff(
    status: int, mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """5xx is retried; waits are jitter (0.5) x 0.5 x 2**n."""
    token(mocked)
    for _ in range(3):
        failure(mocked, status)
    results(mocked, ok("1"))
    assert client.send([put("1")]) == [OperationResult("1", True, 200)]
    assert fake_time.sleeps == [0.25, 0.5, 1.0]
    assert len(batch_calls(mocked)) == 4


def test_html_error_page_is_retried_without_crashing(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """A proxy's HTML 502 page is a retriable failure, not a parse error."""
    token(mocked)
    mocked.post(
        BATCH_URL, status=502, body="<html><h1>Bad Gateway</h1></html>", content_type="text/html"
    )
    results(mocked, ok("1"))
    assert client.send([put("1")])[0].ok
    assert fake_time.sleeps == [0.25]


def test_html_404_is_fatal_without_crashing(
    mocked: responses.RequestsMock, client: PortalClient
) -> None:
    """A 404 HTML page (wrong base URL) is fatal and described by its content type."""
    token(mocked)
    mocked.post(BATCH_URL, status=404, body="<html>Not found</html>", content_type="text/html")
    with pytest.raises(PortalFatalError) as caught:
        client.send([put("1")])
    assert (caught.value.status, caught.value.kind) == (404, "nonJson")
    assert caught.value.detail == "text/html body"


def test_redirect_is_fatal_and_not_followed(
    mocked: responses.RequestsMock, client: PortalClient
) -> None:
    """A 3xx is not followed (a POST must not turn into a GET elsewhere): PortalFatalError."""
    token(mocked)
    mocked.post(BATCH_URL, status=302, headers={"Location": f"{BASE}/login"})
    with pytest.raises(PortalFatalError) as caught:
        client.send([put("1")])
    assert caught.value.status == 302
    assert len(mocked.calls) == 2


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError("refused"),
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectTimeout("connect timed out"),
        requests.exceptions.ChunkedEncodingError("connection reset by peer"),
    ],
)
def test_transport_failures_are_retried(
    exc: Exception, mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """Connection errors, resets and timeouts are retried."""
    token(mocked)
    mocked.post(BATCH_URL, body=exc)
    results(mocked, ok("1"))
    assert client.send([put("1")])[0].ok
    assert fake_time.sleeps == [0.25]
    assert client.stats.outcomes[type(exc).__name__] == 1


def test_tls_failure_is_fatal_and_not_retried(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """A certificate failure cannot heal by waiting: PortalFatalError with status 0."""
    mocked.post(TOKEN_URL, body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(PortalFatalError) as caught:
        client.send([put("1")])
    assert (caught.value.status, caught.value.kind) == (0, "tlsFailed")
    assert isinstance(caught.value.__cause__, requests.exceptions.SSLError)
    assert fake_time.sleeps == []


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "not json at all", "content_type": "text/plain"},
        {"json": {"results": [{"id": "1", "status": 200}]}},
        {"json": {"results": [{"id": "2", "status": 200}, {"id": "1", "status": 200}]}},
        {"json": {"results": [{"id": "1"}, {"id": "2", "status": 200}]}},
        {"json": {"something": "else"}},
    ],
)
def test_garbled_200_is_retried(
    answer: dict[str, Any],
    mocked: responses.RequestsMock,
    client: PortalClient,
    fake_time: FakeTime,
) -> None:
    """A 200 that is not JSON, or whose results do not match the operations, is resent."""
    token(mocked)
    mocked.post(BATCH_URL, **answer)
    results(mocked, ok("1"), ok("2"))
    assert [r.ok for r in client.send([put("1"), put("2", "p2")])] == [True, True]
    assert fake_time.sleeps == [0.25]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_retriable_status_for_one_operation_resends_the_batch(
    status: int, mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """A per-operation 429 or 5xx makes the whole (idempotent) batch retriable."""
    token(mocked)
    results(mocked, ok("1"), {"id": "2", "status": status, "type": "busy"})
    results(mocked, ok("1"), ok("2"))
    assert [r.ok for r in client.send([put("1"), put("2", "p2")])] == [True, True]
    assert len(batch_calls(mocked)) == 2
    assert fake_time.sleeps == [0.25]


def test_retries_exhausted_raise_portal_unavailable(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """After max_attempts failures: PortalUnavailable with the count and the last reason."""
    token(mocked)
    for _ in range(8):
        failure(mocked, 503, "unavailable")
    with pytest.raises(PortalUnavailable) as caught:
        client.send([put("1")])
    assert caught.value.attempts == 8
    assert caught.value.last == "HTTP 503 unavailable: try later"
    assert fake_time.sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0]
    assert client.stats.retries == 7


def test_retry_settings_are_read_per_call(
    mocked: responses.RequestsMock, make: Callable[..., PortalClient], fake_time: FakeTime
) -> None:
    """max_attempts and backoff come from this client's settings, not import-time constants."""
    client = make(max_attempts=2, backoff_initial=2.0)
    token(mocked)
    failure(mocked, 500)
    failure(mocked, 500)
    with pytest.raises(PortalUnavailable) as caught:
        client.send([put("1")])
    assert caught.value.attempts == 2
    assert fake_time.sleeps == [1.0]


# --- authentication ------------------------------------------------------------------------------


def test_expired_token_is_refreshed_once(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """401 tokenExpired: fetch a new token and resend the batch with it, without waiting."""
    token(mocked, "tok-old")
    failure(mocked, 401, "tokenExpired")
    token(mocked, "tok-new")
    results(mocked, ok("1"))
    assert client.send([put("1")])[0].ok
    assert batch_calls(mocked)[-1].request.headers["Authorization"] == "Bearer tok-new"
    assert fake_time.sleeps == []
    assert client.stats.token_fetches == 2


def test_second_401_raises_portal_auth_error(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """A 401 on the resend with a fresh token is PortalAuthError; nothing more is tried."""
    token(mocked)
    failure(mocked, 401, "authorizationFailed")
    token(mocked)
    failure(mocked, 401, "authorizationFailed")
    with pytest.raises(PortalAuthError) as caught:
        client.send([put("1")])
    assert caught.value.status == 401
    assert len(batch_calls(mocked)) == 2
    assert fake_time.sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_raise_portal_auth_error(
    status: int, mocked: responses.RequestsMock, client: PortalClient
) -> None:
    """A 401 or 403 from the token endpoint is PortalAuthError, also from authenticate()."""
    mocked.post(
        TOKEN_URL,
        status=status,
        json={"type": "authorizationFailed", "description": "unknown client"},
    )
    with pytest.raises(PortalAuthError) as caught:
        client.authenticate()
    assert caught.value.status == status
    assert caught.value.detail == "authorizationFailed: unknown client"


def test_authenticate_fetches_a_token_now(
    mocked: responses.RequestsMock, client: PortalClient
) -> None:
    """authenticate() fetches a token, which the next batch then uses."""
    token(mocked)
    results(mocked, ok("1"))
    client.authenticate()
    client.send([put("1")])
    assert [c.request.url for c in mocked.calls] == [TOKEN_URL, BATCH_URL]


def test_token_endpoint_outage_is_retried(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """A 503 from the token endpoint is retriable like any other request."""
    mocked.post(TOKEN_URL, status=503, body="<html>down</html>", content_type="text/html")
    token(mocked)
    results(mocked, ok("1"))
    assert client.send([put("1")])[0].ok
    assert fake_time.sleeps == [0.25]


def test_token_is_refreshed_proactively_near_expiry(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """With 30 s or less left, a new token is fetched before the request; with more, not."""
    token(mocked, "tok-1", expires_in=100)
    results(mocked, ok("1"))
    results(mocked, ok("2"))
    token(mocked, "tok-2", expires_in=100)
    results(mocked, ok("3"))
    client.send([put("1")])
    fake_time.now += 69.0  # 31 s left
    client.send([put("2")])
    fake_time.now += 1.0  # 30 s left
    client.send([put("3")])
    auth = [c.request.headers["Authorization"] for c in batch_calls(mocked)]
    assert auth == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


# --- fatal answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "badRequest"), (403, "forbidden"), (404, "notFound"), (413, "payloadTooLarge")],
)
def test_fatal_statuses_raise_without_retry(
    status: int,
    kind: str,
    mocked: responses.RequestsMock,
    client: PortalClient,
    fake_time: FakeTime,
) -> None:
    """400/403/404/413 on the batch itself: PortalFatalError at once, no resend, no wait."""
    token(mocked)
    failure(mocked, status, kind)
    with pytest.raises(PortalFatalError) as caught:
        client.send([put("1")])
    assert (caught.value.status, caught.value.kind, caught.value.detail) == (
        status,
        kind,
        "try later",
    )
    assert len(batch_calls(mocked)) == 1
    assert fake_time.sleeps == []


# --- rate limit, transport settings, statistics --------------------------------------------------


def test_rate_limit_spaces_requests(
    mocked: responses.RequestsMock, make: Callable[..., PortalClient], fake_time: FakeTime
) -> None:
    """rate_limit=4 starts requests at least 0.25 s apart; time already passed counts."""
    client = make(rate_limit=4.0)
    token(mocked)
    for i in range(3):
        results(mocked, ok(str(i)))
    client.send([put("0")])
    client.send([put("1")])
    fake_time.now += 10.0
    client.send([put("2")])
    assert fake_time.sleeps == [0.25, 0.25]


def test_unlimited_rate_never_sleeps(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """rate_limit=0 means no pacing."""
    token(mocked)
    for i in range(3):
        results(mocked, ok(str(i)))
    for i in range(3):
        client.send([put(str(i))])
    assert fake_time.sleeps == []


@pytest.mark.parametrize("verify", [True, False, "/etc/ssl/school-ca.pem"])
def test_tls_verify_and_timeouts_reach_requests(
    verify: bool | str,
    mocked: responses.RequestsMock,
    make: Callable[..., PortalClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every request gets verify from the settings and explicit (connect, read) timeouts."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests turns True into these
        monkeypatch.delenv(name, raising=False)
    client = make(verify=verify, connect_timeout=2.0, read_timeout=9.0)
    token(mocked)
    results(mocked, ok("1"))
    client.send([put("1")])
    for call in mocked.calls:
        assert call.request.req_kwargs["verify"] == verify
        assert call.request.req_kwargs["timeout"] == (2.0, 9.0)


def test_borrowed_session_is_used_and_left_open(mocked: responses.RequestsMock) -> None:
    """An injected session carries the requests; close() leaves it to its owner."""
    with requests.Session() as session:
        client = PortalClient(settings(), session=session, sleep=FakeTime().sleep)
        token(mocked)
        results(mocked, ok("1"))
        client.send([put("1")])
        client.close()
        assert session.adapters  # still usable: not closed by the client
        assert mocked.calls[1].request.headers["User-Agent"].startswith("asiou-bridge/")


def test_stats_count_requests_retries_and_outcomes(
    mocked: responses.RequestsMock, client: PortalClient
) -> None:
    """stats counts exchanges, retry sleeps, token fetches and outcomes by status."""
    token(mocked)
    failure(mocked, 503)
    results(mocked, ok("1"))
    client.send([put("1")])
    stats = client.stats
    assert (stats.requests, stats.retries, stats.token_fetches) == (3, 1, 1)
    assert dict(stats.outcomes) == {"200": 2, "503": 1}


# --- secrets and personal data -------------------------------------------------------------------


def test_secret_is_not_in_settings_repr() -> None:
    """repr(settings) shows everything but the client secret."""
    text = repr(settings())
    assert SECRET not in text
    assert "client_id='bridge'" in text


def test_no_secret_token_or_data_in_errors_or_logs(
    mocked: responses.RequestsMock, make: Callable[..., PortalClient]
) -> None:
    """Exceptions and retry logs carry neither the secret, the token nor operation data."""
    client = make(max_attempts=2)
    texts: list[str] = []
    token(mocked)
    failure(mocked, 503)
    failure(mocked, 401, "tokenExpired")
    mocked.post(TOKEN_URL, status=401, json={"type": "authorizationFailed"})
    with capture_logs() as logged, pytest.raises(PortalAuthError) as auth:
        client.send([put("1")])
    texts += [str(auth.value), repr(auth.value), json.dumps(logged, default=str)]
    for status in (503, 503):
        mocked.post(TOKEN_URL, status=status)
    with pytest.raises(PortalUnavailable) as unavailable:
        client.authenticate()
    texts.append(str(unavailable.value))
    assert logged, "the retry should have been logged"
    for text in texts:
        for forbidden in (SECRET, TOKEN, "Иванова", "2012-03-04"):
            assert forbidden not in text


# --- fingerprints --------------------------------------------------------------------------------


def test_fingerprints_parses_the_listing(
    mocked: responses.RequestsMock, client: PortalClient
) -> None:
    """GET {entity} gives sourcedId → fingerprint; a null fingerprint becomes ""."""
    token(mocked)
    mocked.get(
        f"{BASE}/api/v1/schools/school-7/mark",
        json={
            "records": [
                {"sourcedId": "m1", "fingerprint": "aa"},
                {"sourcedId": "m2", "fingerprint": None},
            ]
        },
    )
    assert client.fingerprints("mark") == {"m1": "aa", "m2": ""}
    assert mocked.calls[1].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_garbled_listing_is_retried(
    mocked: responses.RequestsMock, client: PortalClient, fake_time: FakeTime
) -> None:
    """A listing without records (or not JSON) is retried like a garbled batch answer."""
    token(mocked)
    url = f"{BASE}/api/v1/schools/school-7/pupil"
    mocked.get(url, body="<html>", content_type="text/html")
    mocked.get(url, json={"records": [{"fingerprint": "x"}]})
    mocked.get(url, json={"records": []})
    assert client.fingerprints("pupil") == {}
    assert fake_time.sleeps == [0.25, 0.5]


def test_the_waits_for_one_batch_add_up_to_at_most_max_batch_wait(
    mocked: responses.RequestsMock, make: Callable[..., PortalClient], fake_time: FakeTime
) -> None:
    """A portal that keeps answering 503 with Retry-After: 100 is given up on once the waits
    for the batch reach max_batch_wait, the last wait shortened to fit."""
    client = make(max_batch_wait=150.0, max_attempts=8)
    token(mocked)
    for _ in range(3):
        failure(mocked, 503, headers={"Retry-After": "100"})
    with pytest.raises(PortalUnavailable):
        client.send([put("1")])
    assert fake_time.sleeps == [100.0, 50.0]
    assert len(batch_calls(mocked)) == 3


@pytest.mark.parametrize(
    "data",
    [
        {"topic": "Правописание приставок", "date": date(2025, 9, 1), "number": 3},
        {"value": 10**30, "note": None, "flag": True},  # beyond 64 bits: the fallback writes it
    ],
)
def test_a_batch_body_is_the_compact_json_the_standard_library_writes(
    data: dict[str, object],
) -> None:
    """The request body is exactly the standard library's compact UTF-8 JSON, dates as ISO
    text, whether the fast encoder or the fallback wrote it."""
    operations = [
        Operation("0", "PUT", "lesson", "l1", "fp", data),
        Operation("1", "DELETE", "lesson", "l2"),
    ]
    wire = {
        "operations": [
            {"id": "0", "method": "PUT", "entity": "lesson", "sourcedId": "l1",
             "fingerprint": "fp", "data": data},
            {"id": "1", "method": "DELETE", "entity": "lesson", "sourcedId": "l2",
             "fingerprint": None, "data": None},
        ]
    }  # fmt: skip
    expected = json.dumps(wire, default=date.isoformat, ensure_ascii=False, separators=(",", ":"))
    assert encode_batch(operations) == expected.encode("utf-8")


def test_a_value_json_cannot_hold_is_a_type_error_naming_its_type() -> None:
    with pytest.raises(TypeError, match="cannot encode a object value"):
        encode_batch([Operation("0", "PUT", "lesson", "l1", "fp", {"x": object()})])


@responses.activate
def test_a_refused_token_is_never_sent_again_even_when_the_resend_fails() -> None:
    """401 with the first token, a new token fetched, its resend cut by a reset: the retry goes
    out with the new token, not the refused one (and no third token is fetched)."""
    tokens = iter(["t1", "t2", "t3"])
    responses.add_callback(
        "POST",
        TOKEN_URL,
        callback=lambda _: (
            200,
            {},
            json.dumps({"access_token": next(tokens), "expires_in": 3600}),
        ),
    )
    answers = iter([(401, "{}"), None, (200, '{"results":[{"id":"1","status":200}]}')])
    sent_with: list[str] = []

    def batch(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        sent_with.append(str(request.headers["Authorization"]))
        answer = next(answers)
        if answer is None:
            raise requests.ConnectionError("reset")
        return answer[0], {"Content-Type": "application/json"}, answer[1]

    responses.add_callback("POST", BATCH_URL, callback=batch)
    time = FakeTime()
    client = PortalClient(settings(), sleep=time.sleep, clock=time.clock, now=lambda: NOW)
    assert [r.ok for r in client.send([put("1")])] == [True]
    assert sent_with == ["Bearer t1", "Bearer t2", "Bearer t2"]
    assert client.stats.token_fetches == 2


def test_a_batch_answer_beyond_the_size_limit_is_a_portal_error_and_not_retried(
    mocked: responses.RequestsMock, client: PortalClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer larger than MAX_ANSWER_BYTES (here 4 KiB) is refused as it arrives: the run
    stops with a portal error, and the same batch is not sent again."""
    monkeypatch.setattr(client_module, "MAX_ANSWER_BYTES", 4096)
    token(mocked)
    mocked.post(BATCH_URL, json={"results": [ok(str(i)) for i in range(400)]})
    with pytest.raises(PortalFatalError) as caught:
        client.send([put("1")])
    assert caught.value.kind == "answerTooLarge"
    assert [c.request.url for c in mocked.calls] == [TOKEN_URL, BATCH_URL]


def test_a_whole_entity_listing_is_not_held_to_the_answer_size_limit(
    mocked: responses.RequestsMock, client: PortalClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reconciliation reads an entity whole (about 57 bytes a record: 250 MB for a large
    school's marks): that answer is read whatever its size."""
    monkeypatch.setattr(client_module, "MAX_ANSWER_BYTES", 4096)
    token(mocked)
    records = [{"sourcedId": f"m{i}", "fingerprint": f"f{i}"} for i in range(400)]
    mocked.get(f"{BASE}/api/v1/schools/school-7/mark", json={"records": records})
    assert len(client.fingerprints("mark")) == 400


def test_the_environment_is_read_once_proxy_and_ca_bundle_included(
    monkeypatch: pytest.MonkeyPatch, make: Callable[..., PortalClient]
) -> None:
    """Each request goes straight to the session's transport adapter, so the proxy and the
    CA bundle of the environment are read when the client builds its session, as
    ``Session.request`` would read them for every request."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.school.test:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/regional-ca.pem")
    session = make()._session
    assert session.proxies["https"] == "http://proxy.school.test:3128"
    assert session.verify == "/etc/ssl/regional-ca.pem"
    assert session.trust_env is False
    assert make(verify="/etc/ssl/school-ca.pem")._session.verify is True  # the setting rules
    monkeypatch.setenv("NO_PROXY", "portal.example")
    assert "https" not in make()._session.proxies


def test_a_token_request_is_a_form_and_a_batch_carries_its_length(
    mocked: responses.RequestsMock, client: PortalClient
) -> None:
    token(mocked)
    results(mocked, ok("1"))
    client.send([put("1")])
    form, batch = mocked.calls[0].request, mocked.calls[1].request
    assert form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form.headers["Content-Length"] == str(len(form.body))
    assert batch.headers["Content-Length"] == str(len(batch.body))
    assert batch.headers["Authorization"] == f"Bearer {TOKEN}"
