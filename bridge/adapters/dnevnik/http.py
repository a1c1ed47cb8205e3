"""The dnevnik.ru partner API over HTTP: the ``Access-Token`` header, its error envelope
(``{"type", "description"}``, and the HTML pages some failures answer), ``Retry-After``, the
rate limit, and retries that never repeat a write whose outcome is unknown.

Reads (GET) and the idempotent writes (PUT, DELETE of one record) are retried as the reference
client's requests are. A POST creates a record: it is retried only when it surely did nothing
(429, a connection never made); any other failure after it was sent (a timeout, a reset, a 5xx,
an answer lost) raises :class:`OutcomeUnknown`, and the caller looks the record up on the portal
before it creates anything again."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from random import random as _unit_random
from typing import Any

import orjson
import requests
from tenacity import RetryCallState

from bridge import logs
from bridge.adapters.dnevnik.settings import DnevnikSettings
from bridge.adapters.portal_client.answers import (
    Disposition,
    Verdict,
    _utc_now,
    classify,
    parse_retry_after,
)
from bridge.adapters.portal_client.client import (
    _json_or_none,
    _read_body,
    _translate,
    send_direct,
    settled_session,
)
from bridge.adapters.portal_client.retries import _Pacer, _TransientError, log_retry, retrying
from bridge.core.errors import PortalAuthError, PortalFatalError

REFUSALS = frozenset({400, 403, 404, 405, 409, 410, 413, 422})
"""Statuses that refuse one record for good (``parameterInvalid`` and the like)."""


class Refused(Exception):  # noqa: N818 - an answer, not a failure of the adapter
    """The portal refused this request for good: a record it will not take as sent."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.status, self.kind, self.detail = verdict.status, verdict.kind, verdict.detail

    @classmethod
    def of(cls, status: int, kind: str, detail: str) -> Refused:
        """A refusal the adapter decides itself (a value the school's tables do not map)."""
        return cls(Verdict(Disposition.REJECTED, status, kind, detail))


