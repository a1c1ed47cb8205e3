"""``DenseIndex`` behaves as a dict of the same keys and values, whatever the keys (whole
numbers near or far apart, text, leading zeros, signs, other digits), across pickling."""

from __future__ import annotations

import pickle
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bridge.core.dense import SLACK, DenseIndex, is_canonical

WHOLE = st.integers(1, 3_000).map(str)  # near one another: kept in the array
KEYS = st.one_of(
    WHOLE,
    WHOLE,
    st.integers(1, 10**15).map(str),  # far apart: some beyond the array's reach
    st.integers(0, 500).map(lambda n: "0" + str(n)),  # a leading zero: text
    st.sampled_from(["0", "-5", "+7", " 7", "7 ", "1_0", "١٢", "²", "", "a", "12a"]),
    st.text(max_size=4),
)
VALUES = st.one_of(
    st.none(), st.tuples(st.sampled_from(["2025-09-01", "2025-09-02"]), st.sampled_from("12"))
)


class AgainstDict(RuleBasedStateMachine):
    """Random writes, deletes and reads on a ``DenseIndex`` and a dict give the same answers."""

    def __init__(self) -> None:
        super().__init__()
        self.index: DenseIndex[Any] = DenseIndex()
        self.model: dict[str, Any] = {}

    @rule(key=KEYS, value=VALUES)
    def set(self, key: str, value: Any) -> None:
        self.index[key] = value
        self.model[key] = value

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        expected = key in self.model
        self.model.pop(key, None)
        try:
            del self.index[key]
        except KeyError:
            assert not expected
        else:
            assert expected

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        assert (key in self.index) is (key in self.model)
        assert self.index.get(key, "absent") == self.model.get(key, "absent")

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=20))
    def update(self, items: dict[str, Any]) -> None:
        self.index.update(items)
        self.model.update(items)

    @rule()
    def clear(self) -> None:
        self.index.clear()
        self.model.clear()

    @rule()
    def pickled(self) -> None:
        self.index = pickle.loads(pickle.dumps(self.index))

    @rule()
    def copied(self) -> None:
        self.index = self.index.copy()

    @invariant()
    def same(self) -> None:
        assert len(self.index) == len(self.model)
        assert sorted(self.index) == sorted(self.model)
        assert dict(self.index.items()) == self.model
        assert self.index == self.model


TestAgainstDict = AgainstDict.TestCase
TestAgainstDict.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


@given(st.lists(st.tuples(KEYS, VALUES), max_size=60))
def test_built_from_pairs_equals_the_dict(items: list[tuple[str, Any]]) -> None:
    """Built from (key, value) pairs, the index equals the dict built from them."""
    assert DenseIndex(items) == dict(items)


@given(st.integers(0, 10**6), st.text(max_size=8))
def test_canonical_is_exactly_the_text_of_a_positive_whole_number(number: int, text: str) -> None:
    """A key is kept in the array only if it is ``str(n)`` of some n > 0: no sign, space,
    underscore, leading zero or digit of another script."""
    assert is_canonical(str(number)) is (number > 0)
    whole = text.isascii() and text.isdigit() and str(int(text)) == text
    assert is_canonical(text) is (whole and int(text) > 0)
    assert not is_canonical("0")


def test_whole_number_keys_are_offsets_into_the_array() -> None:
    """Near whole-number keys, in any order, go to the array (no key strings kept); text, a
    leading zero and a key beyond the array's reach go to the dict."""
    index: DenseIndex[str] = DenseIndex()
    for key in ("500", "300", "700", "1"):
        index[key] = "v"
    index["0500"] = index["x"] = index[str(10**12)] = "w"
    assert index.count == 4
    assert set(index.other) == {"0500", "x", str(10**12)}
    assert index.slots[500 - index.low] == index.slots[1 - index.low] != 0
    assert len(index.slots) < 700 + SLACK
    assert index["0500"] == "w"
    assert index["500"] == "v"
    assert "0501" not in index
    assert "501" not in index


def test_distinct_values_are_kept_once_and_shared() -> None:
    """Equal values share one number and one object: the first one given."""
    index: DenseIndex[tuple[str, str]] = DenseIndex()
    first = ("2025-09-01", "".join(["1", "0"]))
    index["1"] = first
    index["2"] = ("2025-09-01", "".join(["1", "0"]))
    assert index["2"] is first
    assert index.table == [None, first]


def test_clearing_keeps_the_fields_that_readers_hold() -> None:
    """``clear`` empties the index in place (the gate's compiled rules hold its fields), and
    it starts afresh at the next key."""
    index: DenseIndex[str] = DenseIndex([("10", "a"), ("x", "b")])
    slots, table, other = index.slots, index.table, index.other
    index.clear()
    assert len(index) == 0
    assert "10" not in index
    index["90000000"] = "c"
    assert index.slots is slots
    assert index.table is table
    assert index.other is other
    assert index.low == 90_000_000
    assert index == {"90000000": "c"}


def test_the_pickle_holds_no_key_strings() -> None:
    """Pickled (to and from a planning worker), 50,000 near keys take about four bytes each."""
    pairs = [(f"2025-09-{d:02d}", str(c)) for d in range(1, 29) for c in range(40)]
    index = DenseIndex((str(100_000 + n), pairs[n % len(pairs)]) for n in range(50_000))
    sent = pickle.dumps(index)
    assert len(sent) < 50_000 * 4 + 40_000
    assert pickle.loads(sent) == index
