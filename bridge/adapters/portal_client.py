"""HTTP adapter for the reference diary import API: ``PortalClient`` implements the Portal port.

One ``requests.Session`` (pooled, kept alive), explicit (connect, read) timeouts and TLS
verification on every request, OAuth2 client-credentials bearer tokens refreshed 30 s before they
expire, a client-side rate limit, and retries driven by a tenacity ``Retrying`` built per call from
the settings: full-jitter exponential backoff, never shorter than the portal's ``Retry-After``.

Every answer gets one disposition (``classify`` for a whole response, ``classify_result`` for one
operation inside a batch answer); the driver acts on the disposition, never on a raw status::

    answer                                          disposition  what the client does
    ----------------------------------------------  -----------  ---------------------------------
    2xx with a JSON body of the expected shape      OK           return results / fingerprints
    2xx whose body is not JSON, or results whose    RETRIABLE    resend (the answer was lost or
      count or ids do not match the operations                   garbled; PUT/DELETE idempotent)
    per operation 2xx                               OK           OperationResult(ok=True)
    per operation 4xx (409, 422, 404...)            REJECTED     OperationResult(ok=False, type,
                                                                 description): that record only
    per operation 429, 5xx or a nonsense status     RETRIABLE    resend the whole batch
    408, 429, 5xx except 501/505 (JSON or not),     RETRIABLE    wait max(backoff, Retry-After),
      connection refused or reset, timeouts                      resend; after max_attempts:
                                                                 PortalUnavailable
    401 from /api                                   AUTH         fetch a new token, resend once;
                                                                 a second 401: PortalAuthError
    401 or 403 from /oauth/token                    AUTH         PortalAuthError
    400, 403, 404, 413, other 4xx, 3xx, 501, 505    FATAL        PortalFatalError, no retry
    TLS failure, malformed URL (no HTTP status)     FATAL        PortalFatalError(status=0)

Exceptions that leave the client (``bridge.core.errors``)::

    PortalAuthError      the credentials, or a freshly fetched token, were refused
    PortalFatalError     an answer retrying cannot fix
    PortalUnavailable    retriable failures until max_attempts ran out (attempts, last reason)
    ValueError           a programming error: a batch over batch_size, an unknown method

requests' own exceptions are translated at the seam (``PortalClient._exchange``) with
``raise ... from exc``. Nothing raised or logged here carries the client secret, the token or
operation data; errors carry the HTTP status, the portal's type and description, entity and
sourcedId. A client is not thread-safe: use one per thread.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from random import random as _unit_random
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)
from tenacity.wait import wait_exponential

from bridge import __version__, logs
from bridge.core.errors import PortalAuthError, PortalFatalError, PortalUnavailable
from bridge.ports import Operation, OperationResult

T = TypeVar("T")

REFRESH_MARGIN = 30.0
"""Seconds before expiry at which a token is replaced proactively."""

RETRIABLE_STATUSES = frozenset({408, 429})
"""Client-error statuses that mean "later"; every 5xx but ``NEVER_STATUSES`` is retriable too."""

NEVER_STATUSES = frozenset({501, 505})
"""Server errors that say the request will never work (not implemented, HTTP version)."""

METHODS = frozenset({"PUT", "DELETE"})
DETAIL_LIMIT = 300
"""Longest portal description carried into an error (a proxy may answer with a novel)."""

_SECONDS = re.compile(r"\d+(\.\d+)?", re.ASCII)


@dataclass(frozen=True)
class PortalSettings:
    """Where the portal is, who we are, and how patient to be. ``repr`` hides the secret."""

    base_url: str
    school: str
    client_id: str
    client_secret: str = field(repr=False)
    connect_timeout: float = 3.05
    read_timeout: float = 30.0
    batch_size: int = 500
    max_attempts: int = 8
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 300.0
    request_deadline: float = 60.0
    """Seconds one request may take in all (the read timeout bounds each socket read only)."""
    max_batch_wait: float = 900.0
    """Seconds one request may spend in retries in all, waits included."""
    rate_limit: float = 0.0
    verify: bool | str = True
    user_agent: str = f"asiou-bridge/{__version__}"

    def __post_init__(self) -> None:
        """Refuse settings no client could work with (values only, never the secret)."""
        if self.batch_size < 1 or self.max_attempts < 1:
            raise ValueError("batch_size and max_attempts must be at least 1")
        if (
            min(self.connect_timeout, self.read_timeout, self.request_deadline, self.max_batch_wait)
            <= 0
            or self.rate_limit < 0
        ):
            raise ValueError("timeouts must be positive and rate_limit not negative")


class Disposition(StrEnum):
    """What the client does with an answer."""

    OK = "ok"
    REJECTED = "rejected"
    RETRIABLE = "retriable"
    AUTH = "auth"
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A classified response: its disposition and the facts an error may carry."""

    disposition: Disposition
    status: int
    kind: str
    detail: str

    @property
    def reason(self) -> str:
        """One line for errors and logs: status, portal type, portal description."""
        return f"HTTP {self.status} {self.kind}: {self.detail}"


