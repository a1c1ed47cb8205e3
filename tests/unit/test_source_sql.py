"""build_select: the queries the SQL source runs, compiled for each dialect without a database."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql, sqlite
from sqlalchemy.engine import Dialect

from bridge.adapters.source import build_select
from bridge.core.mapping import CANONICAL, CompiledMapping, Filter, MappingSet
from bridge.ports import Rescan

DIALECTS: dict[str, Dialect] = {
    "mssql": mssql.dialect(),
    "sqlite": sqlite.dialect(),
    "mysql": mysql.dialect(),
}
SINCE = datetime(2025, 9, 1, 8, 0)


def sql(query: sa.Select[object], dialect: str) -> str:
    """The query's SQL text for one dialect, on one line."""
    return " ".join(str(query.compile(dialect=DIALECTS[dialect])).split())


def order_by(text: str) -> str:
    """The ORDER BY clause of a compiled query."""
    return text.split(" ORDER BY ", 1)[1]


def bare(text: str) -> str:
    """SQL text without identifier quotes, so assertions need not know each dialect's."""
    return re.sub(r'[`"\[\]]', "", text)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("entity", list(CANONICAL))
def test_every_shipped_mapping_compiles(mappings: MappingSet, entity: str, dialect: str) -> None:
    """Each shipped mapping's query compiles for mssql, sqlite and mysql, selecting its columns
    from its table and ordered by its key columns."""
    mapping = mappings[entity]
    text = bare(sql(build_select(mapping), dialect))
    assert text.startswith("SELECT ")
    selected = text.split(" FROM ", 1)[0].removeprefix("SELECT ").split(", ")
    assert [c.rsplit(".", 1)[-1] for c in selected] == list(mapping.columns)
    assert f" FROM {mapping.table} ORDER BY " in text
    keys = [c.strip().rsplit(".", 1)[-1] for c in order_by(text).split(",")]
    assert keys == list(mapping.key_columns)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_full_read_has_no_where(mappings: MappingSet, dialect: str) -> None:
    """A full read of a mapping without filters has no WHERE clause."""
    assert " WHERE " not in sql(build_select(mappings["mark"]), dialect)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_since_adds_watermark_condition(mappings: MappingSet, dialect: str) -> None:
    """With since, the query keeps rows whose watermark column is at or after it."""
    query = build_select(mappings["mark"], SINCE)
    text = bare(sql(query, dialect))
    assert re.search(r" WHERE modified_at >= \S+ ORDER BY ", text), text
    assert SINCE in query.compile(dialect=DIALECTS[dialect]).params.values()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_rescan_adds_or_in(mappings: MappingSet, dialect: str) -> None:
    """With since and rescan, changed rows OR rows whose rescan column is among the keys."""
    query = build_select(mappings["mark"], SINCE, Rescan("pupil_id", ["3", "12"]))
    text = bare(sql(query, dialect))
    assert re.search(r"WHERE modified_at >= \S+ OR pupil_id IN \(", text), text
    assert [3, 12] in query.compile(dialect=DIALECTS[dialect]).params.values()


def test_rescan_of_digit_keys_binds_numbers(mappings: MappingSet) -> None:
    """Digit keys bind as numbers (an integer column compares numerically), other keys as
    text."""
    query = build_select(mappings["mark"], SINCE, Rescan("pupil_id", ["3", "Б-7"]))
    assert [3, "Б-7"] in query.compile(dialect=DIALECTS["sqlite"]).params.values()


def test_rescan_without_keys_adds_nothing(mappings: MappingSet) -> None:
    """A rescan naming no keys leaves only the watermark condition."""
    text = sql(build_select(mappings["mark"], SINCE, Rescan("pupil_id", [])), "sqlite")
    assert " OR " not in text
    assert " IN " not in text


def test_rescan_without_since_is_ignored(mappings: MappingSet) -> None:
    """Without since, a rescan adds nothing: a full read already reads every row."""
    text = sql(build_select(mappings["mark"], None, Rescan("pupil_id", ["1"])), "sqlite")
    assert " WHERE " not in text


def test_since_without_watermark_is_ignored(mappings: MappingSet) -> None:
    """A mapping without a watermark column reads every row even when since is given."""
    mapping = replace(mappings["mark"], watermark=None)
    assert " WHERE " not in sql(build_select(mapping, SINCE), "sqlite")


