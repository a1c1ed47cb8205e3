"""In-memory fakes of the ports, for tests: :class:`MemorySource` and :class:`MemoryStateStore`.

Each passes the same contract tests as the real adapter (``tests/contracts/``), so a test that
runs the engine on them proves something about the engine on the real ones. Both mirror the SQL
adapters' semantics, including their corners: SQL NULL never matches a filter, a tombstoned
entry keeps its row but leaves every live view, payloads travel through JSON.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from bridge.adapters.source import whole_key
from bridge.adapters.state import DELETED, is_valid, utc_now, withdrawal_changes
from bridge.core.errors import SourceError, UnknownPlan
from bridge.core.mapping import Filter
from bridge.core.model import EntryView, Op, StateEntry, Value
from bridge.ports import (
    Approval,
    Clock,
    DeadLetter,
    Delivered,
    HeldPlan,
    KeyRange,
    Refusal,
    Rescan,
    Row,
    Source,
    StateStore,
    Table,
)

TableRows = Mapping[str, Iterable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class ReadCall:
    """One call of :meth:`MemorySource.read`, kept so tests can see how the engine read."""

    entity: str
    table: str
    since: datetime | None
    rescan: Rescan | None
    key_range: KeyRange | None = None


class MemorySource:
    """The source port on rows held in memory: ``tables`` maps a table name to its rows (dicts of
    column → raw value). ``fail_after`` maps a table name to a row count: every read of that
    table yields at most that many rows and then raises SourceError, as a connection lost
    mid-read would."""

    def __init__(
        self, tables: TableRows | None = None, fail_after: Mapping[str, int] | None = None
    ) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {
            name: [dict(row) for row in rows] for name, rows in (tables or {}).items()
        }
        self.fail_after: dict[str, int] = dict(fail_after or {})
        self.reads: list[ReadCall] = []

    def read(
        self, mapping: Table, since: datetime | None = None, rescan: Rescan | None = None
    ) -> Iterator[Row]:
        """Rows of the mapping's table in key order (see :class:`bridge.ports.Source`)."""
        self.reads.append(ReadCall(mapping.entity, mapping.location, since, rescan, None))
        return self._rows(mapping, since, rescan, None)

    def read_range(self, mapping: Table, key_range: KeyRange) -> Iterator[Row]:
        """Rows of the mapping's table in ``key_range``, in key order."""
        self.reads.append(ReadCall(mapping.entity, mapping.location, None, None, key_range))
        return self._rows(mapping, None, None, key_range)

    def key_bounds(self, mapping: Table) -> tuple[int, int] | None:
        """MIN and MAX of the first key column, when both are whole numbers (as in SQL, where
        text sorts after numbers and NULL is ignored)."""
        column = mapping.key_columns[0]
        values = [r.get(column) for r in self._table(mapping, "finding the key range")]
        present = sorted((v for v in values if v is not None), key=_order)
        if not present:
            return None
        low, high = whole_key(present[0]), whole_key(present[-1])
        return None if low is None or high is None else (low, high)

    def after_fork(self) -> None:
        """Nothing to drop: the rows are in memory."""

    def read_keys(self, mapping: Table, keys: Sequence[str]) -> Iterator[Row]:
        """Rows of the mapping's table whose first key column is among ``keys``, in key order."""
        wanted, at = set(keys), mapping.columns.index(mapping.key_columns[0])
        rows = self._rows(mapping, None, None, None)
        return (r for r in rows if r[at] is not None and str(r[at]) in wanted)

    def read_keyless(self, mapping: Table) -> Iterator[Row]:
        """Rows of the mapping's table whose first key column is NULL."""
        at = mapping.columns.index(mapping.key_columns[0])
        return (r for r in self._rows(mapping, None, None, None) if r[at] is None)

    def key_totals(self, mapping: Table) -> tuple[int, int, int]:
        """(rows with a key, the sum of the keys, rows without a watermark), as SQL counts
        them (text that is not a number adds 0 to the sum, as in SQLite)."""
        rows = [
            r
            for r in self._table(mapping, f"counting the keys of {mapping.entity}")
            if all(_matches(r.get(f.column), f) for f in mapping.filters)
        ]
        keys = [r.get(mapping.key_columns[0]) for r in rows]
        present = [k for k in keys if k is not None]
        total = sum(k if isinstance(k, int) else whole_key(k) or 0 for k in present)
        unmarked = sum(1 for r in rows if mapping.watermark and r.get(mapping.watermark) is None)
        return len(present), total, unmarked

    def _rows(
        self,
        mapping: Table,
        since: datetime | None,
        rescan: Rescan | None,
        key_range: KeyRange | None,
    ) -> Iterator[Row]:
        operation = f"reading {mapping.entity} from table {mapping.location}"
        selected = self._select(mapping, since, rescan, operation)
        if key_range is not None:
            at = mapping.columns.index(key_range.column)
            selected = [r for r in selected if _in_range(r[at], key_range)]
        limit = self.fail_after.get(mapping.table, self.fail_after.get(mapping.location))
        yield from selected[:limit]
        if limit is not None:
            shown = min(limit, len(selected))
            raise SourceError(operation, f"connection lost after {shown} rows (simulated)")

    def _select(
        self,
        mapping: Table,
        since: datetime | None,
        rescan: Rescan | None,
        operation: str,
    ) -> list[Row]:
        rows = self._table(mapping, operation)
        named = [*mapping.columns, *(f.column for f in mapping.filters)]
        if since is not None and rescan is not None:
            named.append(rescan.column)
        _check_columns(rows, named, operation)
        kept = [r for r in rows if all(_matches(r.get(f.column), f) for f in mapping.filters)]
        if since is not None and mapping.watermark:
            kept = [r for r in kept if _is_changed(r, mapping.watermark, since, rescan)]
        kept.sort(key=lambda r: tuple(_order(r[k]) for k in mapping.key_columns))
        return [tuple(r[c] for c in mapping.columns) for r in kept]

    def _table(self, mapping: Table, operation: str) -> list[dict[str, Any]]:
        for name in (mapping.location, mapping.table):
            if name in self.tables:
                return self.tables[name]
        raise SourceError(operation, f"no such table: {mapping.location}")


