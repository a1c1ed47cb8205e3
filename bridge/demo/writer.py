"""Writing the generated rows: buffered per table, inserted in chunks, a transaction per chunk.

:func:`bulk_session` relaxes SQLite's journal and syncs for the load; :class:`Writer` uses a
Core executemany on SQLite and compiled multi-row INSERT statements on other dialects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Final

import sqlalchemy as sa

from bridge.demo import schema
from bridge.demo.model import Row

Progress = Callable[[str, int], None]

_SQLITE_CHUNK: Final = 10_000
_MULTIROW_CHUNK: Final = 5_000
_MULTIROW_ROWS: Final = 1_000
_MULTIROW_PARAMS: Final = 30_000


@contextlib.contextmanager
def bulk_session(conn: sa.Connection) -> Iterator[None]:
    """On SQLite, turn off the journal and syncs for the load and restore them afterwards."""
    if conn.dialect.name != "sqlite":
        yield
        return
    saved = [
        (p, conn.exec_driver_sql(f"PRAGMA {p}").scalar()) for p in ("journal_mode", "synchronous")
    ]
    conn.commit()
    conn.exec_driver_sql("PRAGMA journal_mode=OFF")
    conn.exec_driver_sql("PRAGMA synchronous=OFF")
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        for pragma, value in saved:
            conn.exec_driver_sql(f"PRAGMA {pragma}={value}")
        conn.commit()


class Writer:
    """Buffers rows per table and inserts them in chunks, one transaction per chunk.

    SQLite gets a Core ``insert()`` executemany per chunk. Other dialects get multi-row
    ``INSERT ... VALUES (...), (...)`` statements compiled once per table and row count, because
    executemany through pyodbc sends one round trip per row.
    """

    def __init__(self, conn: sa.Connection, progress: Progress | None) -> None:
        self.conn = conn
        self._progress = progress
        self._sqlite = conn.dialect.name == "sqlite"
        self._chunk = _SQLITE_CHUNK if self._sqlite else _MULTIROW_CHUNK
        self._buffers: dict[sa.Table, list[Row]] = {}
        self._statements: dict[tuple[str, int], tuple[str, list[tuple[int, str, str]]]] = {}
        self._positional = True
        self.counts: dict[str, int] = {t.name: 0 for t in schema.metadata.sorted_tables}

    def add(self, table: sa.Table, row: Row) -> None:
        """Queue one row (a value for every column) and write the chunk when it is full."""
        buffer = self._buffers.setdefault(table, [])
        buffer.append(row)
        if len(buffer) >= self._chunk:
            self.flush(table)

    def flush(self, table: sa.Table) -> None:
        """Write and commit the queued rows of ``table``, then report progress."""
        rows = self._buffers.pop(table, [])
        if not rows:
            return
        if self._sqlite:
            self.conn.execute(table.insert(), rows)
        else:
            self._insert_multirow(table, rows)
        self.conn.commit()
        self.counts[table.name] += len(rows)
        if self._progress is not None:
            self._progress(table.name, self.counts[table.name])

    def flush_all(self) -> None:
        """Write every queued row, parents before children."""
        for table in schema.metadata.sorted_tables:
            self.flush(table)

    def _insert_multirow(self, table: sa.Table, rows: Sequence[Row]) -> None:
        """Insert ``rows`` with multi-row INSERT statements of at most 1,000 rows."""
        step = max(1, min(_MULTIROW_ROWS, _MULTIROW_PARAMS // len(table.columns)))
        for start in range(0, len(rows), step):
            batch = rows[start : start + step]
            sql, order = self._statement(table, len(batch))
            if self._positional:
                self.conn.exec_driver_sql(sql, tuple(batch[i][c] for i, c, _ in order))
            else:
                self.conn.exec_driver_sql(sql, {name: batch[i][c] for i, c, name in order})

    def _statement(self, table: sa.Table, n: int) -> tuple[str, list[tuple[int, str, str]]]:
        """The multi-row INSERT for ``n`` rows and the (row, column, bind name) of its params."""
        key = (table.name, n)
        if key not in self._statements:
            names = {f"{c.name}_{i}": (i, c.name) for i in range(n) for c in table.columns}
            values = [
                {c.name: sa.bindparam(f"{c.name}_{i}", type_=c.type) for c in table.columns}
                for i in range(n)
            ]
            compiled = table.insert().values(values).compile(dialect=self.conn.dialect)
            self._positional = compiled.positional
            order = list(compiled.positiontup or []) if compiled.positional else list(names)
            self._statements[key] = (compiled.string, [(*names[b], b) for b in order])
        return self._statements[key]
