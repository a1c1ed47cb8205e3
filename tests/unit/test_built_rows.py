"""Rows built once (``BuiltRows``) give the scan for rejected rows and ``to_items`` exactly
what building them again gives: the same rejections, records, duplicates and order errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.core.errors import SourceOrderError
from bridge.core.gate import Context
from bridge.core.mapping import load_mappings
from bridge.service.engine.reading import BuiltRows, rejected_rows, to_items

ENROLMENT = load_mappings(Path("mappings"))["enrollment"]
T = "2025-09-01 08:00:00"


def _row(key: Any, pupil: Any = 1, day: Any = "2025-09-01") -> tuple[Any, ...]:
    return (key, pupil, 7, day, " 12-к ", None, None, T)


ROWS = [
    _row(1),
    _row(2, day="not a day"),  # rejected: a bad value
    _row(3),
    _row(3, pupil=2),  # a duplicate key
    _row(None),  # no key
    _row(4, day=None),  # rejected: required
    _row(5),
]


def _items(rows: list[tuple[Any, ...]], built: BuiltRows | None) -> list[Any]:
    build = None if built is None else built.build
    return list(to_items(ENROLMENT, rows, Context(), gated=False, build=build))


def test_built_rows_give_what_building_again_gives() -> None:
    """Rejections (bad values, duplicate keys) and records are the same either way."""
    built = BuiltRows(ENROLMENT, ROWS)
    assert built.rows == ROWS
    again = list(rejected_rows(ENROLMENT, ROWS))
    assert list(rejected_rows(ENROLMENT, built.rows, built.build)) == again
    assert [row[0] for row, _ in again] == [2, 3, None, 4]
    assert _items(built.rows, built) == _items(ROWS, None)


def test_built_rows_out_of_order_are_as_fatal() -> None:
    """Rows out of key order stop ``to_items`` with the same error either way."""
    rows = [_row(5), _row(1)]
    with pytest.raises(SourceOrderError) as fresh:
        _items(rows, None)
    built = BuiltRows(ENROLMENT, rows)
    with pytest.raises(SourceOrderError) as kept:
        _items(built.rows, built)
    assert str(kept.value) == str(fresh.value)
