"""The nightly jobs of many schools spread over a window, each school at its own minute.

Every instance of a region runs its nightly full sync at ``schedule.full_at`` by default: three
hundred schools on one PostgreSQL state store would all start at 02:30 and ask for their
connections in the same minute. Each school's nightly jobs (the dead letters' chance, the full
run, the reconciliation) start ``offset_minutes(school, spread)`` later than their set times:
a number from 0 to ``spread`` derived from the school id, the same on every start (so
``status`` shows it ahead), different from school to school. Pure functions.
"""

from __future__ import annotations

import hashlib

WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60


def offset_minutes(school: str, spread: int) -> int:
    """Minutes from 0 to ``spread`` (inclusive) for ``school``: stable, evenly spread."""
    if spread <= 0:
        return 0
    digest = hashlib.sha256(school.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (spread + 1)


def shifted(hour: int, minute: int, offset: int) -> tuple[int, int, int]:
    """``hour:minute`` plus ``offset`` minutes as (days later, hour, minute)."""
    total = hour * 60 + minute + offset
    return total // DAY_MINUTES, total % DAY_MINUTES // 60, total % 60


def shifted_days(days: str, later: int) -> str:
    """A day-of-week expression (``sun``, ``mon-fri``, ``mon,wed-fri``) moved ``later`` days,
    as a comma list of days (``mon-fri`` one day later is ``tue,wed,thu,fri,sat``)."""
    if later % 7 == 0:
        return days
    chosen: list[int] = []
    for part in days.split(","):
        first, _, last = part.strip().partition("-")
        start = WEEK.index(first)
        end = WEEK.index(last) if last else start
        span = (end - start) % 7
        chosen.extend((start + i) % 7 for i in range(span + 1))
    moved = sorted({(day + later) % 7 for day in chosen})
    return ",".join(WEEK[day] for day in moved)
