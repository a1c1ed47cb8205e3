"""Reading the delivered records: ``entries()`` streams one entity in ``sort_key`` order
(binary collation, the same order the planner merges in), so a full plan never holds the state
of a whole entity in memory; lookups by key in chunks; counts; the watermarks."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa

from bridge.adapters.seam import describe
from bridge.adapters.state.helpers import chunks
from bridge.adapters.state.schema import DELETED, record_state, watermark
from bridge.core.errors import StateError
from bridge.core.model import EntryView, StateEntry, Value

LOOKUP_CHUNK = 500

_ENTRY_COLUMNS = (
    record_state.c.entity,
    record_state.c.key,
    record_state.c.sort_key,
    record_state.c.fingerprint,
    record_state.c.status,
    record_state.c.pupil_key,
    record_state.c.class_key,
)


# Lookups built once, with parameters (building a Select and its cache key each time costs
# more than a small lookup itself; SQLAlchemy compiles the same object once per engine).
_ENTITY = sa.bindparam("entity", type_=record_state.c.entity.type)
_LOOKUP = sa.select(*_ENTRY_COLUMNS).where(
    record_state.c.entity == _ENTITY,
    record_state.c.sort_key.in_(sa.bindparam("keys", expanding=True)),
    record_state.c.status != DELETED,
)
_PAYLOADS = sa.select(record_state.c.sort_key, record_state.c.payload).where(
    record_state.c.entity == _ENTITY,
    record_state.c.sort_key.in_(sa.bindparam("keys", expanding=True)),
)
_WATERMARK = sa.select(watermark.c.value).where(
    watermark.c.entity == sa.bindparam("entity", type_=watermark.c.entity.type)
)


def _entry(row: Sequence[Any]) -> StateEntry:
    return StateEntry(row[0], row[1], row[2], row[3], row[4], None, row[5], row[6])


class RecordReads:
    """What the store knows of delivered records (a part of SqlStateStore)."""

    engine: sa.Engine

    def entries(self, entity: str) -> Iterator[EntryView]:
        yield from self._entries(entity, None, None)

    def entries_between(
        self, entity: str, start: str | None, stop: str | None
    ) -> Iterator[EntryView]:
        yield from self._entries(entity, start, stop)

    def _entries(self, entity: str, start: str | None, stop: str | None) -> Iterator[EntryView]:
        query = (
            sa.select(record_state.c.sort_key, record_state.c.fingerprint, record_state.c.status)
            .where(record_state.c.entity == entity, record_state.c.status != DELETED)
            .order_by(record_state.c.sort_key)
        )
        if start is not None:
            query = query.where(record_state.c.sort_key >= start)
        if stop is not None:
            query = query.where(record_state.c.sort_key < stop)
        if self.engine.dialect.name == "sqlite":
            return self._sqlite_entries(query)
        return self._streamed_entries(query)

    def _streamed_entries(self, query: sa.Select[Any]) -> Iterator[EntryView]:
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=5000).execute(query)
            try:
                for partition in result.partitions():
                    yield from partition  # rows are (sort_key, fingerprint, status)
            finally:
                result.close()  # a merge may stop early: free the server-side cursor now

    def _sqlite_entries(self, query: sa.Select[Any]) -> Iterator[EntryView]:
        """The same query on SQLite's own cursor, which steps as it is read: its plain tuples
        cost half of what result rows do, over the million entries of a full run's merge."""
        with self.engine.connect() as conn:
            compiled = query.compile(dialect=conn.dialect)
            params = [compiled.params[name] for name in compiled.positiontup or ()]
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(str(compiled), params)
                while rows := cursor.fetchmany(5000):
                    yield from rows
            except sqlite3.Error as exc:  # what SQLAlchemy would have wrapped
                raise StateError("reading the state store", describe(exc)) from exc
            finally:
                cursor.close()

    def lookup(self, entity: str, sort_keys: Sequence[str]) -> dict[str, StateEntry]:
        found: dict[str, StateEntry] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sort_keys, LOOKUP_CHUNK):
                rows = conn.execute(_LOOKUP, {"entity": entity, "keys": list(chunk)})
                found.update((row[2], _entry(row)) for row in rows)
        return found

    def payloads(self, entity: str, sort_keys: Sequence[str]) -> dict[str, Mapping[str, Value]]:
        found: dict[str, Mapping[str, Value]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(sort_keys, LOOKUP_CHUNK):
                rows = conn.execute(_PAYLOADS, {"entity": entity, "keys": list(chunk)})
                found.update((k, json.loads(p)) for k, p in rows if p)
        return found

    def tombstones(self, entity: str, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(keys, LOOKUP_CHUNK):
                query = sa.select(record_state.c.key, record_state.c.sort_key).where(
                    record_state.c.entity == entity,
                    record_state.c.key.in_(chunk),
                    record_state.c.status == DELETED,
                )
                found.update((str(k), str(s)) for k, s in conn.execute(query))
        return found

    def portal_ids(self, entity: str, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        c = _by_index(self.engine)
        with self.engine.connect() as conn:
            for chunk in chunks(keys, LOOKUP_CHUNK):
                query = _from_index(self.engine, "ix_record_state_key").where(
                    c.entity == entity,
                    c.key.in_(chunk),
                    c.status != DELETED,
                    c.portal_id.is_not(None),
                )
                found.update((str(k), str(p)) for k, p in conn.execute(query))
        return found

    def holders(self, entity: str, portal_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        c = _by_index(self.engine)
        with self.engine.connect() as conn:
            for chunk in chunks(portal_ids, LOOKUP_CHUNK):
                query = _from_index(self.engine, "ix_record_state_portal_id").where(
                    c.entity == entity,
                    c.portal_id.in_(chunk),  # implies the partial index's IS NOT NULL
                    c.status != DELETED,
                )
                found.update((str(k), str(p)) for k, p in conn.execute(query))
        return {p: k for k, p in found.items()}

    def count(self, entity: str) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(record_state)
            .where(record_state.c.entity == entity, record_state.c.status != DELETED)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def count_by_class(self, entity: str) -> dict[str, int]:
        query = (
            sa.select(record_state.c.class_key, sa.func.count())
            .where(
                record_state.c.entity == entity,
                record_state.c.status != DELETED,
                record_state.c.class_key.is_not(None),
            )
            .group_by(record_state.c.class_key)
        )
        with self.engine.connect() as conn:
            return {str(k): int(n) for k, n in conn.execute(query)}

    def count_open_by_class(self, entity: str) -> dict[str, int]:
        query = sa.select(record_state.c.class_key, record_state.c.payload).where(
            record_state.c.entity == entity,
            record_state.c.status != DELETED,
            record_state.c.class_key.is_not(None),
        )
        counts: dict[str, int] = {}
        with self.engine.connect() as conn:
            for class_key, payload in conn.execute(query):
                if json.loads(payload or "{}").get("date_to") is None:
                    counts[str(class_key)] = counts.get(str(class_key), 0) + 1
        return counts

    def watermark(self, entity: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(_WATERMARK, {"entity": entity}).scalar()
        return None if value is None else str(value)


def _by_index(engine: sa.Engine) -> Any:
    """The columns of ``record_state`` as the lookups by key or by portal id name them: the
    table's own on PostgreSQL, plain names over ``INDEXED BY`` on SQLite."""
    if engine.dialect.name != "sqlite":
        return record_state.c
    return _Columns()


def _from_index(engine: sa.Engine, index: str) -> sa.Select[str, str]:
    """``SELECT key, portal_id`` of ``record_state``; on SQLite through ``index`` (``INDEXED
    BY``): without statistics SQLite takes the primary key's entity prefix and reads every
    record of the entity for each chunk of keys (a fifth of a dnevnik.ru run's CPU)."""
    if engine.dialect.name != "sqlite":
        return cast("sa.Select[str, str]", sa.select(record_state.c.key, record_state.c.portal_id))
    source = sa.text(f"record_state INDEXED BY {index}")
    key, portal_id = sa.column("key", sa.String), sa.column("portal_id", sa.String)
    return sa.select(key, portal_id).select_from(source)


class _Columns:
    """Plain column names (``sa.column``), typed as ``record_state``'s for the bind values."""

    def __getattr__(self, name: str) -> sa.ColumnClause[Any]:
        return sa.column(name, record_state.c[name].type)
