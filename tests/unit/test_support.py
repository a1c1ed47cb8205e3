"""What a portal receives: the support table and the plan's count of what it will not take."""

from __future__ import annotations

from bridge.core.model import Change, Op, Record
from bridge.core.plan import Plan
from bridge.core.support import (
    Capability,
    EntitySupport,
    full_support,
    is_matched,
    refuser,
    support_of,
)

SUPPORT = {
    "lesson": EntitySupport(Capability.WRITE, frozenset({Op.CREATE}), "no lesson edits"),
    "mark": EntitySupport(Capability.WRITE, frozenset({Op.CREATE})),
    "pupil": EntitySupport(Capability.MATCH),
    "period_mark": EntitySupport(Capability.UNSUPPORTED, frozenset(), "final marks are read-only"),
    "work": EntitySupport(),
}


def change(op: Op, entity: str = "mark", key: str = "1") -> Change:
    record = None if op is Op.DELETE else Record(entity, key, key, {"v": "5"}, "f")
    return Change(op, entity, key, key, record)


def test_each_operation_a_portal_does_not_take_has_its_reason() -> None:
    lesson, mark = SUPPORT["lesson"], SUPPORT["mark"]
    assert lesson.refusal(Op.CREATE) is None
    assert lesson.refusal(Op.UPDATE) == "cannot update on this portal: no lesson edits"
    assert mark.refusal(Op.DELETE) == "cannot retract on this portal"
    assert mark.refusal(Op.ARCHIVE) == "cannot archive on this portal"
    assert SUPPORT["period_mark"].refusal(Op.CREATE) == (
        "not supported by this portal: final marks are read-only"
    )


def test_fail_closed_an_entity_not_declared_is_not_supported() -> None:
    assert support_of(SUPPORT, "guardian").capability is Capability.UNSUPPORTED
    check = refuser(SUPPORT, "guardian")
    assert check is not None
    assert check(Op.CREATE) == "not supported by this portal: not declared by the adapter"


def test_no_check_where_everything_goes_or_the_adapter_matches() -> None:
    assert refuser(SUPPORT, "work") is None
    assert refuser(SUPPORT, "pupil") is None  # matched: the adapter answers it itself
    assert refuser(None, "mark") is None
    assert refuser(full_support(["mark"]), "mark") is None
    assert is_matched(SUPPORT, "pupil")
    assert not is_matched(SUPPORT, "mark")
    assert not is_matched(None, "pupil")


def test_the_plan_counts_what_the_portal_refuses_and_sinks_only_the_rest() -> None:
    plan, sunk = Plan(), list[Change]()
    check = refuser(SUPPORT, "mark")
    outcomes = [change(Op.CREATE, key="1"), change(Op.UPDATE, key="2"), change(Op.DELETE, "mark")]
    plan.note_all("mark", outcomes, sunk.append, refuses=check)
    assert [c.key for c in sunk] == ["1"]
    assert plan.counts["mark"] == {"create": 1}
    assert plan.deletes == []
    assert plan.not_supported["mark"] == {
        "cannot update on this portal": 1,
        "cannot retract on this portal": 1,
    }


def test_a_refused_change_noted_alone_is_kept_from_the_sink() -> None:
    plan = Plan()
    check = refuser(SUPPORT, "mark")
    assert plan.note("mark", change(Op.UPDATE), refuses=check) is True
    assert plan.note("mark", change(Op.CREATE), refuses=check) is False
    assert plan.counts["mark"] == {"create": 1}
    assert plan.not_supported["mark"] == {"cannot update on this portal": 1}


def test_plans_of_key_ranges_add_up_what_was_not_supported() -> None:
    first, later = Plan(), Plan()
    check = refuser(SUPPORT, "mark")
    first.note_all("mark", [change(Op.UPDATE, key="1")], refuses=check)
    later.note_all("mark", [change(Op.UPDATE, key="2"), change(Op.DELETE)], refuses=check)
    first.absorb(later)
    assert first.not_supported["mark"] == {
        "cannot update on this portal": 2,
        "cannot retract on this portal": 1,
    }
