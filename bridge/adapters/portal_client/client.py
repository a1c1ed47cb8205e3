"""``PortalClient``: one pooled ``requests`` session, bearer tokens refreshed before they
expire, every request with explicit timeouts and a total deadline, retried as ``retries``
says; requests' exceptions translated at this seam."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from random import random as _unit_random
from typing import TypeVar
from urllib.parse import quote, urlencode

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState

from bridge import logs
from bridge.adapters.portal_client.answers import Verdict, _utc_now, classify, parse_retry_after
from bridge.adapters.portal_client.retries import (
    _Pacer,
    _TransientError,
    log_retry,
    raise_unless_ok,
    retrying,
)
from bridge.adapters.portal_client.settings import PortalSettings
from bridge.adapters.portal_client.wire import (
    _Token,
    encode_batch,
    parse_fingerprints,
    parse_results,
    parse_token,
)
from bridge.core.errors import PortalAuthError, PortalFatalError
from bridge.core.support import PortalSupport, full_support
from bridge.ports import ENTITIES, Operation, OperationResult

T = TypeVar("T")


@dataclass
class ClientStats:
    """Counters since the client was built: HTTP exchanges, retry sleeps, tokens fetched, and
    outcomes keyed by HTTP status (``"200"``) or by transport failure (``"ReadTimeout"``)."""

    requests: int = 0
    retries: int = 0
    token_fetches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


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
        self.batch_size, self.concurrency = settings.batch_size, settings.concurrency
        self.support: PortalSupport = REFERENCE_SUPPORT
        self._settings = settings
        self._owns_session = session is None
        self._session = (
            session
            if session is not None
            else settled_session(settings.base_url, settings.concurrency, settings.verify)
        )
        self._sleep, self._clock, self._now, self._random = sleep, clock, now, random
        self._pacer = _Pacer(settings.rate_limit, self._clock, self._sleep)
        self._token: _Token | None = None
        self._stats = ClientStats()
        # With concurrency > 1, send() runs in several threads: the token is shared under
        # one lock (held while one thread fetches it), the counters under another (never
        # held across a request); the session's connection pool is thread-safe.
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._log = logs.get_logger(component="portal", school=settings.school)

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters."""
        with self._stats_lock:
            return replace(self._stats, outcomes=Counter(self._stats.outcomes))

    def authenticate(self) -> None:
        """Fetch a token now (``asiou-bridge check``). Raises PortalAuthError, PortalFatalError,
        PortalUnavailable."""
        token = self._with_retries(self._fetch_token)
        with self._lock:
            self._token = token

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
        # the whole entity in one answer: it grows with the school (about 57 bytes a record,
        # 250 MB for 4.4 M marks), so the answer-size cap is not for it
        return self._with_retries(
            lambda: parse_fingerprints(self._call_api("GET", url, capped=False))
        )

    def close(self) -> None:
        """Close the session if the client built it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _with_retries(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` under the retries of ``retries.retrying`` (the settings now)."""
        policy = retrying(
            self._settings, random=self._random, sleep=self._sleep, before_sleep=self._note_retry
        )
        result: T = policy(attempt)
        return result

    def _note_retry(self, state: RetryCallState) -> None:
        """Count and log a retry."""
        with self._stats_lock:
            self._stats.retries += 1
        log_retry(self._log, state)

    def _call_api(
        self, method: str, url: str, body: bytes | None = None, *, capped: bool = True
    ) -> object:
        """One /api exchange with a valid token; on 401 one fresh token and one resend. Returns
        the parsed JSON of an OK answer; raises per ``raise_unless_ok`` otherwise.

        The token after a 401 is fetched for this request and used by it first, then shared:
        with requests in flight in several threads, each refused one gets a token nobody
        used before (a portal may refuse a token once it was used elsewhere)."""
        refused = self._held_token()
        reply = self._exchange(method, url, body=body, headers=_bearer(refused), capped=capped)
        if reply.status == 401:
            with self._lock:  # no other request takes the refused token from now on
                if self._token is refused:
                    self._token = None
            token = self._fetch_token()
            try:
                reply = self._exchange(
                    method, url, body=body, headers=_bearer(token), capped=capped
                )
            finally:  # shared once used, whatever the resend's fate
                with self._lock:
                    if self._token is None:
                        self._token = token
        raise_unless_ok(reply.verdict(), reply.retry_after)
        return reply.body

    def _held_token(self) -> _Token:
        """The token held, unless it expires soon (or there is none): then a new one. One
        thread fetches while the others wait for it."""
        with self._lock:
            if self._token is None or not self._token.is_fresh(self._clock()):
                self._token = self._fetch_token()
            return self._token

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
        with self._stats_lock:
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
        capped: bool = True,
    ) -> _Reply:
        """The seam: one HTTP request, paced, with timeouts and TLS settings; requests'
        exceptions become _TransientError or PortalFatalError here."""
        settings = self._settings
        all_headers = {
            "Accept": "application/json",
            "User-Agent": settings.user_agent,
            **(headers or {}),
        }
        data: bytes | str | None = body
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urlencode(form)  # ASCII text, as requests sends a form
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if data is not None:
            all_headers["Content-Length"] = str(len(data))
        elif method not in ("GET", "HEAD"):
            all_headers["Content-Length"] = "0"
        self._pacer.wait_turn()
        self._count_request()
        deadline = self._clock() + settings.request_deadline
        try:
            with send_direct(
                self._session,
                method,
                encoded_url(url),
                data,
                all_headers,
                timeout=(settings.connect_timeout, settings.read_timeout),
                verify=settings.verify,
            ) as response:
                content = _read_body(response, deadline, self._clock, capped=capped)
        except requests.RequestException as exc:
            self._count_outcome(type(exc).__name__)
            raise _translate(exc) from exc
        except _TransientError:
            self._count_outcome("RequestDeadline")
            raise
        self._count_outcome(str(response.status_code))
        return _Reply(
            response.status_code,
            response.headers.get("Content-Type"),
            _json_or_none(content),
            parse_retry_after(response.headers.get("Retry-After"), self._now()),
        )

    def _count_request(self) -> None:
        with self._stats_lock:
            self._stats.requests += 1

    def _count_outcome(self, outcome: str) -> None:
        with self._stats_lock:
            self._stats.outcomes[outcome] += 1

    def _api_url(self, resource: str) -> str:
        """``{base}/api/v1/schools/{school}/{resource}``, each segment percent-encoded."""
        base = self._settings.base_url.rstrip("/")
        school = quote(self._settings.school, safe="")
        return f"{base}/api/v1/schools/{school}/{quote(resource, safe='')}"


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


