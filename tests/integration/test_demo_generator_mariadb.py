"""The generator writes the same school into MariaDB (over pyodbc) as into SQLite.

Uses a database of its own with a fresh name (``tests.conftest.fresh_mariadb_database``),
dropped afterwards, so two runs on one server never meet and nothing is left behind. Skips with
the reason when pyodbc, the MariaDB ODBC driver or the server is missing; on CI (``CI=true``)
that is a failure instead, so a broken service cannot pass as green.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from bridge.demo import schema
from bridge.demo.generate import SchoolSpec, generate
from tests.conftest import fresh_mariadb_database

SPEC = SchoolSpec(pupils=60, seed=5, days=70)


@pytest.fixture(scope="module")
def mariadb() -> Iterator[sa.Engine]:
    """An engine on a database of this module's own, dropped after its tests."""
    with fresh_mariadb_database("utf8mb4_unicode_ci") as url:
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        yield engine
        engine.dispose()


@pytest.fixture(scope="module")
def maria_counts(mariadb: sa.Engine) -> dict[str, int]:
    """Row counts of generating SPEC into MariaDB."""
    return generate(mariadb, SPEC)


@pytest.fixture(scope="module")
def sqlite_school(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[sa.Engine, dict[str, int]]]:
    """A SQLite file holding the same SPEC, and its row counts."""
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('gen') / 'school.sqlite'}")
    counts = generate(engine, SPEC)
    yield engine, counts
    engine.dispose()


def _rows(engine: sa.Engine, table: sa.Table) -> list[tuple[object, ...]]:
    """All rows of ``table``, sorted in Python so that collations cannot differ."""
    with engine.connect() as conn:
        return sorted((tuple(r) for r in conn.execute(sa.select(table))), key=repr)


def test_mariadb_counts_equal_sqlite_counts(
    mariadb: sa.Engine,
    maria_counts: dict[str, int],
    sqlite_school: tuple[sa.Engine, dict[str, int]],
) -> None:
    """The same spec gives the same row counts in MariaDB as in SQLite, as stored."""
    assert maria_counts == sqlite_school[1]
    assert all(n > 0 for n in maria_counts.values())
    with mariadb.connect() as conn:
        stored = {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in schema.metadata.sorted_tables
        }
    assert stored == maria_counts


@pytest.mark.parametrize("table", schema.metadata.sorted_tables, ids=lambda t: t.name)
def test_mariadb_rows_equal_sqlite_rows(
    mariadb: sa.Engine,
    maria_counts: dict[str, int],
    sqlite_school: tuple[sa.Engine, dict[str, int]],
    table: sa.Table,
) -> None:
    """Every value survives the trip through pyodbc: Cyrillic, control characters, NULLs, dates."""
    assert maria_counts[table.name] > 0
    assert _rows(mariadb, table) == _rows(sqlite_school[0], table)
