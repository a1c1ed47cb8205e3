"""JSON written at the adapters' seams: the fast library and the fallback write the same."""

from __future__ import annotations

import json
from datetime import date

import pytest

from bridge.adapters import jsontext


@pytest.mark.parametrize(
    "value",
    [
        {"topic": "Правописание «приставок»\t\\ \n", "number": 3, "ok": True, "none": None},
        {"big": 10**30, "small": -(2**70)},  # beyond 64 bits: only the fallback writes these
        [1, "two", [3.5, {"four": None}]],
    ],
)
def test_dumps_writes_the_standard_librarys_compact_utf8_json(value: object) -> None:
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert jsontext.dumps(value) == expected
    assert json.loads(expected) == value


def test_dates_become_iso_text_through_default() -> None:
    assert jsontext.dumps({"d": date(2025, 9, 1)}, default=date.isoformat) == b'{"d":"2025-09-01"}'


def test_a_value_json_has_no_type_for_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        jsontext.dumps({"x": object()})
