"""Small helpers the state store shares: the real clock, date-times read back from SQLite,
an approval's validity, and chunks of keys for ``IN (...)`` queries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from bridge.ports import Approval


def is_valid(approval: Approval | None, now: datetime, valid_for: timedelta | None) -> bool:
    """True when ``approval`` exists and, with ``valid_for`` given, has not expired by ``now``."""
    if approval is None:
        return False
    return valid_for is None or now < aware(approval.at) + valid_for


def aware(moment: datetime) -> datetime:
    """SQLite gives back naive date-times: they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def utc_now() -> datetime:
    """The real clock; only adapters built by the CLI use it."""
    return datetime.now(UTC)


def chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
