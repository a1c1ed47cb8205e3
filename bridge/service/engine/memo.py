"""Records built in this process's earlier runs, by the values of their row: a long-running
process (the daemon) reads the small entities whole every incremental run (pupils, guardians,
enrolments, guardian links, classes...), and a row read again unchanged is not built again.

Building is a pure function of the row: the same values give the same record (or the same
rejection, which is not kept: a rejected row is built again). A row is taken for the same
only when each of its values has the same type and the same value, compared by ``repr`` where
equal values may still differ (``-0.0`` and ``0.0``, ``Decimal("1.0")`` and
``Decimal("1.00")``, date-times equal across time zones); a row holding a value of any other
type is always built. Each read keeps only the rows it saw (at most ``MAX_KEPT``), so what is
kept never outgrows one read of the entity. Records are never changed once built, so one
record may serve several runs.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bridge.core.mapping import CompiledMapping
from bridge.core.model import Record
from bridge.ports import Row

MAX_KEPT = 10_000
"""Rows kept per entity and read; the rows of a bigger read beyond these are built as before
(a whole read of a big entity in an incremental run keeps no more: some 10-20 MB)."""

EQUAL = frozenset({str, int, bool, bytes, dt.date, type(None)})
"""Types whose equal values (of the same type) build the same record."""

BY_REPR = frozenset({float, Decimal, dt.datetime, dt.time})
"""Types whose equal values may build different records: compared by ``repr`` as well."""

_KEPT: dict[tuple[int, str], tuple[CompiledMapping, dict[tuple[Any, ...], Record]]] = {}
_PLANS: dict[tuple[type, ...], tuple[int, ...] | None] = {}  # see _plan
_LOCK = threading.Lock()


def _plan(kinds: tuple[type, ...]) -> tuple[int, ...] | None:
    """The places of a row with these value types whose values are compared by ``repr``;
    None when a type is not known to build alike when equal."""
    if any(k not in EQUAL and k not in BY_REPR for k in kinds):
        return None
    return tuple(at for at, k in enumerate(kinds) if k in BY_REPR)


def row_key(row: Row) -> tuple[Any, ...] | None:
    """What identifies ``row``'s values for building (their types, and the values or their
    repr); None when a value is of a type not known to build alike when equal."""
    kinds = tuple(map(type, row))
    try:
        plan = _PLANS[kinds]
    except KeyError:
        plan = _plan(kinds)
        if len(_PLANS) < MAX_KEPT:
            _PLANS[kinds] = plan
    if plan is None:
        return None
    if not plan:
        return kinds, tuple(row)
    values = list(row)
    for at in plan:
        values[at] = repr(values[at])
    return kinds, tuple(values)


def builder(mapping: CompiledMapping, read: str = "own") -> Callable[[Row], Record]:
    """``mapping.build`` for one read, giving the records built in the last such ``read`` of
    the mapping in this process (its own read, or the engine's pre-pass) again for rows with
    the same values."""
    fresh: dict[tuple[Any, ...], Record] = {}
    with _LOCK:
        kept = _KEPT.get((id(mapping), read))
        before = kept[1] if kept is not None and kept[0] is mapping else {}
        # The mapping kept with its records: its id stays its own while they are kept.
        _KEPT[id(mapping), read] = (mapping, fresh)
    build, earlier, later = mapping.build, before.get, fresh.get

    def built(row: Row) -> Record:
        if len(fresh) >= MAX_KEPT:  # a big read: built as before, at no cost more
            return build(row)
        key = row_key(row)
        if key is None:
            return build(row)
        record = earlier(key) or later(key)
        if record is None:
            record = build(row)  # a rejection is raised here, and nothing kept
        fresh[key] = record
        return record

    return built


def forget() -> None:
    """Drop every record kept (tests; a process that wants its memory back)."""
    with _LOCK:
        _KEPT.clear()
        _PLANS.clear()