@dataclass
class ClientStats:
    """Counters since the client was built: HTTP exchanges, retry sleeps, tokens fetched, and
    outcomes keyed by HTTP status (``"200"``) or by transport failure (``"ReadTimeout"``)."""

    requests: int = 0
    retries: int = 0
    token_fetches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


def classify(status: int, content_type: str | None, body: object) -> Verdict:
    """Classify one whole response. ``body`` is the parsed JSON, or None when it was not JSON."""
    kind, detail = describe(status, content_type, body)
    return Verdict(_disposition(status, body), status, kind, detail)


def _disposition(status: int, body: object) -> Disposition:
    """The table in the module docstring, for a whole response."""
    if 200 <= status < 300:
        return Disposition.OK if body is not None else Disposition.RETRIABLE
    if status == 401:
        return Disposition.AUTH
    if status in RETRIABLE_STATUSES or (status >= 500 and status not in NEVER_STATUSES):
        return Disposition.RETRIABLE
    return Disposition.FATAL


def classify_result(status: int) -> Disposition:
    """Classify one operation's status inside a batch answer: 2xx ok, 429/5xx retry the batch,
    other 4xx reject that record; anything else is a garbled answer, so retriable."""
    if 200 <= status < 300:
        return Disposition.OK
    if status == 429 or 500 <= status < 600:
        return Disposition.RETRIABLE
    if 400 <= status < 500:
        return Disposition.REJECTED
    return Disposition.RETRIABLE


