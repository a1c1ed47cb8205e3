"""The fast tier keeps every test and every variant once; the long tier adds the rest."""

from __future__ import annotations

import pytest

from tests.conftest import pytest_collection_modifyitems
from tests.tiers import first_fast, one_fast_each, only_long


def _is_long(value: object) -> bool:
    marks = getattr(value, "marks", ())
    return any(m.name == "long" for m in marks)


def _values(value: object) -> tuple[object, ...]:
    if hasattr(value, "marks"):  # a pytest.param
        return tuple(value.values)
    return value if isinstance(value, tuple) else (value,)


def test_first_fast_keeps_the_first_cases_and_marks_the_rest_long() -> None:
    params = first_fast(range(5), 2)
    assert [_is_long(p) for p in params] == [False, False, True, True, True]
    assert [_values(p)[0] for p in params] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("kinds", "variants"), [(6, 2), (3, 3), (1, 2), (5, 4)])
def test_one_fast_each_runs_every_kind_once_fast_and_every_pair_in_some_tier(
    kinds: int, variants: int
) -> None:
    params = one_fast_each([f"k{i}" for i in range(kinds)], list(range(variants)))
    pairs = [_values(p) for p in params]
    assert len(pairs) == len(set(pairs)) == kinds * variants
    fast = [pair for p, pair in zip(params, pairs, strict=True) if not _is_long(p)]
    assert sorted(k for k, _ in fast) == sorted(f"k{i}" for i in range(kinds))
    assert {v for _, v in fast} == set(range(min(kinds, variants)))


class _Item:
    def __init__(self, nodeid: str, long: bool) -> None:
        self.nodeid, self.long = nodeid, long

    def get_closest_marker(self, name: str) -> object:
        return "mark" if name == "long" and self.long else None


def test_only_long_names_the_tests_the_fast_tier_would_never_run() -> None:
    items = [
        _Item("t.py::test_a[0]", long=False),
        _Item("t.py::test_a[1]", long=True),
        _Item("t.py::test_b[0]", long=True),
        _Item("t.py::test_b[1]", long=True),
        _Item("t.py::test_c", long=False),
    ]
    assert only_long(items) == ["t.py::test_b"]  # type: ignore[arg-type]


def test_collection_refuses_a_test_with_no_fast_case() -> None:
    """The conftest hook (run before ``-m`` deselects) stops the session, naming the test,
    when every case of a test is long; it lets a suite with a fast case of each through."""
    fine = [_Item("t.py::test_a[0]", long=False), _Item("t.py::test_a[1]", long=True)]
    pytest_collection_modifyitems(fine)  # type: ignore[arg-type]
    with pytest.raises(pytest.UsageError, match=r"t\.py::test_b"):
        pytest_collection_modifyitems([*fine, _Item("t.py::test_b[0]", long=True)])  # type: ignore[list-item]
