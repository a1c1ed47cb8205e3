"""From source rows to canonical items: rows through the compiled mapping and the gate,
checked for key order (a one-pass merge needs it), with the watermark seen and the rejected
rows named; which stays came due since the last run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, NoReturn

from bridge.core import gate
from bridge.core.errors import SourceOrderError
from bridge.core.fields import InvalidValue, key_part
from bridge.core.gate import Context, MissingReference
from bridge.core.mapping import CompiledMapping, RowRejected
from bridge.core.model import Hold, Record, Rejection
from bridge.core.plan import (
    Item,
)
from bridge.ports import KeyRange, Row
from bridge.service.engine.keys import shown_range, sort_bounds
from bridge.service.engine.options import ABOVE_EVERY_KEY


def due_stays(records: Iterable[Record], last_as_of: str | None, as_of: str) -> set[str]:
    """Pupils with a stay that began or ended after ``last_as_of`` and by ``as_of``: the day
    of a dated admission or withdrawal came since the last run. With no day remembered (the
    first run after an upgrade) every pupil with a stay ended by ``as_of`` is due: a withdrawal
    is never missed for want of a date."""
    if last_as_of is not None and last_as_of >= as_of:
        return set()
    names = ("date_to",) if last_as_of is None else ("date_from", "date_to")
    since = last_as_of or ""
    due: set[str] = set()
    for record in records:
        for name in names:
            day = record.payload.get(name)
            if day is not None and since <= str(day) <= as_of:
                due.add(gate.owner_pupil(record) or "")
    due.discard("")
    return due


class BuiltRows:
    """Rows read whole, each built by the mapping once: ``build`` gives again the record a row
    was built into, or raises its rejection again (for the passes that take the same rows)."""

    def __init__(
        self,
        mapping: CompiledMapping,
        rows: Iterable[Row],
        build: Callable[[Row], Record] | None = None,
    ) -> None:
        self.rows = list(rows)
        self._built: dict[int, Record | RowRejected] = {}
        build = mapping.build if build is None else build
        for row in self.rows:
            try:
                self._built[id(row)] = build(row)
            except RowRejected as exc:
                self._built[id(row)] = exc

    def build(self, row: Row) -> Record:
        """What the mapping built of ``row`` (one of ``rows``)."""
        built = self._built[id(row)]
        if isinstance(built, RowRejected):
            raise built
        return built


def rejected_rows(
    mapping: CompiledMapping, rows: Iterable[Row], build: Callable[[Row], Record] | None = None
) -> Iterator[tuple[Row, str]]:
    """(row, sort key or "") of every row the mapping rejects (a bad value, or a key that
    repeats an earlier row's); ``build``: the mapping's, or rows already built."""
    seen: set[str] = set()
    build = mapping.build if build is None else build
    for row in rows:
        try:
            record = build(row)
        except RowRejected as exc:
            yield row, exc.sort_key
            continue
        if record.sort_key in seen:
            yield row, record.sort_key
        seen.add(record.sort_key)


def _column_of(mapping: CompiledMapping, name: str) -> int | None:
    spec = next((f for f in mapping.fields if f.name == name), None)
    return None if spec is None else mapping.columns.index(spec.columns[0])


def _raw_key(row: Row, at: int | None) -> str | None:
    """A reference column's raw value as key text, None when it cannot be read."""
    raw = None if at is None else row[at]
    if raw is None:
        return None
    try:
        return key_part(raw.strip() if isinstance(raw, str) else raw)
    except InvalidValue:
        return None


class Watermark:
    """The highest raw watermark seen (drivers return one type per column: compare raw)."""

    def __init__(self) -> None:
        self.best: object = None

    def see(self, raw: object) -> None:
        """Remember ``raw`` if it is the highest so far."""
        if raw is not None and (self.best is None or raw > self.best):  # type: ignore[operator]
            self.best = raw

    def text(self) -> str | None:
        """The highest watermark as ISO text (state store format); None when the column does
        not hold date-times (then no watermark is kept and incremental runs read everything)."""
        best = _as_datetime(self.best)
        return None if best is None else best.isoformat(sep=" ")


def to_items(
    mapping: CompiledMapping,
    rows: Iterable[Row],
    ctx: Context,
    *,
    track: Watermark | None = None,
    gated: bool = True,
    indexed: bool = True,
    read: Counter[str] | None = None,
    key_range: KeyRange | None = None,
    build: Callable[[Row], Record] | None = None,
) -> Iterator[Item]:
    """Map (and unless ``gated`` is false, gate) rows that come in key order. A duplicate key is
    rejected (the first row with that key is kept); rows out of order mean the merge cannot be
    trusted: fatal, as is a row outside ``key_range`` (a database comparing keys otherwise than
    the sort keys do would pair it with the wrong state entries). ``read`` counts rows;
    ``build``: the mapping's, or rows already built (``BuiltRows``)."""
    entity, previous, count = mapping.entity, "", 0
    build = mapping.build if build is None else build
    check = gate.compile_check(entity, mapping.refs, ctx)
    remember = gate.compile_remember(entity, indexed, ctx)
    derive = gate.derive if entity in gate.DERIVED else None
    start, stop = _bounds(key_range)
    best: Any = None  # the highest watermark so far (inline: a call per row costs)
    try:
        for count, row in enumerate(rows, 1):  # noqa: B007 - read in finally
            try:
                record = build(row)
            except RowRejected as exc:
                if exc.sort_key and (not previous <= exc.sort_key < stop or exc.sort_key < start):
                    _raise_out_of_range(mapping, exc.key, previous, key_range)
                previous = max(previous, exc.sort_key)
                yield Rejection(
                    entity,
                    mapping.location,
                    exc.key,
                    exc.field,
                    exc.reason,
                    exc.sort_key,
                    closes=gate.reject_row(ctx, entity, exc.key),
                )
                continue
            mark = record.watermark
            best = mark if mark is not None and (best is None or mark > best) else best
            if not previous < record.sort_key < stop or record.sort_key < start:
                yield _out_of_order(mapping, record, previous, key_range)
                continue
            previous = record.sort_key
            if not gated:
                yield record
                continue
            verdict = check(record)
            if verdict is None or verdict.__class__ is not MissingReference:
                if derive is not None:
                    record = derive(record, ctx)
                if remember is not None:
                    remember(record)
                yield record if verdict is None else Hold(record, verdict)  # type: ignore[arg-type]
            else:
                yield _dangling(mapping, record, verdict, ctx)
    finally:
        if read is not None:
            read[entity] += count
        if track is not None and best is not None:
            track.see(best)


def _bounds(key_range: KeyRange | None) -> tuple[str, str]:
    """The sort keys ``[start, stop)`` of a key range ("" and a key above every sort key when
    it is open)."""
    start, stop = (None, None) if key_range is None else sort_bounds(key_range)
    return start or "", stop or ABOVE_EVERY_KEY


def _out_of_order(
    mapping: CompiledMapping, record: Record, previous: str, key_range: KeyRange | None
) -> Rejection:
    start, stop = _bounds(key_range)
    if record.sort_key != previous or not start <= record.sort_key < stop:
        _raise_out_of_range(mapping, record.key, previous, key_range)
    return Rejection(
        mapping.entity,
        mapping.location,
        record.key,
        ",".join(mapping.key_columns),
        "duplicate key: an earlier row has the same key and was kept",
    )


def _raise_out_of_range(
    mapping: CompiledMapping, key: str, previous: str, key_range: KeyRange | None
) -> NoReturn:
    """Raise for a row out of key order, or outside the key range being read."""
    if key_range is not None:
        previous = f"{previous or 'nothing'}, reading {shown_range(key_range)}"
    raise SourceOrderError(mapping.entity, mapping.location, key, previous)


def _dangling(
    mapping: CompiledMapping, record: Record, missing: MissingReference, ctx: Context
) -> Rejection:
    if missing.rejected:
        # Its parent is bad, not gone: its own children must not be taken for orphans.
        ctx.forget(mapping.entity, record.key)
    return Rejection(
        mapping.entity,
        mapping.location,
        record.key,
        missing.field,
        missing.reason,
        record.sort_key,
        dangling=not missing.rejected,
    )


def _as_datetime(raw: object) -> datetime | None:
    if isinstance(raw, str) and raw:
        try:
            raw = datetime.fromisoformat(raw)
        except ValueError:
            return None
    if isinstance(raw, datetime):
        return raw if raw.tzinfo is None else raw.replace(tzinfo=None)
    return None
