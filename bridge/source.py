"""The source port: rows of the ASIOU database, read-only, streamed, in key order.

Queries are SQLAlchemy Core ``Select`` objects built from a mapping alone (testable without a
database: ``build_select`` compiles for any dialect, mssql included). Columns are untyped so a
driver's raw value reaches the converters unchanged, and one bad cell cannot break the read.
Driver errors become :class:`~bridge.errors.SourceError` here, at the seam.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from bridge.errors import SourceError
from bridge.mapping import CompiledMapping, Filter

Row = Sequence[Any]
STREAM_BATCH = 5000


@dataclass(frozen=True)
class Rescan:
    """Rows to read in full during an incremental read: those whose ``column`` is in ``keys``."""

    column: str
    keys: Sequence[str]


class Source(Protocol):
    """The port: every adapter passes ``tests/contracts/test_source_contract.py``."""

    def read(self, mapping: CompiledMapping, since: datetime | None = None,
             rescan: Rescan | None = None) -> Iterator[Row]:
        """Rows of the mapping's table in key order; with ``since``, only rows whose watermark
        column is at or after it, plus the rows ``rescan`` names. Raises SourceError if the
        read fails."""
        ...


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
    conditions = {"eq": column == value, "ne": column != value, "lt": column < value,
                  "le": column <= value, "gt": column > value, "ge": column >= value}
    return conditions[rule.op]


def build_select(mapping: CompiledMapping, since: datetime | None = None,
                 rescan: Rescan | None = None) -> sa.Select[Any]:
    """The query that reads one mapping's rows in key order (optionally only changed rows)."""
    table = sa.table(mapping.table, *(sa.column(c) for c in mapping.columns),
                     schema=mapping.schema)
    query = sa.select(*(table.c[c] for c in mapping.columns))
    for rule in mapping.filters:
        query = query.where(_condition(sa.column(rule.column), rule))
    if since is not None and mapping.watermark:
        changed = sa.column(mapping.watermark, sa.DateTime) >= sa.literal(since, sa.DateTime)
        if rescan is not None and rescan.keys:
            keys = [int(k) if k.isdigit() else k for k in rescan.keys]
            changed = sa.or_(changed, sa.column(rescan.column).in_(keys))
        query = query.where(changed)
    return query.order_by(*(_ordered(table.c[k], mapping) for k in mapping.key_columns))


def _ordered(column: sa.ColumnClause[Any], mapping: CompiledMapping) -> sa.ColumnElement[Any]:
    """Key columns in the order the planner merges in; text keys may need a binary collation
    (``source.key_collation``: utf8mb4_bin on MariaDB, Latin1_General_BIN2 on MS SQL)."""
    if mapping.key_collation:
        return column.collate(mapping.key_collation)
    return column


class SqlSource:
    """The source on any SQLAlchemy URL: SQLite, ``mysql+pyodbc``, ``mssql+pyodbc``, PostgreSQL."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect name of the source database."""
        return self.engine.dialect.name

    def read(self, mapping: CompiledMapping, since: datetime | None = None,
             rescan: Rescan | None = None) -> Iterator[Row]:
        query = build_select(mapping, since, rescan)
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(yield_per=STREAM_BATCH).execute(query)
                for partition in result.partitions():
                    yield from partition
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"reading {mapping.entity} from table {mapping.location}",
                              _describe(exc)) from exc

    def missing_tables(self, mappings: Sequence[CompiledMapping]) -> list[str]:
        """Tables or views the mappings need that the database does not have."""
        try:
            inspector = sa.inspect(self.engine)
            missing = []
            for m in mappings:
                names = set(inspector.get_table_names(schema=m.schema)) | set(
                    inspector.get_view_names(schema=m.schema))
                if m.table not in names:
                    missing.append(m.location)
            return missing
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError("inspecting the source database", _describe(exc)) from exc


def _describe(exc: sa.exc.SQLAlchemyError) -> str:
    """A driver error as one line, without the SQL text or parameters (they may hold data)."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc).split("\n", 1)[0]
    return f"{type(orig or exc).__name__}: {text.splitlines()[0] if text else ''}"


def open_source(url: str) -> SqlSource:
    """A source on a SQLAlchemy URL (read-only by how it is used; never writes)."""
    try:
        return SqlSource(sa.create_engine(url, hide_parameters=True))
    except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise SourceError("opening the source database", f"{type(exc).__name__}: {exc}") from exc
