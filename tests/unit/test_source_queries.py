"""The SQL source's queries built once with parameters (``SqlSource._query``) are the queries
built afresh for each read: the same SQL for every dialect, the same values bound in the same
places with the same types."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect

from bridge.adapters import source
from bridge.core.mapping import MappingSet
from bridge.ports import Rescan

DIALECTS: dict[str, Dialect] = {
    "mssql": mssql.pyodbc.dialect(),
    "sqlite": sqlite.dialect(),
    "mysql": mysql.pyodbc.dialect(),
    "postgresql": postgresql.psycopg.dialect(),
}
SINCE = datetime(2025, 9, 1, 8, 0)
# A placeholder: pyformat, named, or an IN list expanded at execution.
PLACE = re.compile(r"%\((\w+)\)s|(?<![:\w]):(\w+)|__\[POSTCOMPILE_(\w+)\]")
RESCANS = [
    None,
    Rescan("pupil_id", ["3", "12"]),
    Rescan("pupil_id", ["Б-7", "3"]),
    Rescan("pupil_id", ["x-1", "Б-7"]),
]  # pupil_id: the pupil column of marks, absences and period marks


def rendered(query: sa.Select[Any], params: dict[str, Any], dialect: str) -> tuple[Any, ...]:
    """The SQL (placeholders made anonymous) and the (type, value) bound at each place."""
    if params:
        query = query.params(**params)
    compiled = query.compile(dialect=DIALECTS[dialect])
    text = str(compiled)
    names = [next(n for n in m if n) for m in PLACE.findall(text)]
    bound = compiled.construct_params()
    places = [(repr(compiled.binds[n].type), bound[n]) for n in names]
    return " ".join(PLACE.sub("?", text).split()), places


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("entity", "rescan"),
    [("lesson", None), ("work", None)]
    + [(e, r) for e in ("mark", "absence", "period_mark") for r in RESCANS],
)
def test_changed_reads_built_once_are_the_fresh_ones(
    mappings: MappingSet, entity: str, rescan: Rescan | None, dialect: str
) -> None:
    """An incremental read's two queries, with and without rows to rescan."""
    mapping = mappings[entity]
    named = source._named(rescan)
    params: dict[str, Any] = {"since": SINCE}
    bound = None
    if named is not None:
        params["rescan"] = named[1]
        bound = (named[0], source._keys_param("rescan", named[1]))
    pairs = [
        (source._changed_by_key(mapping, source.SINCE, bound), source.changed_by_key),
        (source._changed_without_key(mapping, source.SINCE, bound), source.changed_without_key),
    ]
    for once, fresh in pairs:
        expected = rendered(fresh(mapping, SINCE, rescan), {}, dialect)
        assert rendered(once, params, dialect) == expected


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "keys", [["5", "17"], ["x-1", "5"], ["Б-7", "x"]], ids=["numbers", "ascii", "unicode"]
)
def test_reads_by_key_built_once_are_the_fresh_ones(
    mappings: MappingSet, keys: list[str], dialect: str
) -> None:
    """A read by key: the IN list typed as a list of the same values would be."""
    mapping = mappings["lesson"]
    bound = source._rescan_keys(Rescan("id", keys))
    column: sa.ColumnClause[Any] = sa.column(mapping.key_columns[0])
    once = source.build_select(mapping).where(column.in_(source._keys_param("keys", bound)))
    fresh = source.build_select(mapping).where(column.in_(bound))
    assert rendered(once, {"keys": bound}, dialect) == rendered(fresh, {}, dialect)


def test_a_source_builds_each_query_once(sqlite_school: sa.Engine, mappings: MappingSet) -> None:
    """Reading the same mapping again reuses the query object (the key kind is part of it)."""
    reader = source.SqlSource(sqlite_school)
    mapping = mappings["lesson"]
    list(reader.read(mapping))
    list(reader.read(mapping, SINCE))
    list(reader.read_keys(mapping, ["1", "2"]))
    built = dict(reader._queries)
    list(reader.read(mapping))
    list(reader.read(mapping, SINCE))
    list(reader.read_keys(mapping, ["3"]))
    assert {k: v[1] for k, v in reader._queries.items()} == {k: v[1] for k, v in built.items()}
    list(reader.read_keys(mapping, ["x"]))
    list(reader.read_keys(mapping, ["Б"]))
    assert len(reader._queries) == len(built) + 2