def _check_columns(rows: list[dict[str, Any]], columns: Iterable[str], operation: str) -> None:
    """A column no row has is an error, as in SQL (a table without rows has every column)."""
    for column in columns:
        if any(column not in row for row in rows):
            raise SourceError(operation, f"no such column: {column}")


def _matches(value: Any, rule: Filter) -> bool:
    """One ``source.where`` rule with SQL semantics: NULL matches only ``is_null``."""
    if rule.op in ("is_null", "not_null"):
        return (value is None) == (rule.op == "is_null")
    if value is None:
        return False
    if rule.op in ("in", "not_in"):
        options = rule.value if isinstance(rule.value, list) else [rule.value]
        return (value in options) == (rule.op == "in")
    if rule.value is None:
        return False
    if rule.op in ("eq", "ne"):
        return bool(value == rule.value) == (rule.op == "eq")
    ordered = {
        "lt": value < rule.value,
        "le": value <= rule.value,
        "gt": value > rule.value,
        "ge": value >= rule.value,
    }
    return bool(ordered[rule.op])


def _is_changed(
    row: Mapping[str, Any], column: str, since: datetime, rescan: Rescan | None
) -> bool:
    """At or after ``since`` on the watermark column, or named by ``rescan``."""
    mark = _as_datetime(row[column])
    if mark is not None and mark >= since.replace(tzinfo=None):
        return True
    return rescan is not None and str(row[rescan.column]) in set(rescan.keys)


