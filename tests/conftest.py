"""Fixtures shared by every test tier.

Database servers are optional on a developer's machine: a fixture that needs PostgreSQL or
MariaDB skips its test with a message saying exactly what is missing. On CI (``CI=true``) a
missing server is a failure instead, so a broken service container cannot pass as green.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa

from bridge.core.mapping import MappingSet, load_mappings
from tests.school import write_school
from tests.tiers import only_long

ROOT = Path(__file__).resolve().parent.parent
# The suite asserts on the English messages whatever the machine's locale (LANG=ru_RU.UTF-8 on a
# Russian workstation); the Russian ones are tested with the language set explicitly
# (tests/unit/test_i18n.py, tests/integration/test_cli_russian.py). Subprocesses inherit it.
os.environ["ASIOU_BRIDGE_LANG"] = "en"
PG_HOST, PG_PORT = "127.0.0.1", 5432
MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306
MARIADB_DRIVER = "MariaDB Unicode"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test whose every case is a long trial: the fast tier must meet each test once
    (tests/tiers.py). Runs before ``-m`` deselects anything."""
    never_fast = only_long(items)
    if never_fast:
        raise pytest.UsageError(
            "tests with no case in the fast tier (mark only some cases long): "
            + ", ".join(never_fast)
        )


def unavailable(what: str) -> NoReturn:
    """Skip the test because ``what`` is missing, or fail it on CI where nothing may be."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(what)


def fresh_name() -> str:
    """A database name no other test (or run) uses."""
    return f"bridge_test_{secrets.token_hex(6)}"


@pytest.fixture(scope="session")
def mappings() -> MappingSet:
    """The shipped mappings, loaded and compiled once per session."""
    return load_mappings(ROOT / "mappings")


@pytest.fixture
def sqlite_school(tmp_path: Path) -> Iterator[sa.Engine]:
    """An engine on a SQLite file holding the small school of ``tests.school``."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.db'}")
    write_school(engine)
    yield engine
    engine.dispose()


# --- PostgreSQL -------------------------------------------------------------------------------


def _postgres_admin() -> sa.Engine:
    try:
        import psycopg  # noqa: F401 - only to tell a missing driver from a missing server
    except ImportError:
        unavailable("PostgreSQL driver missing: the psycopg package is not installed")
    engine = sa.create_engine(
        f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres",
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        unavailable(
            f"PostgreSQL server not reachable at {PG_HOST}:{PG_PORT} as user postgres "
            f"(trust auth): {_first_line(exc)}"
        )
    return engine


def _create_postgres_database(admin: sa.Engine, name: str) -> None:
    """Prefer a linguistic (ICU ru-RU) default collation, as a Russian school's server has, so
    tests of code-point order mean something; fall back to the server's default."""
    with admin.connect() as conn:
        try:
            conn.execute(
                sa.text(
                    f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' "
                    "LOCALE_PROVIDER icu ICU_LOCALE 'ru-RU' LOCALE 'C.UTF-8'"
                )
            )
        except sa.exc.DBAPIError:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    admin = _postgres_admin()
    name = fresh_name()
    _create_postgres_database(admin, name)
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


# --- MariaDB over ODBC ------------------------------------------------------------------------


def _mariadb_url(database: str) -> str:
    driver = MARIADB_DRIVER.replace(" ", "+")
    return (
        f"mysql+pyodbc://root:@{MARIADB_HOST}:{MARIADB_PORT}/{database}"
        f"?driver={driver}&charset=utf8mb4"
    )


def _mariadb_admin() -> sa.Engine:
    try:
        import pyodbc
    except ImportError:
        unavailable("MariaDB access missing: the pyodbc package is not installed")
    if MARIADB_DRIVER not in pyodbc.drivers():
        unavailable(
            f"ODBC driver {MARIADB_DRIVER!r} is not installed (odbcinst has: "
            f"{', '.join(pyodbc.drivers()) or 'no drivers'}); install the MariaDB "
            "Connector/ODBC"
        )
    engine = sa.create_engine(_mariadb_url("mysql"), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        unavailable(
            f"MariaDB server not reachable at {MARIADB_HOST}:{MARIADB_PORT} as root "
            f"without password: {_first_line(exc)}"
        )
    return engine


@contextmanager
def fresh_mariadb_database(collation: str = "utf8mb4_general_ci") -> Iterator[str]:
    """The URL of a new, empty MariaDB database (utf8mb4) over ODBC, named by ``fresh_name``
    so that runs sharing one server never meet, and dropped at the end of the block."""
    admin = _mariadb_admin()
    name = fresh_name()
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE {collation}"))
    try:
        yield _mariadb_url(name)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """The URL of a fresh, empty MariaDB database (utf8mb4) over ODBC, dropped after the test."""
    with fresh_mariadb_database() as url:
        yield url


def _first_line(exc: Exception) -> str:
    """The driver's own message of a connection error, first line only."""
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__
