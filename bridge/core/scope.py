"""Resync scopes: which records a resync sends again even where the state says delivered.

Pure predicates over a record and the run's gate context (``asiou-bridge resync``).
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.core.gate import Context, owner_pupil
from bridge.core.model import Record

Scope = Callable[[Record, Context], bool]


def everything(record: Record, ctx: Context) -> bool:
    """``--full``: every record."""
    return True


def of_pupil(key: str) -> Scope:
    """``--pupil KEY``: the pupil, every record of theirs (guardian links included), and the
    guardians who represent them."""

    def mine(record: Record, ctx: Context) -> bool:
        if record.entity == "guardian":
            return key in ctx.guardian_of.get(record.key, ())
        return owner_pupil(record) == key

    return mine


def of_class(key: str) -> Scope:
    """``--class KEY``: the class, its lessons, works, marks, absences, groups and stays, and
    the pupils who were ever in it."""

    def in_class(record: Record, ctx: Context) -> bool:
        if record.entity == "class":
            return record.key == key
        if record.entity == "pupil":
            return any(c == key for c, _, _ in ctx.stays.get(record.key, ()))
        return ctx.lesson_class(record) == key

    return in_class


def since(day: str) -> Scope:
    """``--since DATE``: records about that day or later (lessons and what hangs on them,
    stays that began then, period marks of periods that ended then)."""

    def recent(record: Record, ctx: Context) -> bool:
        found = ctx.record_day(record)
        return found is not None and found >= day

    return recent
