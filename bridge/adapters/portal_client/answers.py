"""Every answer of the portal gets one disposition (the table in the package docstring):
``classify`` for a whole response, ``classify_result`` for one operation of a batch; with
the reason an admin reads, and the ``Retry-After`` a busy portal asks for."""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

RETRIABLE_STATUSES = frozenset({408, 429})


"""Client-error statuses that mean "later"; every 5xx but ``NEVER_STATUSES`` is retriable too."""


NEVER_STATUSES = frozenset({501, 505})


"""Server errors that say the request will never work (not implemented, HTTP version)."""


DETAIL_LIMIT = 300


"""Longest portal description carried into an error (a proxy may answer with a novel)."""


_SECONDS = re.compile(r"\d+(\.\d+)?", re.ASCII)


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


def _utc_now() -> datetime:
    """The real wall clock in UTC (the default ``now``; tests inject a fixed one)."""
    return datetime.now(UTC)
