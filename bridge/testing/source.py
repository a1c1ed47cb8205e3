"""The in-memory source (:class:`MemorySource`), for tests: rows held as dicts, read with the
SQL source's semantics, including its corners (SQL NULL never matches a filter, NULL keys sort
first, text after numbers). Passes the source contract (``tests/contracts/``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from bridge.adapters.source import whole_key
from bridge.core.errors import SourceError
from bridge.core.mapping import Filter
from bridge.ports import KeyedSource, KeyRange, RangedSource, Rescan, Row, Table

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


if TYPE_CHECKING:  # mypy proves the fake satisfies the ports it stands in for
    _RANGED: RangedSource = MemorySource()
    _KEYED: KeyedSource = MemorySource()
