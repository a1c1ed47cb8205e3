"""The source port: rows of the ASIOU database, read-only, streamed, in key order.

Queries are SQLAlchemy Core ``Select`` objects built from a mapping alone (testable without a
database: ``build_select`` compiles for any dialect, mssql included). Columns are untyped so a
driver's raw value reaches the converters unchanged, and one bad cell cannot break the read.
Driver errors become :class:`~bridge.core.errors.SourceError` here, at the seam.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from bridge.adapters.seam import describe
from bridge.core.errors import SourceError
from bridge.core.fields import whole_number
from bridge.core.mapping import CompiledMapping, Filter
from bridge.ports import KeyRange, Rescan, Row, Table

STREAM_BATCH = 5000


def _condition(column: sa.ColumnClause[Any], rule: Filter) -> sa.ColumnElement[bool]:
    value = rule.value
    match rule.op:
        case "is_null":
            return column.is_(None)
        case "not_null":
            return column.is_not(None)
        case "in":
            return column.in_(value if isinstance(value, list) else [value])
        case "not_in":
            return column.not_in(value if isinstance(value, list) else [value])
    conditions = {
        "eq": column == value,
        "ne": column != value,
        "lt": column < value,
        "le": column <= value,
        "gt": column > value,
        "ge": column >= value,
    }
    return conditions[rule.op]


def build_select(
    mapping: Table,
    since: datetime | None = None,
    rescan: Rescan | None = None,
    key_range: KeyRange | None = None,
) -> sa.Select[Any]:
    """The query that reads one mapping's rows in key order (optionally only changed rows, or
    only a range of keys)."""
    table = sa.table(mapping.table, *(sa.column(c) for c in mapping.columns), schema=mapping.schema)
    query = sa.select(*(table.c[c] for c in mapping.columns))
    for rule in mapping.filters:
        query = query.where(_condition(sa.column(rule.column), rule))
    if since is not None and mapping.watermark:
        query = query.where(_changed(sa.column, mapping, since, _named(rescan)))
    if key_range is not None:
        query = query.where(_in_range(sa.column(key_range.column), key_range))
    return query.order_by(*(_ordered(table.c[k], mapping) for k in mapping.key_columns))


Column = Callable[[str], sa.ColumnElement[Any]]
Keys = list[int | str] | sa.BindParameter[Any]
"""Keys for an IN list: the values, or an expanding parameter standing for them."""
Since = datetime | sa.BindParameter[Any]
"""A watermark's lower bound: the value, or a parameter standing for it."""

SINCE: sa.BindParameter[Any] = sa.bindparam("since", type_=sa.DateTime)


def _rescan_keys(rescan: Rescan) -> list[int | str]:
    """The rescanned keys, whole numbers bound as numbers (an index on a number column)."""
    return [int(k) if k.isdigit() else k for k in rescan.keys]


def _named(rescan: Rescan | None) -> tuple[str, list[int | str]] | None:
    """The column and keys ``rescan`` names, or None when it names none."""
    return None if rescan is None or not rescan.keys else (rescan.column, _rescan_keys(rescan))


def _changed(
    column: Column, mapping: Table, since: Since, rescan: tuple[str, Keys] | None
) -> sa.ColumnElement[bool]:
    """Rows whose watermark is at or after ``since``, or whose ``rescan`` column holds one of
    its keys."""
    mark = since if isinstance(since, sa.BindParameter) else sa.literal(since, sa.DateTime)
    condition = column(mapping.watermark or "") >= mark
    if rescan is not None:
        condition = sa.or_(condition, column(rescan[0]).in_(rescan[1]))
    return condition


def changed_by_key(mapping: Table, since: datetime, rescan: Rescan | None) -> sa.Select[Any]:
    """The rows whose key is among the changed rows' keys (found by the watermark's index and
    the rescan column's), in key order."""
    return _changed_by_key(mapping, since, _named(rescan))


