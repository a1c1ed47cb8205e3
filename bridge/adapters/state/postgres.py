"""The upsert of acknowledged records on PostgreSQL, on psycopg's own connection: the batch is
COPYed into a temporary table, then merged into ``record_state`` by one ``INSERT … SELECT … ON
CONFLICT DO UPDATE``, in the transaction of the SQLAlchemy connection that owns the psycopg
connection (the acknowledgement commits or rolls back with it). A batch of creates only (a full
delivery's) is first COPYed straight into ``record_state`` under a savepoint, which costs about
the bare COPY; a key already there (a revived tombstone) rolls that back and takes the staged way.

SQLAlchemy's executemany of the same upsert (``Deliveries.portable_writes``) took 1.2–2.1 times
as long a batch, and about three times the client CPU: parameters built and bound per row, one
statement a row. psycopg's own executemany of the upsert (its pipeline mode) was slower than the
COPY too, with about three times its client CPU (``bench/state_writes.py``, docs/benchmarks.md).

The temporary table lives as long as the database session and is emptied at every commit (``ON
COMMIT DELETE ROWS``); a rolled back batch takes its rows, or the table itself if the batch
created it, away with it. psycopg's errors come out as SQLAlchemy's (a broken connection
invalidated first), so the seam (``bridge.adapters.seam.state_errors``) translates them as it
does every other driver error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

STAGE = "asiou_bridge_record_batch"
"""The temporary table a batch is COPYed into (in the session's own ``pg_temp`` schema)."""
SAVEPOINT = "asiou_bridge_straight_copy"
_COLUMNS = (
    "entity, sort_key, key, fingerprint, status, payload, portal_id, mapping_version, "
    "pupil_key, class_key, first_delivered_at, updated_at"
)
_KEPT = {"entity", "sort_key", "first_delivered_at"}  # an update keeps the first delivery time
_TARGET = "rs"  # the target table's alias in the merge
_UPDATED = ", ".join(
    # an acknowledgement without the portal's id keeps the one recorded
    f"{c} = COALESCE(excluded.{c}, {_TARGET}.{c})" if c == "portal_id" else f"{c} = excluded.{c}"
    for c in _COLUMNS.split(", ")
    if c not in _KEPT
)


def upsert(conn: sa.Connection, rows: Sequence[tuple[object, ...]], *, new: bool = False) -> None:
    """Upsert ``rows`` (record_state rows in column order, times as ISO text) in ``conn``'s
    transaction. A key given twice keeps its last row, as an executemany of the upsert would.
    ``new``: the rows are creates, most likely of keys the state does not hold, so they are
    first COPYed straight into record_state (under a savepoint: a key it holds after all, a
    tombstone revived, sends the batch the staged way)."""
    import psycopg  # noqa: PLC0415 - only a PostgreSQL store loads the driver

    last = list({(row[0], row[1]): row for row in rows}.values())
    target = _table(conn, "record_state")
    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"the PostgreSQL state store needs psycopg 3, not {type(driver)}")
    with translated(conn), driver.cursor() as cursor:
        if new and _copied_straight(cursor, target, last):
            return
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} "
            f"(LIKE {target} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        if conn.info.get(STAGE) is conn.get_transaction():  # a second batch, one transaction
            cursor.execute(f"DELETE FROM {STAGE}")  # noqa: S608 - no input in the SQL
        conn.info[STAGE] = conn.get_transaction()
        _copy(cursor, STAGE, last)
        cursor.execute(
            f"INSERT INTO {target} AS {_TARGET} ({_COLUMNS}) SELECT {_COLUMNS} FROM {STAGE} "  # noqa: S608 - no input in the SQL
            f"ON CONFLICT (entity, sort_key) DO UPDATE SET {_UPDATED}"
        )


def _copied_straight(
    cursor: psycopg.Cursor[Any], target: str, rows: Sequence[tuple[object, ...]]
) -> bool:
    """COPY ``rows`` into ``target`` itself; False, with nothing of them left, if one of their
    keys is there already."""
    import psycopg  # noqa: PLC0415 - only a PostgreSQL store loads the driver

    cursor.execute(f"SAVEPOINT {SAVEPOINT}")
    try:
        _copy(cursor, target, rows)
    except psycopg.errors.UniqueViolation:
        cursor.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
        cursor.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
        return False
    cursor.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
    return True


def _copy(cursor: psycopg.Cursor[Any], table: str, rows: Sequence[tuple[object, ...]]) -> None:
    with cursor.copy(f"COPY {table} ({_COLUMNS}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def batch_time(now: datetime) -> str:
    """The time of a batch as COPY's text takes it into a ``timestamptz`` column."""
    return now.isoformat()


def _table(conn: sa.Connection, name: str) -> str:
    """``name`` as SQL, in the school's schema when the engine maps tables into one."""
    mapped: dict[str | None, str] = conn.get_execution_options().get("schema_translate_map") or {}
    schema = mapped.get(None)
    return f'"{schema}".{name}' if schema else name


@contextmanager
def translated(conn: sa.Connection) -> Iterator[None]:
    """psycopg's errors inside the block raised as SQLAlchemy's, the connection invalidated
    when the error says it is gone (as SQLAlchemy does for the statements it runs)."""
    import psycopg  # noqa: PLC0415 - only a PostgreSQL store loads the driver

    try:
        yield
    except psycopg.Error as exc:
        raw = conn.connection.dbapi_connection
        # psycopg's Error is the DB-API Error the dialect's signature names.
        gone = conn.dialect.is_disconnect(exc, raw, None)  # type: ignore[arg-type]
        if gone:
            conn.invalidate(exc)
        raise _wrapped(exc, psycopg.Error, conn.dialect, gone) from exc


def _wrapped(
    exc: psycopg.Error, base: type[Exception], dialect: sa.Dialect, gone: bool
) -> sa.exc.DBAPIError:
    """``exc`` as the SQLAlchemy error it would have been in a statement SQLAlchemy ran."""
    make: Callable[..., Any] = sa.exc.DBAPIError.instance
    wrapped: sa.exc.DBAPIError = make(
        None,
        None,
        exc,
        base,
        hide_parameters=True,
        connection_invalidated=gone,
        dialect=dialect,
    )
    return wrapped
