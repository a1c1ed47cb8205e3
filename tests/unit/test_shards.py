"""Key ranges, and plans noted apart then joined: the pure parts of planning on several cores."""

from __future__ import annotations

import pickle
from datetime import datetime
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from bridge.core.mapping import NO_ATTRS, make_keys, sort_key_part
from bridge.core.model import Change, Hold, HoldReason, Op, Record, Rejection
from bridge.core.plan import Item, Plan
from bridge.ports import KeyRange
from bridge.service.engine.keys import (
    MIN_KEYS_PER_RANGE,
    RANGES_PER_WORKER,
    key_ranges,
    sort_bounds,
)
from bridge.service.engine.workers import _pack, _unpack


def _inside(key: int, key_range: KeyRange) -> bool:
    return (key_range.low is None or key >= key_range.low) and (
        key_range.high is None or key < key_range.high
    )


@given(
    st.integers(-(10**12), 10**12),
    st.integers(0, 10**7),
    st.integers(1, 8),
    st.lists(st.integers(-(10**13), 10**13), max_size=30),
)
def test_key_ranges_meet_and_hold_every_key_once(
    low: int, span: int, workers: int, probes: list[int]
) -> None:
    """Whatever the bounds, every whole number (even outside them) is in exactly one range,
    the first range is open below and the last open above."""
    ranges = key_ranges("id", (low, low + span), workers)
    assert ranges[0].low is None
    assert ranges[-1].high is None
    assert all(a.high == b.low for a, b in pairwise(ranges))
    for key in [*probes, low, low + span]:
        assert sum(_inside(key, r) for r in ranges) == 1


def test_key_ranges_are_never_narrower_than_the_minimum() -> None:
    """A small table stays in one range; a large one gets RANGES_PER_WORKER per worker."""
    assert len(key_ranges("id", (1, MIN_KEYS_PER_RANGE), 2)) == 1
    assert len(key_ranges("id", (1, 10**7), 2)) == 2 * RANGES_PER_WORKER
    wide = key_ranges("id", (1, 5 * MIN_KEYS_PER_RANGE), 8)
    assert len(wide) == 5
    assert all((r.high or 0) - (r.low or 0) >= MIN_KEYS_PER_RANGE for r in wide[1:-1])


@given(
    st.integers(-(10**15), 10**15), st.integers(-(10**15), 10**15), st.integers(-(10**15), 10**15)
)
def test_sort_bounds_agree_with_number_order(key: int, low: int, high: int) -> None:
    """A whole-number key is in a range exactly when its sort key is in the range's sort-key
    bounds, so the state entries of a range are those of its rows."""
    key_range = KeyRange("id", min(low, high), max(low, high))
    start, stop = sort_bounds(key_range)
    assert start is not None
    assert stop is not None
    assert _inside(key, key_range) == (start <= sort_key_part(key) < stop)


# --- plans noted apart, then joined -----------------------------------------------------------


def _record(key: int, entity: str = "mark") -> Record:
    text, sort_key = make_keys([key])
    return Record(entity, text, sort_key, {"value": str(key % 5)}, f"f{key}")


def _outcome(kind: str, key: int) -> Item | Change:
    """One outcome of a merge for the record with ``key``."""
    record = _record(key)
    if kind == "hold":
        return Hold(record, HoldReason.NO_CONSENT)
    if kind == "reject":
        return Rejection(
            "mark", "mark", record.key, "value", f"bad value {key % 3}", record.sort_key
        )
    if kind == "delete":
        return Change(Op.DELETE, "mark", record.key, record.sort_key, None, reason="gone")
    return Change(Op(kind), "mark", record.key, record.sort_key, record)


OUTCOMES = st.lists(
    st.sampled_from(["create", "update", "archive", "delete", "hold", "reject"]), max_size=60
)


def _summary(plan: Plan) -> tuple[object, ...]:
    return (
        plan.counts,
        plan.holds,
        plan.rejection_counts,
        plan.rejection_groups,
        plan.rejections,
        plan.updates,
        plan.deletes,
        plan.hiding,
        plan.records_read,
        plan.plan_id,
    )


@given(OUTCOMES, st.integers(0, 60), st.integers(1, 4))
def test_a_plan_joined_from_two_ranges_equals_one_plan(
    kinds: list[str], cut: int, limit: int
) -> None:
    """Noting the outcomes of the keys below a cut in one plan and the rest in another, then
    absorbing the second, gives the plan of noting them all: counts, samples (with a small
    sample limit), deletes in order and the plan id."""
    outcomes = [_outcome(kind, key) for key, kind in enumerate(kinds)]
    whole, first, second = (
        Plan(sample_limit=limit),
        Plan(sample_limit=limit),
        Plan(sample_limit=limit),
    )
    whole.note_all("mark", outcomes)
    whole.records_read["mark"] += len(outcomes)
    first.note_all("mark", outcomes[:cut])
    first.records_read["mark"] += len(outcomes[:cut])
    second.note_all("mark", outcomes[cut:])
    second.records_read["mark"] += len(outcomes[cut:])
    first.absorb(pickle.loads(pickle.dumps(second)))  # as it comes from a worker
    assert _summary(first) == _summary(whole)


@given(OUTCOMES, st.integers(1, 4))
def test_note_all_equals_noting_one_by_one(kinds: list[str], limit: int) -> None:
    """The counting loop gives the plan that note() per outcome gives, and gives the sink
    exactly the changes with a record that hide no pupil (not archives), in order."""
    outcomes = [_outcome(kind, key) for key, kind in enumerate(kinds)]
    one_by_one, at_once = Plan(sample_limit=limit), Plan(sample_limit=limit)
    for outcome in outcomes:
        one_by_one.note("mark", outcome)
    sent: list[Change] = []
    at_once.note_all("mark", outcomes, sent.append)
    assert _summary(at_once) == _summary(one_by_one)
    assert sent == [
        o
        for o in outcomes
        if isinstance(o, Change) and o.record is not None and o.op is not Op.ARCHIVE
    ]
    assert (
        at_once.hiding
        == one_by_one.hiding
        == [o for o in outcomes if isinstance(o, Change) and o.op is Op.ARCHIVE]
    )


def test_an_empty_entity_leaves_no_counts() -> None:
    """An entity with no changes has no counts at all (not zeros), as with note()."""
    plan = Plan()
    plan.note_all("mark", [Hold(_record(1), HoldReason.NO_CONSENT)])
    assert plan.counts == {}
    assert plan.holds == {"mark": {"no_consent": 1}}


def test_a_change_crosses_from_a_worker_unchanged() -> None:
    """A change packed by a worker and unpacked by the engine equals the original, record,
    payload, attributes and raw watermark included."""
    when = datetime(2026, 3, 1, 8, 30)
    plain = Change(
        Op.CREATE,
        "mark",
        "7",
        make_keys([7])[1],
        Record("mark", "7", make_keys([7])[1], {"value": "5"}, "ab12", NO_ATTRS, when),
    )
    with_attrs = Change(
        Op.ARCHIVE,
        "pupil",
        "3",
        make_keys([3])[1],
        Record("pupil", "3", make_keys([3])[1], {"active": False}, "cd34", {"consent": True}, None),
        reason="withdrawn",
        class_key="5",
    )
    delete = Change(Op.DELETE, "mark", "9", make_keys([9])[1], None, reason="gone")
    for change in (plain, with_attrs, delete):
        assert _unpack(pickle.loads(pickle.dumps(_pack(change)))) == change
