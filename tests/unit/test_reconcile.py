"""Reconciliation's pure decisions: comparing the portal's read-back with the state, the
read-back guard, and the changes a corrected merge plans with their reasons."""

from __future__ import annotations

from bridge.core.guard import Thresholds
from bridge.core.mapping import make_keys
from bridge.core.model import Change, EntryView, Hold, HoldReason, Op, Record
from bridge.core.plan import Item, diff_sorted
from bridge.core.reconcile import (
    CHANGED,
    MISSING,
    UNEXPECTED,
    Drift,
    EntityDrift,
    PortalHold,
    annotate,
    check,
    compare,
    corrected,
)

GUARD = Thresholds(max_delete_fraction=0.10, min_deletes=20)


def entry(key: int, fingerprint: str = "f", status: str = "delivered") -> EntryView:
    """A state entry of key ``key`` as a full merge reads it."""
    return (make_keys([key])[1], fingerprint, status)


def record(key: int, fingerprint: str = "f") -> Record:
    """A mark record of key ``key``."""
    text, sort_key = make_keys([key])
    return Record("mark", text, sort_key, {"value": "5"}, fingerprint)


def plan_with(
    found: EntityDrift, items: list[Item], entries: list[EntryView]
) -> tuple[list[Change], Drift]:
    """The changes a reconciling merge of ``items`` over ``entries`` plans."""
    drift = Drift({found.entity: found})
    merged = diff_sorted("mark", iter(items), corrected(iter(entries), found))
    return [o for o in annotate(merged, found, drift) if isinstance(o, Change)], drift


def test_compare_finds_missing_changed_and_unexpected_records() -> None:
    """Entries the portal lacks are missing, another fingerprint is changed, and portal keys
    the state has no live entry for are unexpected."""
    found = compare("mark", [entry(1), entry(2), entry(3)], {"1": "f", "3": "x", "9": "f"})
    assert found.missing == {make_keys([2])[1]}
    assert found.changed == {make_keys([3])[1]: "x"}
    assert found.unexpected == {"9": ""}
    assert (found.in_state, found.on_portal, found.matches) == (3, 3, 1)


def test_a_missing_record_is_created_again_and_a_changed_one_updated() -> None:
    """Over the corrected view a record missing on the portal is a create and one changed
    there an update, each with its reason; a matching one is left alone."""
    found = compare("mark", [entry(1), entry(2), entry(3)], {"1": "f", "3": "x"})
    changes, drift = plan_with(
        found, [record(1), record(2), record(3)], [entry(1), entry(2), entry(3)]
    )
    assert [(c.op, c.key, c.reason) for c in changes] == [
        (Op.CREATE, "2", MISSING),
        (Op.UPDATE, "3", CHANGED),
    ]
    assert drift.entities["mark"].planned == {f"create: {MISSING}": 1, f"update: {CHANGED}": 1}


def test_an_unexpected_record_the_gate_holds_is_deleted() -> None:
    """A record live on the portal that the gate holds is deleted, whatever the state knows:
    fail closed."""
    found = compare("mark", [], {"4": "f"})
    changes, _ = plan_with(found, [Hold(record(4), HoldReason.NO_CONSENT)], [])
    assert [(c.op, c.key) for c in changes] == [(Op.DELETE, "4")]
    assert changes[0].reason == f"{UNEXPECTED} (no_consent)"


def test_an_unexpected_record_the_source_lacks_is_deleted_known_or_not() -> None:
    """An unexpected record gone from the source is deleted, whether the state has its
    tombstone or never knew it (fail closed: nothing allows it)."""
    found = compare("mark", [], {"5": "f", "6": "f"})
    found.unexpected["5"] = make_keys([5])[1]  # the state's tombstone
    changes, _ = plan_with(found, [], [])
    assert [(c.op, c.key, c.sort_key) for c in changes] == [
        (Op.DELETE, "5", make_keys([5])[1]),
        (Op.DELETE, "6", make_keys([6])[1]),
    ]
    assert changes[1].reason == f"{UNEXPECTED} (unknown to the bridge)"
    assert found.reported == []


def test_an_unexpected_record_the_source_allows_is_sent_and_not_deleted() -> None:
    """An unexpected record the source has and allows is sent (a create), never deleted,
    even with a tombstone in the state."""
    found = compare("mark", [], {"7": "f"})
    found.unexpected["7"] = make_keys([7])[1]
    changes, _ = plan_with(found, [record(7)], [])
    assert [(c.op, c.key, c.reason) for c in changes] == [(Op.CREATE, "7", UNEXPECTED)]


def test_an_empty_portal_is_held_even_below_the_thresholds() -> None:
    """A portal with no record at all while the state has some is held, however few."""
    drift = Drift({"mark": compare("mark", [entry(1), entry(2)], {})})
    assert check(drift, GUARD) == [PortalHold(None, 2, 2)]


def test_an_entity_mostly_missing_is_held_and_a_few_missing_are_not() -> None:
    """More than max_delete_fraction of an entity missing (and at least min_deletes) holds
    the reconciliation; a few missing records do not."""
    entries = [entry(k) for k in range(100)]
    mostly = Drift(
        {
            "mark": compare("mark", entries, {str(k): "f" for k in range(70)}),
            "pupil": compare("pupil", [entry(1)], {"1": "f"}),
        }
    )
    assert check(mostly, GUARD) == [PortalHold("mark", 30, 100)]
    few = Drift({"mark": compare("mark", entries, {str(k): "f" for k in range(27, 100)})})
    assert check(few, Thresholds(max_delete_fraction=0.5, min_deletes=20)) == []


def test_the_approval_id_binds_to_what_the_read_back_found() -> None:
    """Another finding gives the reconciliation another id; the same finding the same id."""
    one = Drift({"mark": compare("mark", [entry(1), entry(2)], {})})
    same = Drift({"mark": compare("mark", [entry(1), entry(2)], {})})
    other = Drift({"mark": compare("mark", [entry(1), entry(3)], {})})
    assert one.drift_id == same.drift_id != other.drift_id
