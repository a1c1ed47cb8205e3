"""``asiou-bridge demo-db`` writes only where it harms nothing: an empty database, or one it wrote
before; a database holding anyone else's tables is refused (exit 2, nothing written) unless
``--replace``, and even then only the demo's own tables are replaced."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.cli.main import main
from bridge.core.errors import ExitCode
from bridge.demo import schema
from bridge.demo.target import MARKER
from tests.conftest import fresh_mariadb_database

SMALL = ["--pupils", "20", "--days", "5"]


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _sqlite_with(path: Path, *statements: str) -> str:
    with closing(sqlite3.connect(path)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    return f"sqlite:///{path}"


def test_the_help_example_writes_into_a_database_of_its_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`demo-db --help` shows a dedicated database (asiou_demo), never the database `test`."""
    with pytest.raises(SystemExit):
        main(["demo-db", "--help"])
    text = capsys.readouterr().out
    assert "/asiou_demo?" in text
    assert "/test?" not in text
    assert "--replace" in text


def test_a_sqlite_file_holding_other_tables_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file with a table the demo did not write: exit 2, the message names the table, and
    nothing of the demo is written."""
    url = _sqlite_with(tmp_path / "kept.sqlite", "CREATE TABLE payroll (id INTEGER)")
    assert main(["demo-db", "--out", str(tmp_path / "kept.sqlite"), *SMALL]) == ExitCode.USAGE
    assert "payroll" in capsys.readouterr().err
    assert _tables(url) == {"payroll"}


def test_demo_named_tables_without_the_marker_are_someone_elses(tmp_path: Path) -> None:
    """Tables named as the demo's (a real ASIOU journal's names) but not written by it are
    refused just the same: the names alone prove nothing."""
    path = tmp_path / "asiou.sqlite"
    url = _sqlite_with(path, "CREATE TABLE pupil (id INTEGER)", "INSERT INTO pupil VALUES (7)")
    assert main(["demo-db", "--out", str(path), *SMALL]) == ExitCode.USAGE
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM pupil")).scalars().all() == [7]
    engine.dispose()


def test_replace_writes_the_demo_and_leaves_other_tables_alone(tmp_path: Path) -> None:
    """With --replace the demo is written beside the other tables, which keep their rows."""
    path = tmp_path / "kept.sqlite"
    url = _sqlite_with(path, "CREATE TABLE payroll (id INTEGER)", "INSERT INTO payroll VALUES (1)")
    assert main(["demo-db", "--out", str(path), "--replace", *SMALL]) == ExitCode.OK
    assert _tables(url) >= {
        "payroll",
        MARKER.name,
        *(t.name for t in schema.metadata.tables.values()),
    }
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM payroll")).scalar_one() == 1
    engine.dispose()


def test_the_demo_writes_again_where_it_wrote_before(tmp_path: Path) -> None:
    """A second demo-db into its own file (the marker is there) replaces its school."""
    out = str(tmp_path / "school.sqlite")
    assert main(["demo-db", "--out", out, *SMALL]) == ExitCode.OK
    assert main(["demo-db", "--out", out, "--seed", "2", *SMALL]) == ExitCode.OK


def test_mariadb_an_empty_database_is_filled_and_a_foreign_one_refused() -> None:
    """On a MariaDB server (a database of the test's own, dropped after): an empty database gets
    the demo; one holding another table is refused and keeps only that table."""
    with fresh_mariadb_database() as url:
        assert main(["demo-db", "--url", url, *SMALL]) == ExitCode.OK
        assert MARKER.name in _tables(url)
    with fresh_mariadb_database() as url:
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE timetable_private (id INTEGER)"))
        engine.dispose()
        assert main(["demo-db", "--url", url, *SMALL]) == ExitCode.USAGE
        assert _tables(url) == {"timetable_private"}