def _as_datetime(raw: object) -> datetime | None:
    if isinstance(raw, datetime):
        return raw.replace(tzinfo=None)
    if isinstance(raw, date):
        return datetime(raw.year, raw.month, raw.day)
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw).replace(tzinfo=None)
        except ValueError:
            return None
    return None


def _in_range(value: Any, key_range: KeyRange) -> bool:
    """SQL's ``low <= key < high`` (NULL only in the range open at its low end; text sorts
    after every number, so only in the range open at its high end)."""
    if value is None:
        return key_range.low is None
    if not isinstance(value, int | float):
        return key_range.high is None
    return (key_range.low is None or value >= key_range.low) and (
        key_range.high is None or value < key_range.high
    )


def _order(value: Any) -> tuple[int, Any]:
    """ORDER BY one column: NULL first, then numbers, then text in code-point (binary) order."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, bytes | str):
        return (3, value)
    return (2, value)


# --- state ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredRow:
    """Everything the store keeps of one (entity, sort key), as the SQL store's row does."""

    entity: str
    sort_key: str
    key: str
    fingerprint: str
    status: str
    payload: Mapping[str, Value] | None
    portal_id: str | None
    mapping_version: int
    pupil_key: str | None
    class_key: str | None
    first_delivered_at: datetime
    updated_at: datetime

    def entry(self) -> StateEntry:
        """The entry as ``entries`` and ``lookup`` give it (without the payload)."""
        return StateEntry(
            self.entity,
            self.key,
            self.sort_key,
            self.fingerprint,
            self.status,
            None,
            self.pupil_key,
            self.class_key,
        )

    @property
    def is_live(self) -> bool:
        """True unless the entry is a tombstone."""
        return self.status != DELETED


T = TypeVar("T")