def describe(status: int, content_type: str | None, body: object) -> tuple[str, str]:
    """The portal's ``type`` and ``description`` from a JSON error body; for anything else
    (an HTML page from a proxy, garbage) a kind and the content type, never the body itself."""
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        description = body.get("description")
        text = description if isinstance(description, str) else ""
        return body["type"], text[:DETAIL_LIMIT]
    media = (content_type or "no content type").split(";")[0].strip()
    if body is None:
        return ("nonJson" if status >= 300 else "garbled"), f"{media} body"
    return "unexpectedBody", f"{media} body without an error type"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110),
    relative to ``now``; a date in the past is 0; missing or unreadable is None."""
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, (_aware(when) - _aware(now)).total_seconds())


def _aware(moment: datetime) -> datetime:
    """A naive datetime is UTC (HTTP dates are GMT)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class _TransientError(Exception):
    """Internal: this attempt failed in a way a later attempt may not. Never leaves the client."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Reply:
    """What the seam hands back: status, content type, parsed JSON (None if not JSON)."""

    status: int
    content_type: str | None
    body: object
    retry_after: float | None

    def verdict(self) -> Verdict:
        """This reply classified."""
        return classify(self.status, self.content_type, self.body)


@dataclass(frozen=True, slots=True)
class _Token:
    """A bearer token and the clock reading at which it expires."""

    value: str
    expires_at: float

    def is_fresh(self, now: float) -> bool:
        """True while more than ``REFRESH_MARGIN`` seconds remain."""
        return now < self.expires_at - REFRESH_MARGIN


def raise_unless_ok(verdict: Verdict, retry_after: float | None = None) -> None:
    """Return on OK; otherwise raise what the disposition says (AUTH as PortalAuthError)."""
    if verdict.disposition is Disposition.OK:
        return
    if verdict.disposition is Disposition.RETRIABLE:
        raise _TransientError(verdict.reason, retry_after)
    if verdict.disposition is Disposition.AUTH:
        raise PortalAuthError(verdict.status, f"{verdict.kind}: {verdict.detail}")
    raise PortalFatalError(verdict.status, verdict.kind, verdict.detail)


def encode_batch(operations: Sequence[Operation]) -> bytes:
    """The batch request body; dates become ISO strings. Raises ValueError on an unknown method."""
    wire = [_wire_operation(op) for op in operations]
    text = json.dumps(
        {"operations": wire}, default=_json_value, ensure_ascii=False, separators=(",", ":")
    )
    return text.encode("utf-8")


def _wire_operation(op: Operation) -> dict[str, Any]:
    """One operation as the API spells it."""
    if op.method not in METHODS:
        raise ValueError(f"operation {op.op_id}: method must be PUT or DELETE")
    data = dict(op.data) if op.data is not None else None
    return {
        "id": op.op_id,
        "method": op.method,
        "entity": op.entity,
        "sourcedId": op.sourced_id,
        "fingerprint": op.fingerprint,
        "data": data,
    }


def _json_value(value: object) -> str:
    """JSON for the canonical value types json cannot write itself (the type only on failure)."""
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot encode a {type(value).__name__} value")


def parse_results(body: object, operations: Sequence[Operation]) -> list[OperationResult]:
    """One result per operation, in order. Raises _TransientError when the answer does not fit
    the operations (lost or garbled) or when any operation met a retriable status."""
    items = body.get("results") if isinstance(body, dict) else None
    if not isinstance(items, list) or len(items) != len(operations):
        count = len(items) if isinstance(items, list) else "no"
        raise _TransientError(f"HTTP 200 garbled: {count} results for {len(operations)} operations")
    results = [_parse_result(item, op) for item, op in zip(items, operations, strict=True)]
    for result, op in zip(results, operations, strict=True):
        if classify_result(result.status) is Disposition.RETRIABLE:
            raise _TransientError(
                f"operation {op.op_id} ({op.entity} {op.sourced_id}): HTTP "
                f"{result.status} {result.type}: {result.description}"
            )
    return results


def _parse_result(item: object, op: Operation) -> OperationResult:
    """One per-operation answer; its id must be the operation's."""
    if not isinstance(item, dict) or item.get("id") != op.op_id:
        raise _TransientError(f"HTTP 200 garbled: result for {op.op_id} missing or out of order")
    status = item.get("status")
    if not isinstance(status, int) or isinstance(status, bool):
        raise _TransientError(f"HTTP 200 garbled: result for {op.op_id} has no status")
    kind, description = item.get("type"), item.get("description")
    return OperationResult(
        op_id=op.op_id,
        ok=classify_result(status) is Disposition.OK,
        status=status,
        type=kind if isinstance(kind, str) else None,
        description=description[:DETAIL_LIMIT] if isinstance(description, str) else None,
    )


def parse_fingerprints(body: object) -> dict[str, str]:
    """sourcedId → fingerprint from a listing; a null fingerprint becomes "" (matches nothing,
    so the record is re-sent). Raises _TransientError when the listing is garbled."""
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise _TransientError("HTTP 200 garbled: listing without records")
    found: dict[str, str] = {}
    for record in records:
        key = record.get("sourcedId") if isinstance(record, dict) else None
        fingerprint = record.get("fingerprint") if isinstance(record, dict) else None
        if not isinstance(key, str) or not isinstance(fingerprint, str | None):
            raise _TransientError("HTTP 200 garbled: listing record without sourcedId")
        found[key] = fingerprint or ""
    return found


def parse_token(body: object, now: float) -> _Token:
    """The token from a token answer; no ``expires_in`` means valid until the portal says 401.
    Raises _TransientError when the answer holds no token."""
    answer = body if isinstance(body, dict) else {}
    token, lifetime = answer.get("access_token"), answer.get("expires_in")
    if not isinstance(token, str) or not token:
        raise _TransientError("HTTP 200 garbled: token answer without access_token")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        return _Token(token, float("inf"))
    return _Token(token, now + float(lifetime))