def _changed_by_key(
    mapping: Table, since: Since, rescan: tuple[str, Keys] | None
) -> sa.Select[Any]:
    key = mapping.key_columns[0]
    names = dict.fromkeys((key, mapping.watermark or "", *([] if rescan is None else [rescan[0]])))
    inner = sa.table(mapping.table, *(sa.column(c) for c in names), schema=mapping.schema).alias()
    keys = sa.select(inner.c[key]).where(_changed(inner.c.__getitem__, mapping, since, None))
    if rescan is not None:
        named = inner.c[rescan[0]].in_(rescan[1])
        keys = sa.union(keys, sa.select(inner.c[key]).where(named))  # type: ignore[assignment]
    return build_select(mapping).where(sa.column(key).in_(keys))


def changed_without_key(mapping: Table, since: datetime, rescan: Rescan | None) -> sa.Select[Any]:
    """The changed rows whose key is NULL (rejections: no key, no place in the order)."""
    return _changed_without_key(mapping, since, _named(rescan))


def _changed_without_key(
    mapping: Table, since: Since, rescan: tuple[str, Keys] | None
) -> sa.Select[Any]:
    key: sa.ColumnClause[Any] = sa.column(mapping.key_columns[0])
    changed = _changed(sa.column, mapping, since, rescan)
    return build_select(mapping).order_by(None).where(key.is_(None), changed)


def _keys_param(name: str, keys: list[int | str]) -> sa.BindParameter[Any]:
    """An expanding parameter for ``keys``, typed as SQLAlchemy types a list of values: as
    its first value (a whole number, text, or text beyond ASCII: NVARCHAR on MS SQL)."""
    return sa.bindparam(name, expanding=True, type_=sa.literal(keys[0]).type)


def _key_kind(keys: list[int | str]) -> str:
    """The name of the type ``_keys_param`` gives ``keys`` (a query is built once per type)."""
    return type(sa.literal(keys[0]).type).__name__


def _in_range(column: sa.ColumnClause[Any], key_range: KeyRange) -> sa.ColumnElement[bool]:
    conditions = []
    if key_range.low is not None:
        conditions.append(column >= key_range.low)
    if key_range.high is not None:
        below = column < key_range.high
        conditions.append(below if key_range.low is not None else sa.or_(below, column.is_(None)))
    return sa.and_(sa.true(), *conditions)


def _key_totals(mapping: Table) -> sa.Select[Any]:
    """The count and sum of the keys of the rows a whole read reads, and how many of them
    have no watermark."""
    rows = build_select(mapping).order_by(None)
    if mapping.watermark and mapping.watermark not in mapping.columns:
        rows = rows.add_columns(sa.column(mapping.watermark))
    keyed = rows.subquery()
    column = keyed.c[mapping.key_columns[0]]
    unmarked = (  # CASE, not FILTER: MariaDB and MS SQL have no FILTER
        sa.func.sum(sa.case((keyed.c[mapping.watermark].is_(None), 1), else_=0))
        if mapping.watermark
        else sa.literal(0)
    )
    return sa.select(sa.func.count(column), sa.func.coalesce(sa.func.sum(column), 0), unmarked)


def whole_key(raw: object) -> int | None:
    """A key bound as a whole number: ints, and the Decimal or float some drivers return for
    numeric columns; never text (text keys do not sort as numbers)."""
    return None if raw is None or isinstance(raw, str | bytes) else whole_number(raw)


def _ordered(column: sa.ColumnClause[Any], mapping: Table) -> sa.ColumnElement[Any]:
    """Key columns in the order the planner merges in; text keys may need a binary collation
    (``source.key_collation``: utf8mb4_bin on MariaDB, Latin1_General_BIN2 on MS SQL)."""
    if mapping.key_collation:
        return column.collate(mapping.key_collation)
    return column