def _synchronized(cls: type[T]) -> type[T]:
    """Every public method of ``cls`` under the instance's lock: delivery records answered
    batches in a thread of its own while planning reads (as two connections would)."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(member):
            continue

        def locked(*args: Any, _method: Callable[..., Any] = member, **kwargs: Any) -> Any:
            with args[0].lock:
                return _method(*args, **kwargs)

        setattr(cls, name, functools.wraps(member)(locked))
    return cls


@_synchronized
class MemoryStateStore:
    """The state store port in memory, with the semantics of ``SqlStateStore``."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.rows: dict[tuple[str, str], StoredRow] = {}
        self.watermarks: dict[str, str] = {}
        self.regating: set[str] = set()
        self.gated_as_of: str | None = None
        self.approvals: dict[str, Approval] = {}
        self.held: dict[str, HeldPlan] = {}
        self.letters: dict[tuple[str, str], DeadLetter] = {}
        self.batches: dict[tuple[str, int], str] = {}
        self.withdrawn: dict[str, datetime] = {}
        self._gate_cache: dict[str, str] = {}

    def _live(self, entity: str) -> Iterator[StoredRow]:
        return (r for r in self.rows.values() if r.entity == entity and r.is_live)

    def entries(self, entity: str) -> Iterator[EntryView]:
        """Live entries of ``entity`` in sort_key order, as (sort key, fingerprint, status)."""
        return self.entries_between(entity, None, None)

    def entries_between(
        self, entity: str, start: str | None, stop: str | None
    ) -> Iterator[EntryView]:
        """Live entries of ``entity`` in ``[start, stop)`` (None: open), in sort_key order."""
        rows = sorted(
            (
                r
                for r in self._live(entity)
                if (start is None or r.sort_key >= start) and (stop is None or r.sort_key < stop)
            ),
            key=lambda r: r.sort_key,
        )
        return iter([(r.sort_key, r.fingerprint, r.status) for r in rows])

    def lookup(self, entity: str, sort_keys: Sequence[str]) -> dict[str, StateEntry]:
        """Live entries of ``entity`` among ``sort_keys``, by sort key."""
        found = (self.rows.get((entity, k)) for k in sort_keys)
        return {r.sort_key: r.entry() for r in found if r is not None and r.is_live}

    def payloads(self, entity: str, sort_keys: Sequence[str]) -> dict[str, Mapping[str, Value]]:
        """The recorded payloads of the given live entries, by sort key."""
        found = (self.rows.get((entity, k)) for k in sort_keys)
        return {
            r.sort_key: _copy(r.payload) for r in found if r is not None and r.payload is not None
        }

    def tombstones(self, entity: str, keys: Sequence[str]) -> dict[str, str]:
        """Key → sort key of the deleted entries of ``entity`` among ``keys``."""
        wanted = set(keys)
        return {
            r.key: r.sort_key
            for r in self.rows.values()
            if r.entity == entity and not r.is_live and r.key in wanted
        }

    def record(self, delivered: Sequence[Delivered]) -> None:
        """Record acknowledged changes, all or nothing: upserts first, then tombstones."""
        now = self.clock()
        live = [self._stored(d, now) for d in delivered if d.change.op != Op.DELETE]
        rows = dict(self.rows)
        for row in live:
            old = rows.get((row.entity, row.sort_key))
            kept = row if old is None else replace(row, first_delivered_at=old.first_delivered_at)
            rows[(row.entity, row.sort_key)] = kept
        for d in delivered:
            at = (d.change.entity, d.change.sort_key)
            if d.change.op == Op.DELETE and at in rows:
                rows[at] = replace(
                    rows[at], status=DELETED, fingerprint="", payload=None, updated_at=now
                )
        self.rows = rows
        withdrawn, back = withdrawal_changes(delivered)
        for key in back:
            self.withdrawn.pop(key, None)
        for key in withdrawn:
            self.withdrawn.setdefault(key, now)

    def withdrawals(self) -> dict[str, datetime]:
        """Pupil key → when the pupil first left the portal for lack of consent."""
        return dict(self.withdrawn)

    @staticmethod
    def _stored(d: Delivered, now: datetime) -> StoredRow:
        change, record = d.change, d.change.record
        assert record is not None, "only deletes come without a record"
        status = "archived" if change.op == Op.ARCHIVE else "delivered"
        payload = json.loads(json.dumps(dict(record.payload), ensure_ascii=False))
        return StoredRow(
            change.entity,
            change.sort_key,
            change.key,
            record.fingerprint,
            status,
            payload,
            d.portal_id,
            d.mapping_version,
            d.pupil_key,
            d.class_key,
            now,
            now,
        )

    def count(self, entity: str) -> int:
        """How many live entries ``entity`` has."""
        return sum(1 for _ in self._live(entity))

    def count_by_class(self, entity: str) -> dict[str, int]:
        """Live entries of ``entity`` per owner class."""
        counts: dict[str, int] = {}
        for row in self._live(entity):
            if row.class_key is not None:
                counts[row.class_key] = counts.get(row.class_key, 0) + 1
        return counts

    def watermark(self, entity: str) -> str | None:
        """The watermark an incremental read of ``entity`` starts from."""
        return self.watermarks.get(entity)

    def set_watermarks(self, marks: Mapping[str, str]) -> None:
        """Advance the watermarks of the given entities."""
        self.watermarks.update(marks)

    def regate_marks(self) -> set[str]:
        """Pupils marked for re-gating."""
        return set(self.regating)

    def mark_regate(self, pupils: Collection[str]) -> None:
        """Mark pupils for re-gating."""
        self.regating.update(pupils)

    def finish_regate(self, pupils: Collection[str] | None, as_of: str) -> None:
        """Clear re-gating marks (None: all) and remember the day gated for."""
        if pupils is None:
            self.regating.clear()
        else:
            self.regating.difference_update(pupils)
        self.gated_as_of = as_of

    def gate_cache(self, entity: str) -> str | None:
        """The gate's snapshot kept for ``entity``, if any."""
        return self._gate_cache.get(entity)

    def set_gate_cache(self, entity: str, snapshot: str) -> None:
        """Keep the gate's snapshot of ``entity``."""
        self._gate_cache[entity] = snapshot

    def last_as_of(self) -> str | None:
        """The day the last complete run gated for."""
        return self.gated_as_of

    def open_batch(self, run_id: str, batch: int, operations: int) -> None:
        """Record the intent to send a batch."""
        self.batches[(run_id, batch)] = "sent"

    def commit_batch(
        self,
        run_id: str,
        batch: int,
        delivered: Sequence[Delivered],
        refused: Sequence[Refusal],
        max_attempts: int,
    ) -> None:
        """Record acknowledged changes, count refusals, close the intent."""
        self.record(delivered)
        for d in delivered:
            self.letters.pop((d.change.entity, d.change.sort_key), None)
        for refusal in refused:
            change = refusal.change
            before = self.letters.get((change.entity, change.sort_key))
            attempts = (before.attempts if before else 0) + 1
            self.letters[(change.entity, change.sort_key)] = DeadLetter(
                change.entity,
                change.key,
                change.sort_key,
                change.fingerprint or "",
                change.op.value,
                attempts,
                refusal.kind,
                refusal.reason[:500],
                "dead" if attempts >= max_attempts else "retrying",
            )
        self.batches[(run_id, batch)] = "acked"

    def dead_letters(self) -> dict[tuple[str, str], DeadLetter]:
        """Every dead letter by (entity, sort key)."""
        return dict(self.letters)

    def revive(self, entity: str | None = None) -> int:
        """Make dead letters eligible again; returns how many."""
        revived = [
            k
            for k, v in self.letters.items()
            if v.is_dead and (entity is None or v.entity == entity)
        ]
        for k in revived:
            self.letters[k] = replace(self.letters[k], status="retrying", attempts=0)
        return len(revived)

    def count_open_by_class(self, entity: str) -> dict[str, int]:
        """Live entries of ``entity`` per owner class with no ``date_to`` in their payload."""
        counts: dict[str, int] = {}
        for row in self._live(entity):
            if row.class_key is not None and (row.payload or {}).get("date_to") is None:
                counts[row.class_key] = counts.get(row.class_key, 0) + 1
        return counts

    def hold_plan(self, plan_id: str, summary: str) -> None:
        """Remember a held plan (the first time held is kept, the summary updated)."""
        first = self.held.get(plan_id)
        self.held[plan_id] = HeldPlan(
            plan_id, first.held_at if first else self.clock(), summary[:500]
        )

    def held_plan(self, plan_id: str) -> HeldPlan | None:
        """The held plan ``plan_id``, if a guard held it."""
        return self.held.get(plan_id)

    def approval(self, plan_id: str) -> Approval | None:
        """The approval of the held plan ``plan_id``, valid or expired."""
        return self.approvals.get(plan_id)

    def is_approved(self, plan_id: str, valid_for: timedelta | None = None) -> bool:
        """True when an admin approved the held plan ``plan_id`` (within ``valid_for``)."""
        return is_valid(self.approvals.get(plan_id), self.clock(), valid_for)

    def approve(self, plan_id: str, by: str) -> None:
        """Record (or renew) an admin's approval of a held plan; UnknownPlan for any other id."""
        if plan_id not in self.held:
            raise UnknownPlan(plan_id)
        self.approvals[plan_id] = Approval(by, self.clock())

    def close(self) -> None:
        """Nothing to release; here for parity with ``SqlStateStore``."""

    def after_fork(self) -> None:
        """Nothing to drop: the rows are in memory (a forked process reads its own copy)."""


def _copy(payload: Mapping[str, Value]) -> dict[str, Value]:
    """A payload the caller may change without changing the store."""
    return dict(json.loads(json.dumps(dict(payload), ensure_ascii=False)))


if TYPE_CHECKING:  # mypy proves the fakes satisfy the ports they stand in for
    _SOURCE: Source = MemorySource()
    _STATE: StateStore = MemoryStateStore()