MAX_ANSWER_BYTES = 64 * 2**20
"""The largest answer read (decoded): a batch's results take tens of kilobytes, a class's
persons a few; a portal sending more (or a compressed bomb) is refused, not held in memory."""


def _read_body(
    response: requests.Response,
    deadline: float,
    clock: Callable[[], float],
    *,
    capped: bool = True,
) -> bytes:
    """The whole body, read piece by piece as it arrives; a body still arriving at
    ``deadline`` is cut off (a transient failure): the read timeout bounds one socket read, so
    a server dripping a byte at a time would otherwise hold the run for ever. A body beyond
    ``MAX_ANSWER_BYTES`` once decoded is a portal error (``answerTooLarge``): the same request
    would get the same answer (unless not ``capped``: a listing of a whole entity)."""
    raw, pieces, size = response.raw, list[bytes](), 0
    limit = MAX_ANSWER_BYTES if capped else None
    while True:
        if clock() > deadline:
            raise _TransientError("RequestDeadline")
        piece = raw.read1(READ_PIECE, decode_content=True)
        if not piece:
            return b"".join(pieces)
        size += len(piece)
        if limit is not None and size > limit:
            raise PortalFatalError(
                response.status_code,
                "answerTooLarge",
                f"the answer exceeded {MAX_ANSWER_BYTES:,} bytes; nothing of it was read",
            )
        pieces.append(piece)


def _json_or_none(content: bytes) -> object:
    """The body as JSON, or None when it is empty or not JSON (an HTML page, garbage)."""
    try:
        parsed: object = json.loads(content)
    except ValueError:
        return None
    return parsed


def _bearer(token: _Token) -> dict[str, str]:
    """The Authorization header of ``token``."""
    return {"Authorization": f"Bearer {token.value}"}


REFERENCE_SUPPORT: PortalSupport = full_support(ENTITIES)
"""The reference import API writes every canonical entity, by the bridge's own key."""


def settled_session(base_url: str, concurrency: int, verify: bool | str) -> requests.Session:
    """A pooled session with the environment read once: the proxy for the portal's host (and
    ``NO_PROXY``) and a CA bundle named by ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, as
    ``Session.request`` would read them for every request (a cost as large as the rest of a
    small request's)."""
    session = _pooled_session(concurrency)
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    session.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and verify is True:
        session.verify = bundle
    return session


def send_direct(
    session: requests.Session,
    method: str,
    url: str,
    data: bytes | str | None,
    headers: Mapping[str, str],
    *,
    timeout: tuple[float, float],
    verify: bool | str,
) -> requests.Response:
    """One request through the session's transport adapter, as ``Session.request`` sends it
    (the session's proxies, TLS settings and cookies; no redirects followed) without
    rebuilding and merging the session's settings for every request. ``url`` is already
    encoded (``encoded_url``); ``verify`` True means the session's own (its CA bundle)."""
    prepared = requests.PreparedRequest()
    prepared.method, prepared.url, prepared.body = method, url, data
    prepared.headers = CaseInsensitiveDict(headers)
    if session.cookies:
        prepared.prepare_cookies(session.cookies)
    chosen = session.verify if verify is True else verify
    response = session.get_adapter(url).send(
        prepared,
        stream=True,
        timeout=timeout,
        verify=True if chosen is None else chosen,  # unset: verified, never skipped
        cert=session.cert,
        proxies=session.proxies,
    )
    if "Set-Cookie" in response.headers:
        # requests ships this helper untyped
        extract_cookies_to_jar(session.cookies, prepared, response.raw)  # type: ignore[no-untyped-call]
    return response


@functools.lru_cache(maxsize=256)
def encoded_url(url: str) -> str:
    """``url`` as requests encodes it (quoted where it must be, an IDNA host), once per URL."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    return str(prepared.url)


def _pooled_session(concurrency: int = 1) -> requests.Session:
    """A session with a connection pool (a connection per request in flight) and no
    urllib3-level retries (tenacity decides)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(4, concurrency), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