class SqlSource:
    """The source on any SQLAlchemy URL: SQLite, ``mysql+pyodbc``, ``mssql+pyodbc``, PostgreSQL.

    Each query is built once per mapping and kind, with parameters for what varies (the
    watermark's bound, keys): building a ``Select`` and its cache key costs more than running
    a small query, and SQLAlchemy compiles the same object once per engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.inherited: sa.Pool | None = None  # a parent's pool, kept after a fork
        self._queries: dict[tuple[Any, ...], tuple[Table, sa.Select[Any]]] = {}
        self.beat: Callable[[], None] | None = None  # told per chunk of rows read

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect name of the source database."""
        return self.engine.dialect.name

    def _query(
        self, mapping: Table, kind: tuple[Any, ...], build: Callable[[], sa.Select[Any]]
    ) -> sa.Select[Any]:
        """The query of ``kind`` for ``mapping``, built once (the mapping is kept with it, so
        no other object can take its id while the query is cached)."""
        key = (id(mapping), *kind)
        found = self._queries.get(key)
        if found is None or found[0] is not mapping:
            found = self._queries[key] = (mapping, build())
        return found[1]

    def read(
        self, mapping: Table, since: datetime | None = None, rescan: Rescan | None = None
    ) -> Iterator[Row]:
        if since is None or not mapping.watermark:
            return self._read(
                mapping, self._query(mapping, ("all",), lambda: build_select(mapping))
            )
        if len(mapping.key_columns) != 1:
            return self._read(mapping, build_select(mapping, since, rescan))
        return self._read_changed(mapping, since, rescan)

    def _read_changed(
        self, mapping: Table, since: datetime, rescan: Rescan | None
    ) -> Iterator[Row]:
        """An incremental read by the indexes: the keys of the changed rows (and of the rows
        ``rescan`` names) first, then their rows in key order, then the changed rows without
        a key (they become rejections). A database asked for ``watermark >= ? ORDER BY key``
        at once often scans the whole table in key order instead of using the watermark's
        index (SQLite does)."""
        named = _named(rescan)
        params: dict[str, Any] = {"since": since}
        bound: tuple[str, Keys] | None = None
        kind: tuple[Any, ...] = ()
        if named is not None:
            params["rescan"] = named[1]
            bound = (named[0], _keys_param("rescan", named[1]))
            kind = (named[0], _key_kind(named[1]))
        by_key = self._query(
            mapping, ("changed", *kind), lambda: _changed_by_key(mapping, SINCE, bound)
        )
        without = self._query(
            mapping, ("changed-keyless", *kind), lambda: _changed_without_key(mapping, SINCE, bound)
        )
        yield from self._read(mapping, by_key, params)
        yield from self._read(mapping, without, params)

    def read_range(self, mapping: Table, key_range: KeyRange) -> Iterator[Row]:
        return self._read(mapping, build_select(mapping, key_range=key_range))

    def read_keys(self, mapping: Table, keys: Sequence[str]) -> Iterator[Row]:
        bound = _rescan_keys(Rescan(mapping.key_columns[0], keys))
        if not bound:
            return iter(())
        key: sa.ColumnClause[Any] = sa.column(mapping.key_columns[0])
        query = self._query(
            mapping,
            ("keys", _key_kind(bound)),
            lambda: build_select(mapping).where(key.in_(_keys_param("keys", bound))),
        )
        return self._read(mapping, query, {"keys": bound})

    def read_keyless(self, mapping: Table) -> Iterator[Row]:
        key: sa.ColumnClause[Any] = sa.column(mapping.key_columns[0])
        query = self._query(
            mapping, ("keyless",), lambda: build_select(mapping).order_by(None).where(key.is_(None))
        )
        return self._read(mapping, query)

    def key_totals(self, mapping: Table) -> tuple[int, int, int]:
        query = self._query(mapping, ("totals",), lambda: _key_totals(mapping))
        try:
            with self.engine.connect() as conn:
                count, total, without = conn.execute(query).one()
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(
                f"counting the keys of {mapping.entity} in table {mapping.location}",
                describe(exc),
            ) from exc
        return int(count), int(total), int(without or 0)

    def _read(
        self, mapping: Table, query: sa.Select[Any], params: dict[str, Any] | None = None
    ) -> Iterator[Row]:
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(yield_per=STREAM_BATCH).execute(query, params)
                beat = self.beat
                for partition in result.partitions():
                    if beat is not None:
                        beat()
                    yield from partition
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(
                f"reading {mapping.entity} from table {mapping.location}", describe(exc)
            ) from exc

    def key_bounds(self, mapping: Table) -> tuple[int, int] | None:
        column: sa.ColumnClause[Any] = sa.column(mapping.key_columns[0])
        query = sa.select(sa.func.min(column), sa.func.max(column)).select_from(
            sa.table(mapping.table, schema=mapping.schema)
        )
        try:
            with self.engine.connect() as conn:
                low, high = conn.execute(query).one()
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(
                f"finding the key range of {mapping.entity} in table {mapping.location}",
                describe(exc),
            ) from exc
        low, high = whole_key(low), whole_key(high)
        return None if low is None or high is None else (low, high)

    def after_fork(self) -> None:
        # The parent's pool stays referenced: collected here, it would close the parent's
        # connections (pyodbc would disconnect them), which are not this process's to close.
        self.inherited = self.engine.pool
        self.engine.dispose(close=False)

    def missing_tables(self, mappings: Sequence[CompiledMapping]) -> list[str]:
        """Tables or views the mappings need that the database does not have."""
        try:
            inspector = sa.inspect(self.engine)
            missing = []
            for m in mappings:
                names = set(inspector.get_table_names(schema=m.schema)) | set(
                    inspector.get_view_names(schema=m.schema)
                )
                if m.table not in names:
                    missing.append(m.location)
            return missing
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError("inspecting the source database", describe(exc)) from exc


