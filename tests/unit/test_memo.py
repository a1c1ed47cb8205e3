"""Records built in an earlier read of the same process (``bridge.service.engine.memo``): a
row with the same values is not built again; any difference of type or of how a value reads
is built afresh, as is a rejected row and a value of an unknown type."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.core.mapping import CompiledMapping, RowRejected, load_mappings
from bridge.core.model import Record
from bridge.ports import Row
from bridge.service.engine import memo

GUARDIAN_LINK = load_mappings(Path("mappings"))["guardian_link"]


class Counting:
    """A mapping whose builds are counted."""

    def __init__(self) -> None:
        self.built = 0
        self.mapping: CompiledMapping = dataclasses.replace(GUARDIAN_LINK, build=self._build)

    def _build(self, row: Row) -> Record:
        self.built += 1
        return GUARDIAN_LINK.build(row)


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    memo.forget()
    yield
    memo.forget()


def _row(*values: Any) -> tuple[Any, ...]:
    return (*values, *[None] * (len(GUARDIAN_LINK.columns) - len(values)))


def _read(counting: Counting, rows: list[tuple[Any, ...]]) -> list[Record]:
    build = memo.builder(counting.mapping)
    return [build(row) for row in rows]


def test_a_row_read_again_is_not_built_again() -> None:
    """The second read of the same rows builds nothing and gives the same records."""
    counting = Counting()
    rows = [_row(1, 10, 20), _row(2, 11, 21)]
    first = _read(counting, rows)
    assert counting.built == 2
    again = _read(counting, [tuple(r) for r in rows])
    assert counting.built == 2
    assert again == first


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (1, True),
        (1, 1.0),
        (0.0, -0.0),
        (Decimal("1.0"), Decimal("1.00")),
        (
            datetime(2025, 9, 1, 8, tzinfo=UTC),
            datetime(2025, 9, 1, 9, tzinfo=timezone(timedelta(hours=1))),
        ),
        ("1", 1),
    ],
)
def test_equal_values_that_may_build_otherwise_are_built_afresh(one: Any, other: Any) -> None:
    """Values equal in Python but of another type or reading otherwise are another row."""
    counting = Counting()
    _read(counting, [_row(1, 10, one)])
    _read(counting, [_row(1, 10, other)])
    assert counting.built == 2


def test_unknown_types_and_rejected_rows_are_always_built() -> None:
    """A value of a type not known to build alike is built each time; so is a rejected row,
    which raises each time."""
    counting = Counting()
    odd = _row(1, 10, bytearray(b"x"))
    bad = _row(None, None, None)
    for _ in range(2):
        build = memo.builder(counting.mapping)
        with contextlib.suppress(RowRejected):  # built each time, whatever it builds into
            build(odd)
        with pytest.raises(RowRejected):
            build(bad)
    assert counting.built == 4


def test_only_the_last_read_is_kept_and_no_more_than_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A row the last read did not see is built again; past ``MAX_KEPT`` rows are built as
    before and nothing more is kept."""
    counting = Counting()
    _read(counting, [_row(1, 10, 20)])
    _read(counting, [_row(2, 11, 21)])
    _read(counting, [_row(1, 10, 20)])
    assert counting.built == 3
    monkeypatch.setattr(memo, "MAX_KEPT", 1)
    _read(counting, [_row(1, 10, 20), _row(3, 12, 22)])
    _read(counting, [_row(1, 10, 20), _row(3, 12, 22)])
    assert counting.built == 5  # the first row kept, the second built each time
