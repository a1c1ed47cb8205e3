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

MAX_KEPT = 20_000
"""Rows kept per entity; the rows of a bigger read beyond these are built as before."""

EQUAL = frozenset({str, int, bool, bytes, dt.date, type(None)})
"""Types whose equal values (of the same type) build the same record."""

BY_REPR = frozenset({float, Decimal, dt.datetime, dt.time})
"""Types whose equal values may build different records: compared by ``repr`` as well."""

_KEPT: dict[int, tuple[CompiledMapping, dict[tuple[Any, ...], Record]]] = {}
_LOCK = threading.Lock()


def row_key(row: Row) -> tuple[Any, ...] | None:
    """What identifies ``row``'s values for building (types, and values or their repr); None
    when a value is of a type not known to build alike when equal."""
    kinds = tuple(v.__class__ for v in row)
    values = []
    for kind, value in zip(kinds, row, strict=True):
        if kind in EQUAL:
            values.append(value)
        elif kind in BY_REPR:
            values.append(repr(value))
        else:
            return None
    return kinds, *values


def builder(mapping: CompiledMapping) -> Callable[[Row], Record]:
    """``mapping.build`` for one read, giving the records built in the last read of the
    mapping in this process again for rows with the same values."""
    fresh: dict[tuple[Any, ...], Record] = {}
    with _LOCK:
        kept = _KEPT.get(id(mapping))
        before = kept[1] if kept is not None and kept[0] is mapping else {}
        _KEPT[id(mapping)] = (mapping, fresh)  # the mapping kept with it: its id stays its own
    build = mapping.build

    def built(row: Row) -> Record:
        if len(fresh) >= MAX_KEPT:
            return build(row)
        key = row_key(row)
        if key is None:
            return build(row)
        record = before.get(key) or fresh.get(key)
        if record is None:
            record = build(row)  # a rejection is raised here, and nothing kept
        fresh[key] = record
        return record

    return built


def forget() -> None:
    """Drop every record kept (tests; a process that wants its memory back)."""
    with _LOCK:
        _KEPT.clear()
