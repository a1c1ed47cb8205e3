"""The source contract, run on every adapter: MemorySource, SqlSource on SQLite and SqlSource on
MariaDB over ODBC (skipped without a server or driver, failed on CI). All hold the small school of
``tests.school``, with a few rows touched later so incremental reads have something to find."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.core.errors import SourceError
from bridge.core.mapping import CANONICAL, CompiledMapping, Filter, MappingSet
from bridge.demo import schema
from bridge.ports import KeyedSource, KeyRange, RangedSource, Rescan, Row, Source
from bridge.testing.fakes import MemorySource, ReadCall
from tests.school import T0, base_rows, journal_rows, write_school


def _last_watermark() -> datetime:
    """The latest modified_at the small school writes."""
    return max(
        r["modified_at"]
        for part in (base_rows(), journal_rows())
        for rows in part.values()
        for r in rows
    )


# Touched after the school was written, later than any row it writes: pupils 2 and 4, and the
# marks of pupil 3 (class 1 lessons 100..111).
LATER = _last_watermark() + timedelta(days=1)
LATEST = LATER + timedelta(days=1)
PUPIL_3_MARKS = [(100 + n) * 10 + 3 for n in range(12)]
TOUCHED: list[tuple[str, list[int], datetime]] = [
    ("pupil", [2, 4], LATER),
    ("mark", PUPIL_3_MARKS, LATEST),
]
DATETIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}")


def school_tables() -> dict[str, list[dict[str, Any]]]:
    """The small school as table name → rows (every table of the schema, some empty), with the
    TOUCHED rows' watermarks moved."""
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in schema.metadata.tables}
    tables.update(
        (t.name, rows) for part in (base_rows(), journal_rows()) for t, rows in part.items()
    )
    for name, ids, when in TOUCHED:
        for row in tables[name]:
            if row["id"] in ids:
                row["modified_at"] = when
    return tables


def touch(engine: sa.Engine) -> None:
    """Move the TOUCHED rows' watermarks in a database written by ``write_school``."""
    with engine.begin() as conn:
        for name, ids, when in TOUCHED:
            table = schema.metadata.tables[name]
            conn.execute(table.update().where(table.c.id.in_(ids)).values(modified_at=when))


def normalise(value: object) -> object:
    """One raw value as drivers agree on it: dates and datetimes as ISO text."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and DATETIME_TEXT.match(value):
        return datetime.fromisoformat(value).isoformat(sep=" ")
    return value


def read(
    source: Source,
    mapping: CompiledMapping,
    since: datetime | None = None,
    rescan: Rescan | None = None,
) -> list[tuple[object, ...]]:
    """Every row of one read, normalised."""
    return [tuple(normalise(v) for v in row) for row in source.read(mapping, since, rescan)]


def read_range(
    source: RangedSource, mapping: CompiledMapping, key_range: KeyRange
) -> list[tuple[object, ...]]:
    """Every row of one key range's read, normalised."""
    return [tuple(normalise(v) for v in row) for row in source.read_range(mapping, key_range)]


def expected(
    mapping: CompiledMapping, keep: Callable[[dict[str, Any]], bool] = lambda row: True
) -> list[tuple[object, ...]]:
    """The school's rows of the mapping's table that ``keep`` accepts, in key order."""
    rows = sorted(
        (r for r in school_tables()[mapping.table] if keep(r)),
        key=lambda r: tuple(r[k] for k in mapping.key_columns),
    )
    return [tuple(normalise(r[c]) for c in mapping.columns) for r in rows]


def ids(rows: list[tuple[object, ...]]) -> list[object]:
    """The first column (the id) of each row."""
    return [row[0] for row in rows]