def _odbc_disconnect(context: sa.engine.ExceptionContext) -> None:
    """Take an ODBC connection exception (SQLSTATE class 08: "Lost connection to server", a
    link failure) for a lost connection, as SQLAlchemy's pyodbc dialects for MariaDB do not:
    the pool then replaces the connection (``pre_ping`` tests it before use) instead of
    failing every run until a restart."""
    args = getattr(context.original_exception, "args", ())
    if args and isinstance(args[0], str) and args[0].startswith("08"):
        context.is_disconnect = True


def _query_timeout(engine: sa.Engine, seconds: float) -> None:
    """Every connection of ``engine`` stops a query after ``seconds``, waiting on a lock
    included (MariaDB's ``max_statement_time``, PostgreSQL's ``statement_timeout``, the ODBC
    query timeout for SQL Server): a query that never returns fails the run instead of
    hanging the daemon. SQLite reads a file and has nothing to wait on but its own locks."""
    dialect, driver = engine.dialect.name, engine.dialect.driver
    if seconds <= 0 or dialect == "sqlite":
        return
    if dialect in ("mysql", "mariadb"):
        statement = f"SET SESSION max_statement_time = {float(seconds)}"
    elif dialect == "postgresql":
        statement = f"SET statement_timeout = {int(seconds * 1000)}"
    else:
        statement = ""

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        if statement:
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()
        elif driver == "pyodbc":
            dbapi_connection.timeout = max(1, int(seconds))

    sa.event.listen(engine, "connect", on_connect)


def open_source(url: str, *, pre_ping: bool = False, query_timeout: float = 0) -> SqlSource:
    """A source on a SQLAlchemy URL (read-only by how it is used; never writes). ``pre_ping``:
    each pooled connection is tested before use and replaced if the database dropped it (a
    source kept open between runs outlives a restart of the database). ``query_timeout``:
    seconds a query may run (0: no limit). A SQLite file is opened read-only, and a missing
    one is an error ("source file not found"), never created."""
    try:
        parsed = sa.make_url(url)
        connect = _sqlite_read_only(parsed) if parsed.get_backend_name() == "sqlite" else None
        options: dict[str, Any] = {} if connect is None else {"creator": connect}
        engine = sa.create_engine(url, hide_parameters=True, pool_pre_ping=pre_ping, **options)
        _query_timeout(engine, query_timeout)
        if engine.dialect.driver == "pyodbc":
            sa.event.listen(engine, "handle_error", _odbc_disconnect)
        return SqlSource(engine)
    except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise SourceError("opening the source database", f"{type(exc).__name__}: {exc}") from exc


def _sqlite_read_only(url: sa.URL) -> Callable[[], sqlite3.Connection] | None:
    """Connections to the SQLite file of ``url`` that cannot write (``mode=ro``); None for an
    in-memory database. SourceError when the file is not there: SQLite would create it."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).resolve()
    if not path.is_file():
        raise SourceError("opening the source database", f"source file not found: {path}")
    address = f"file:{quote(str(path))}?mode=ro"

    def connect() -> sqlite3.Connection:
        # The pool hands connections across threads (the daemon's jobs, the planning thread).
        return sqlite3.connect(address, uri=True, check_same_thread=False)

    return connect