class OutcomeUnknown(Exception):  # noqa: N818 - a state of knowledge, as the name says
    """A create was sent and no answer says whether it took effect."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DnevnikHttp:
    """Requests to the partner API, shared by the adapter's threads (the pool, the rate limit
    and the counters are thread-safe)."""

    def __init__(
        self,
        settings: DnevnikSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
        random: Callable[[], float] = _unit_random,
    ) -> None:
        self.settings = settings
        self._owns_session = session is None
        self._session = (
            session
            if session is not None
            else settled_session(settings.base_url, settings.concurrency, settings.verify)
        )
        self._base = _encoded_url(settings.base_url.rstrip("/") + "/", None)
        self._joinable = "?" not in self._base and "#" not in self._base
        self._headers: dict[str, str] = {
            **{k: v for k, v in self._session.headers.items() if isinstance(v, str)},
            "Access-Token": settings.token,
            "Accept": "application/json",
            "User-Agent": settings.user_agent,
        }
        self._sleep, self._clock, self._now, self._random = sleep, clock, now, random
        self._pacer = _Pacer(settings.rate_limit, clock, sleep)
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self._log = logs.get_logger(component="dnevnik", school=settings.school)

    def close(self) -> None:
        """Close the session if this client built it."""
        if self._owns_session:
            self._session.close()

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` (under ``/v2/``); the parsed JSON. Retried while transient."""
        return self._retried(lambda: self._ok("GET", path, params=params))

    def put(self, path: str, body: Mapping[str, Any]) -> Any:
        """PUT one record (idempotent: retried while transient)."""
        return self._retried(lambda: self._ok("PUT", path, body=body))

    def delete(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """DELETE one record (retried while transient; the caller tells a second delete's
        refusal from a first one's)."""
        return self._retried(lambda: self._ok("DELETE", path, params=params))

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST (create) one record: retried only while it surely did nothing, else
        OutcomeUnknown. Refused, PortalAuthError, PortalFatalError, PortalUnavailable."""

        def attempt() -> Any:
            try:
                return self._ok("POST", path, body=body)
            except _UnappliedError:
                raise
            except _TransientError as failure:
                raise OutcomeUnknown(failure.reason) from None

        return self._retried(attempt)

    # --- one exchange -----------------------------------------------------------------------

    def _ok(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        status, content_type, parsed, retry_after = self._exchange(method, path, params, body)
        verdict = classify(status, content_type, parsed)
        if verdict.disposition is Disposition.OK:
            return parsed
        if status == 401 or verdict.kind == "authorizationFailed":
            raise PortalAuthError(status, f"{verdict.kind}: {verdict.detail}")
        if verdict.disposition is Disposition.RETRIABLE:
            transient = _UnappliedError if status == 429 else _TransientError
            raise transient(verdict.reason, retry_after)
        if status in REFUSALS:
            raise Refused(verdict)
        raise PortalFatalError(status, verdict.kind, verdict.detail)

    def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
    ) -> tuple[int, str | None, object, float | None]:
        """The seam: one request, paced, with the token, timeouts and TLS settings."""
        settings = self.settings
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
            headers["Content-Length"] = str(len(data))
        elif method not in ("GET", "HEAD"):
            headers["Content-Length"] = "0"
        self._pacer.wait_turn()
        with self._lock:
            self.requests += 1
        deadline = self._clock() + settings.request_deadline
        try:
            with send_direct(
                self._session,
                method,
                self._url(path, params),
                data,
                headers,
                timeout=(settings.connect_timeout, settings.read_timeout),
                verify=settings.verify,
            ) as response:
                content = _read_body(response, deadline, self._clock)
        except requests.exceptions.ConnectTimeout as exc:
            raise _UnappliedError(type(exc).__name__) from exc
        except requests.exceptions.ConnectionError as exc:
            if _never_connected(exc):
                raise _UnappliedError(type(exc).__name__) from exc
            raise _translate(exc) from exc
        except requests.RequestException as exc:
            raise _translate(exc) from exc
        retry_after = response.headers.get("Retry-After")
        return (
            response.status_code,
            response.headers.get("Content-Type"),
            _parsed(content),
            None if retry_after is None else parse_retry_after(retry_after, self._now()),
        )

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        """The request's URL: a plain path is joined as is (nothing in it to quote), anything
        else is encoded as requests encodes it."""
        path = path.lstrip("/")
        if params is None and self._joinable and _PLAIN_PATH.fullmatch(path):
            return self._base + path
        return _encoded_url(self._base + path, params)

    def _retried(self, attempt: Callable[[], Any]) -> Any:
        policy = retrying(
            self.settings, random=self._random, sleep=self._sleep, before_sleep=self._note_retry
        )
        return policy(attempt)

    def _note_retry(self, state: RetryCallState) -> None:
        with self._lock:
            self.retries += 1
        log_retry(self._log, state)


_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.-]*")
"""A path with nothing in it that a URL would quote."""


def _encoded_url(url: str, params: Mapping[str, Any] | None) -> str:
    """``url`` with ``params`` as requests encodes them (quoted, IDNA host)."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, params)
    return str(prepared.url)


def _parsed(content: bytes) -> object:
    """The body as JSON (orjson; the standard parser for what orjson will not read, such as
    integers beyond 64 bits), or None when it is empty or not JSON (an HTML page, garbage)."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return _json_or_none(content)


class _UnappliedError(_TransientError):
    """A transient failure of a request that surely did nothing: it never reached the portal
    (no connection made), or the portal said so (429)."""


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was never made (refused, no route, name not resolved): the
    request was not sent. A reset or a lost answer is not that."""
    text = repr(exc.args[0]) if exc.args else ""
    return "NewConnectionError" in text or "Failed to resolve" in text