@pytest.mark.parametrize(
    ("dialect", "collation"), [("mysql", "utf8mb4_bin"), ("mssql", "Latin1_General_BIN2")]
)
def test_key_collation_adds_collate(mappings: MappingSet, dialect: str, collation: str) -> None:
    """key_collation puts COLLATE on every key column of the ORDER BY, and nowhere else."""
    mapping: CompiledMapping = replace(mappings["absence"], key_collation=collation)
    text = bare(sql(build_select(mapping), dialect))
    clauses = order_by(text).split(", ")
    assert [c.split(" COLLATE ")[1] for c in clauses] == [collation, collation]
    assert text.count("COLLATE") == 2


def test_no_collation_without_key_collation(mappings: MappingSet) -> None:
    """Without key_collation the ORDER BY uses the columns' own collation."""
    assert "COLLATE" not in sql(build_select(mappings["absence"]), "mysql")


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        (Filter("pd_consent", "eq", 1), "pd_consent = "),
        (Filter("pd_consent", "ne", 1), "pd_consent != "),
        (Filter("id", "lt", 5), "id < "),
        (Filter("id", "le", 5), "id <= "),
        (Filter("id", "gt", 5), "id > "),
        (Filter("id", "ge", 5), "id >= "),
        (Filter("gender", "in", ["м", "ж"]), "gender IN ("),
        (Filter("gender", "not_in", ["м"]), "(gender NOT IN ("),
        (Filter("consent_date", "is_null"), "consent_date IS NULL"),
        (Filter("consent_date", "not_null"), "consent_date IS NOT NULL"),
    ],
)
def test_filters_compile(mappings: MappingSet, rule: Filter, fragment: str) -> None:
    """Each source.where operator becomes its SQL condition, before the ORDER BY."""
    mapping = replace(mappings["pupil"], filters=(rule,))
    text = bare(sql(build_select(mapping), "mssql"))
    where = text.split(" WHERE ", 1)[1].split(" ORDER BY ")[0]
    assert where.startswith(fragment), where


def test_filters_and_since_combine(mappings: MappingSet) -> None:
    """Filters and the watermark condition apply together (AND), rescan only widens the latter."""
    mapping = replace(mappings["mark"], filters=(Filter("mark_value", "ne", "н/а"),))
    text = bare(sql(build_select(mapping, SINCE, Rescan("pupil_id", ["1"])), "sqlite"))
    assert re.search(r"WHERE mark_value != \? AND \(modified_at >= \? OR pupil_id IN", text), text


def test_schema_qualifies_the_table(mappings: MappingSet) -> None:
    """A mapping with a schema selects from schema.table."""
    mapping = replace(mappings["pupil"], schema="dbo")
    assert " FROM dbo.pupil ORDER BY " in bare(sql(build_select(mapping), "mssql"))


def _plan_of(query: sa.Select[Any], engine: sa.Engine) -> str:
    text = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        return " | ".join(
            str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {text}")
        )


def test_an_incremental_read_finds_the_changed_rows_by_the_watermark_index(
    mappings: MappingSet, tmp_path: Path
) -> None:
    """SQLite asked for ``modified_at >= ? ORDER BY id`` scans the whole mark table in key
    order; the incremental read looks the changed keys up in ix_mark_modified_at (and the
    rescanned pupils' in ix_mark_pupil_id) and reads their rows by key."""
    from bridge.adapters.source import changed_by_key, changed_without_key
    from bridge.demo import schema

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'school.sqlite'}")
    schema.metadata.create_all(engine)
    mark, since = mappings["mark"], datetime(2025, 10, 1)
    naive = _plan_of(build_select(mark, since), engine)
    assert "SCAN mark" in naive  # what the plain query does
    by_key = _plan_of(changed_by_key(mark, since, Rescan("pupil_id", ["7", "9"])), engine)
    assert "SCAN" not in by_key.replace("SCAN CONSTANT", "")
    assert "ix_mark_modified_at" in by_key
    assert "ix_mark_pupil_id" in by_key
    assert "ix_mark_modified_at" in _plan_of(changed_without_key(mark, since, None), engine)
    engine.dispose()