def jittered_backoff(
    settings: PortalSettings, random: Callable[[], float]
) -> Callable[[RetryCallState], float]:
    """Full jitter: uniform in [0, min(backoff_max, backoff_initial * 2**(attempt - 1)))."""
    ceiling = wait_exponential(multiplier=settings.backoff_initial, max=settings.backoff_max)
    return lambda state: random() * ceiling(state)


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
    """Client-side rate limit: request starts at least ``1 / rate`` seconds apart."""

    def __init__(
        self, rate: float, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")

    def wait_turn(self) -> None:
        """Sleep until the next request may start, then book the slot after it."""
        if self._interval == 0.0:
            return
        delay = self._next - self._clock()
        if delay > 0:
            self._sleep(delay)
        self._next = max(self._clock(), self._next) + self._interval


def _utc_now() -> datetime:
    """The real wall clock in UTC (the default ``now``; tests inject a fixed one)."""
    return datetime.now(UTC)


class PortalClient:
    """The Portal port over HTTP (see the module docstring for what is retried and raised)."""

    def __init__(
        self,
        settings: PortalSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
        random: Callable[[], float] = _unit_random,
    ) -> None:
        """``session`` is borrowed (the caller closes it); without one the client builds and owns
        a pooled session. ``sleep``, ``clock``, ``now`` and ``random`` are injected for tests."""
        self.batch_size = settings.batch_size
        self._settings = settings
        self._owns_session = session is None
        self._session = session if session is not None else _pooled_session()
        self._sleep, self._clock, self._now, self._random = sleep, clock, now, random
        self._pacer = _Pacer(settings.rate_limit, self._clock, self._sleep)
        self._token: _Token | None = None
        self._stats = ClientStats()
        self._log = logs.get_logger(component="portal", school=settings.school)

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters."""
        return replace(self._stats, outcomes=Counter(self._stats.outcomes))

    def authenticate(self) -> None:
        """Fetch a token now (``asiou-bridge check``). Raises PortalAuthError, PortalFatalError,
        PortalUnavailable."""
        self._token = self._with_retries(self._fetch_token)

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply one batch; one result per operation, in order (see Portal.send)."""
        if len(operations) > self.batch_size:
            raise ValueError(f"{len(operations)} operations exceed batch_size {self.batch_size}")
        if not operations:
            return []
        body = encode_batch(operations)
        url = self._api_url("batch")
        return self._with_retries(
            lambda: parse_results(self._call_api("POST", url, body), operations)
        )

    def fingerprints(self, entity: str) -> dict[str, str]:
        """sourcedId → fingerprint of every live record of ``entity`` (see Portal.fingerprints)."""
        url = self._api_url(entity)
        return self._with_retries(lambda: parse_fingerprints(self._call_api("GET", url)))

    def close(self) -> None:
        """Close the session if the client built it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _with_retries(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` under a Retrying built from the settings now (never frozen). The
        waits of one request add up to at most ``max_batch_wait``."""
        settings = self._settings
        budget = settings.max_batch_wait
        wait = honour_retry_after(
            jittered_backoff(settings, self._random), settings.max_retry_after
        )
        attempts, waited = stop_after_attempt(settings.max_attempts), waited_for(budget)
        retrying = Retrying(
            stop=lambda state: attempts(state) or waited(state),
            wait=lambda state: min(wait(state), max(0.0, budget - state.idle_for)),
            retry=retry_if_exception_type(_TransientError),
            sleep=self._sleep,
            before_sleep=self._note_retry,
            retry_error_callback=_give_up,
        )
        return retrying(attempt)

    def _note_retry(self, state: RetryCallState) -> None:
        """Count and log a retry: attempt, wait, reason (never the token, secret or data)."""
        self._stats.retries += 1
        failure = state.outcome.exception() if state.outcome is not None else None
        self._log.warning(
            "portal_retry",
            attempt=state.attempt_number,
            wait=round(state.upcoming_sleep, 3),
            reason=failure.reason if isinstance(failure, _TransientError) else None,
        )

    def _call_api(self, method: str, url: str, body: bytes | None = None) -> object:
        """One /api exchange with a valid token; on 401 one fresh token and one resend. Returns
        the parsed JSON of an OK answer; raises per ``raise_unless_ok`` otherwise."""
        reply = self._exchange(method, url, body=body, headers=self._bearer())
        if reply.status == 401:
            self._token = None  # refused: the next _bearer() fetches a new one
            reply = self._exchange(method, url, body=body, headers=self._bearer())
        raise_unless_ok(reply.verdict(), reply.retry_after)
        return reply.body

    def _bearer(self) -> dict[str, str]:
        """Authorization header, fetching a token first if none is fresh."""
        if self._token is None or not self._token.is_fresh(self._clock()):
            self._token = self._fetch_token()
        return {"Authorization": f"Bearer {self._token.value}"}

    def _fetch_token(self) -> _Token:
        """Client-credentials grant. 401/403 → PortalAuthError; otherwise per the table."""
        settings = self._settings
        form = {
            "grant_type": "client_credentials",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
        }
        started = self._clock()
        reply = self._exchange("POST", f"{settings.base_url.rstrip('/')}/oauth/token", form=form)
        verdict = reply.verdict()
        if reply.status in (401, 403):
            raise PortalAuthError(reply.status, f"{verdict.kind}: {verdict.detail}")
        raise_unless_ok(verdict, reply.retry_after)
        self._stats.token_fetches += 1
        return parse_token(reply.body, started)

    def _exchange(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Reply:
        """The seam: one HTTP request, paced, with timeouts and TLS settings; requests'
        exceptions become _TransientError or PortalFatalError here."""
        settings = self._settings
        all_headers = {
            "Accept": "application/json",
            "User-Agent": settings.user_agent,
            **(headers or {}),
        }
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        self._pacer.wait_turn()
        self._stats.requests += 1
        deadline = self._clock() + settings.request_deadline
        try:
            with self._session.request(
                method,
                url,
                data=body if body is not None else form,
                headers=all_headers,
                timeout=(settings.connect_timeout, settings.read_timeout),
                verify=settings.verify,
                allow_redirects=False,
                stream=True,
            ) as response:
                content = _read_body(response, deadline, self._clock)
        except requests.RequestException as exc:
            self._stats.outcomes[type(exc).__name__] += 1
            raise _translate(exc) from exc
        except _TransientError:
            self._stats.outcomes["RequestDeadline"] += 1
            raise
        self._stats.outcomes[str(response.status_code)] += 1
        return _Reply(
            response.status_code,
            response.headers.get("Content-Type"),
            _json_or_none(content),
            parse_retry_after(response.headers.get("Retry-After"), self._now()),
        )

    def _api_url(self, resource: str) -> str:
        """``{base}/api/v1/schools/{school}/{resource}``, each segment percent-encoded."""
        base = self._settings.base_url.rstrip("/")
        school = quote(self._settings.school, safe="")
        return f"{base}/api/v1/schools/{school}/{quote(resource, safe='')}"


def _give_up(state: RetryCallState) -> None:
    """Retries ran out: PortalUnavailable with the attempt count and the last reason."""
    failure = state.outcome.exception() if state.outcome is not None else None
    reason = failure.reason if isinstance(failure, _TransientError) else "unknown"
    raise PortalUnavailable(state.attempt_number, reason) from failure


def _translate(exc: requests.RequestException) -> Exception:
    """requests' exception → ours: TLS and malformed requests are fatal, the network is
    transient. Only the exception's class name is kept (its text may quote URLs and hosts)."""
    name = type(exc).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        return PortalFatalError(0, "tlsFailed", name)
    transient = (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
    )
    if isinstance(exc, transient):
        return _TransientError(name)
    return PortalFatalError(0, "requestFailed", name)


READ_PIECE = 65536


def _read_body(response: requests.Response, deadline: float, clock: Callable[[], float]) -> bytes:
    """The whole body, read piece by piece as it arrives; a body still arriving at
    ``deadline`` is cut off (a transient failure): the read timeout bounds one socket read, so
    a server dripping a byte at a time would otherwise hold the run for ever."""
    raw, pieces = response.raw, list[bytes]()
    while True:
        if clock() > deadline:
            raise _TransientError("RequestDeadline")
        piece = raw.read1(READ_PIECE, decode_content=True)
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)


def _json_or_none(content: bytes) -> object:
    """The body as JSON, or None when it is empty or not JSON (an HTML page, garbage)."""
    try:
        parsed: object = json.loads(content)
    except ValueError:
        return None
    return parsed


def _pooled_session() -> requests.Session:
    """A session with a connection pool and no urllib3-level retries (tenacity decides)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