@pytest.fixture(params=["memory", "sqlite", "mariadb"])
def source(request: pytest.FixtureRequest) -> Iterator[Source]:
    """Every source adapter, holding the small school."""
    if request.param == "memory":
        yield MemorySource(school_tables())
        return
    if request.param == "sqlite":
        engine: sa.Engine = request.getfixturevalue("sqlite_school")
    else:
        engine = sa.create_engine(request.getfixturevalue("mariadb_url"))
        write_school(engine)
    touch(engine)
    yield SqlSource(engine)
    engine.dispose()


class TestSourceContract:
    """What every Source adapter must do."""

    @pytest.mark.parametrize("entity", list(CANONICAL))
    def test_read_gives_every_row_in_key_order(
        self, source: Source, mappings: MappingSet, entity: str
    ) -> None:
        """A full read gives every row of the mapping's table, in mapping column and key order."""
        mapping = mappings[entity]
        assert read(source, mapping) == expected(mapping)

    def test_composite_keys_order_by_every_key_column(
        self, source: Source, mappings: MappingSet
    ) -> None:
        """Rows of a two-column key come ordered by the first column, then the second."""
        mapping = replace(mappings["mark"], key_columns=("pupil_id", "id"))
        rows = read(source, mapping)
        at = [mapping.columns.index(c) for c in ("pupil_id", "id")]
        assert [tuple(r[i] for i in at) for r in rows] == sorted(
            tuple(r[i] for i in at) for r in rows
        )
        assert rows == expected(mapping)

    def test_since_filters_by_watermark(self, source: Source, mappings: MappingSet) -> None:
        """With since, only rows whose watermark is at or after it are read."""
        pupil = mappings["pupil"]
        assert ids(read(source, pupil, LATER - timedelta(seconds=1))) == [2, 4]
        assert ids(read(source, pupil, LATER)) == [2, 4]
        assert read(source, pupil, LATER + timedelta(seconds=1)) == []
        assert read(source, pupil, T0) == expected(pupil)

    def test_since_splits_the_journal(self, source: Source, mappings: MappingSet) -> None:
        """A since between the journal's watermarks reads exactly the rows at or after it."""
        mark = mappings["mark"]
        marks = school_tables()["mark"]
        middle = sorted(r["modified_at"] for r in marks)[len(marks) // 2]
        rows = read(source, mark, middle)
        assert 0 < len(rows) < len(marks)
        assert rows == expected(mark, lambda r: r["modified_at"] >= middle)

    def test_rescan_adds_rows(self, source: Source, mappings: MappingSet) -> None:
        """With since and rescan, the rows of the named keys are read too, all in key order."""
        mark = mappings["mark"]
        pupil_at = mark.columns.index("pupil_id")
        only_1 = read(source, mark, LATEST + timedelta(days=1), Rescan("pupil_id", ["1"]))
        assert only_1 == expected(mark, lambda r: r["pupil_id"] == 1)
        mixed = read(source, mark, LATEST, Rescan("pupil_id", ["1", "5"]))
        assert mixed == expected(mark, lambda r: r["pupil_id"] in (1, 3, 5))
        assert {r[pupil_at] for r in mixed} == {1, 3, 5}

    def test_rescan_of_no_keys_adds_nothing(self, source: Source, mappings: MappingSet) -> None:
        """A rescan naming no keys reads only the changed rows."""
        mark = mappings["mark"]
        assert ids(read(source, mark, LATER, Rescan("pupil_id", []))) == PUPIL_3_MARKS

    def test_rescan_without_since_reads_everything(
        self, source: Source, mappings: MappingSet
    ) -> None:
        """A rescan is part of an incremental read only; a full read still reads every row."""
        mark = mappings["mark"]
        assert read(source, mark, None, Rescan("pupil_id", ["1"])) == expected(mark)

    def test_read_keys_gives_the_rows_of_those_keys(
        self, source: Source, mappings: MappingSet
    ) -> None:
        """Rows are read by key (key text, bound as numbers), in key order; unknown keys read
        nothing."""
        assert isinstance(source, KeyedSource)
        lesson = mappings["lesson"]
        rows = [tuple(normalise(v) for v in r) for r in source.read_keys(lesson, ["105", "101"])]
        assert rows == expected(lesson, lambda r: r["id"] in (101, 105))
        assert list(source.read_keys(lesson, ["999999"])) == []

    def test_key_totals_count_and_sum_the_keys(self, source: Source, mappings: MappingSet) -> None:
        """The totals are the count and sum of the keys, and the rows without a watermark;
        the school has no row without a key."""
        assert isinstance(source, KeyedSource)
        work = mappings["work"]
        keys = [r["id"] for r in school_tables()["lesson_work"]]
        assert source.key_totals(work) == (len(keys), sum(keys), 0)
        assert list(source.read_keyless(work)) == []

    def test_since_without_watermark_column_reads_everything(
        self, source: Source, mappings: MappingSet
    ) -> None:
        """A mapping without a watermark cannot read incrementally, so since is ignored."""
        pupil = replace(mappings["pupil"], watermark=None)
        assert read(source, pupil, LATEST + timedelta(days=1)) == expected(pupil)

    @pytest.mark.parametrize(
        ("entity", "rule", "keys"),
        [
            ("pupil", Filter("pd_consent", "eq", 1), [1, 3, 4, 5]),
            ("pupil", Filter("pd_consent", "ne", 1), [2]),
            ("enrollment", Filter("date_out", "is_null"), [1, 2, 4, 6]),
            ("enrollment", Filter("date_out", "not_null"), [3, 5]),
            ("enrollment", Filter("class_id", "in", [2]), [4]),
            ("enrollment", Filter("pupil_id", "not_in", [1, 5]), [2, 3, 4]),
            ("class", Filter("grade", "gt", 1), [1]),
            ("class", Filter("grade", "le", 1), [2]),
            ("pupil", Filter("id", "ge", 4), [4, 5]),
            ("pupil", Filter("id", "lt", 2), [1]),
        ],
    )
    def test_filters_select_rows(
        self, source: Source, mappings: MappingSet, entity: str, rule: Filter, keys: list[int]
    ) -> None:
        """source.where rules keep exactly the rows they describe, NULLs as SQL treats them."""
        mapping = replace(mappings[entity], filters=(rule,))
        assert ids(read(source, mapping)) == keys

    def test_key_bounds_are_the_lowest_and_highest_whole_number_keys(
        self, source: Source, mappings: MappingSet
    ) -> None:
        """key_bounds gives MIN and MAX of the first key column, as whole numbers."""
        mark = mappings["mark"]
        all_ids = [r["id"] for r in school_tables()["mark"]]
        assert source.key_bounds(mark) == (min(all_ids), max(all_ids))

    def test_key_ranges_that_meet_read_every_row_once_in_order(
        self, source: Source, mappings: MappingSet
    ) -> None:
        """Reads of ranges that meet, the first open below and the last open above, give the
        full read's rows, each once, range after range in key order."""
        mark = mappings["mark"]
        low, high = source.key_bounds(mark) or (0, 0)
        cuts: list[int | None] = [None, low + 5, (low + high) // 2, high, None]
        parts = [
            read_range(source, mark, KeyRange("id", cuts[i], cuts[i + 1]))
            for i in range(len(cuts) - 1)
        ]
        assert all(parts[:3])
        assert [row for part in parts for row in part] == expected(mark)
        assert parts[1] == expected(mark, lambda r: low + 5 <= r["id"] < (low + high) // 2)

    def test_a_null_key_is_read_in_the_range_open_below(
        self, source: Source, mappings: MappingSet
    ) -> None:
        """A row whose key is NULL belongs to the first range only (it becomes a rejection
        there), never to a range with a lower bound."""
        lesson = replace(mappings["lesson"], key_columns=("group_id", "id"))
        nulls = expected(lesson, lambda r: r["group_id"] is None)
        assert nulls, "the small school has lessons of a whole class (no group)"
        first = read_range(source, lesson, KeyRange("group_id", None, 10**9))
        later = read_range(source, lesson, KeyRange("group_id", -(10**9), None))
        assert set(nulls) <= set(first)
        assert not set(nulls) & set(later)

    def test_text_keys_have_no_bounds(self, source: Source, mappings: MappingSet) -> None:
        """A table keyed by text cannot be read in number ranges: key_bounds says None."""
        subject = replace(mappings["subject"], key_columns=("name",))
        assert source.key_bounds(subject) is None

    def test_missing_table_is_source_error(self, source: Source, mappings: MappingSet) -> None:
        """A mapping pointing at a table the database lacks fails with SourceError naming it."""
        mapping = replace(mappings["pupil"], table="no_such_table")
        with pytest.raises(SourceError, match="no_such_table") as caught:
            list(source.read(mapping))
        assert "pupil" in caught.value.operation

    def test_missing_column_is_source_error(self, source: Source, mappings: MappingSet) -> None:
        """A mapping naming a column the table lacks fails with SourceError, not a driver
        error."""
        pupil = mappings["pupil"]
        mapping = replace(pupil, columns=(*pupil.columns, "no_such_column"))
        with pytest.raises(SourceError, match="pupil"):
            list(source.read(mapping))


class TestMemorySource:
    """What the fake offers beyond the port: simulated failures and a log of reads."""

    def test_fail_after_raises_midway(self, mappings: MappingSet) -> None:
        """fail_after gives that many rows of the table, then SourceError naming the table."""
        source = MemorySource(school_tables(), fail_after={"mark": 5})
        rows: list[Row] = []
        with pytest.raises(SourceError, match="mark") as caught:
            rows.extend(source.read(mappings["mark"]))
        assert len(rows) == 5
        assert "after 5 rows" in caught.value.detail
        assert len(list(source.read(mappings["pupil"]))) == 5

    def test_fail_after_beyond_the_table_still_fails(self, mappings: MappingSet) -> None:
        """A failure set past the last row still fails the read, after every row."""
        source = MemorySource(school_tables(), fail_after={"pupil": 99})
        rows: list[Row] = []
        with pytest.raises(SourceError):
            rows.extend(source.read(mappings["pupil"]))
        assert len(rows) == 5

    def test_reads_are_logged(self, mappings: MappingSet) -> None:
        """Each read is logged with its entity, table, since and rescan."""
        source = MemorySource(school_tables())
        rescan = Rescan("pupil_id", ["1"])
        list(source.read(mappings["mark"], LATER, rescan))
        assert source.reads == [ReadCall("mark", "mark", LATER, rescan)]

    def test_rows_are_copied(self, mappings: MappingSet) -> None:
        """Changing the rows a MemorySource was built from does not change what it reads."""
        tables = school_tables()
        source = MemorySource(tables)
        tables["pupil"][0]["last_name"] = "Changed"
        tables["pupil"].clear()
        assert read(source, mappings["pupil"]) == expected(mappings["pupil"])

    def test_keyless_rows_and_totals(self, mappings: MappingSet) -> None:
        """Rows whose key is NULL are read by read_keyless and not counted in the totals; a
        row without a watermark is counted apart."""
        tables = school_tables()
        tables["lesson_work"][0]["id"] = None
        tables["lesson_work"][1]["modified_at"] = None
        source = MemorySource(tables)
        keys = [r["id"] for r in tables["lesson_work"] if r["id"] is not None]
        assert source.key_totals(mappings["work"]) == (len(keys), sum(keys), 1)
        assert [r[0] for r in source.read_keyless(mappings["work"])] == [None]

    def test_schema_qualified_table(self, mappings: MappingSet) -> None:
        """A mapping with a schema reads the rows stored under "schema.table"."""
        source = MemorySource({"dbo.pupil": school_tables()["pupil"]})
        mapping = replace(mappings["pupil"], schema="dbo")
        assert read(source, mapping) == expected(mappings["pupil"])
