"""The guard and the plan's destructive changes: archives and membership closures count like
deletes, are kept from the sink, and make up the plan id an approval binds to."""

from __future__ import annotations

from bridge.core.guard import GuardHold, Thresholds, check
from bridge.core.mapping import make_keys
from bridge.core.model import Change, Op, Record, Value
from bridge.core.plan import Plan, closes_membership

SHARE_ONLY = Thresholds(hold_whole_class=False)
CLASS_ONLY = Thresholds(max_delete_fraction=1.0, min_deletes=10**9, hold_whole_class=True)


def change(op: Op, entity: str, key: int, fingerprint: str = "f", **payload: Value) -> Change:
    """One change of ``entity`` ``key`` (deletes come without a record, as planned)."""
    text, sort_key = make_keys([key])
    record = None if op is Op.DELETE else Record(entity, text, sort_key, payload, fingerprint)
    return Change(op, entity, text, sort_key, record)


def planned(*changes: Change) -> Plan:
    """A plan that noted ``changes`` in order, every membership update taken as a closure."""
    plan = Plan()
    for c in changes:
        plan.note(c.entity, c)
    return plan


def test_archives_count_toward_the_entity_share() -> None:
    """26 pupil archives out of 40 live pupils are held like 26 deletes, and say so."""
    plan = planned(*(change(Op.ARCHIVE, "pupil", k, active=False) for k in range(26)))
    holds = check(plan, {"pupil": 40}, {}, SHARE_ONLY)
    assert holds == [GuardHold("pupil", 0, 40, archives=26)]
    assert holds[0].describe() == "would archive 26 of 40 pupil records (65.0 %)"


def test_deletes_and_archives_of_one_entity_add_up() -> None:
    """Deletes and archives of one entity are counted together against its share."""
    plan = planned(
        *(change(Op.ARCHIVE, "pupil", k, active=False) for k in range(12)),
        *(change(Op.DELETE, "pupil", k) for k in range(100, 110)),
    )
    holds = check(plan, {"pupil": 100}, {}, SHARE_ONLY)
    assert [h.describe() for h in holds] == [
        "would delete 10 and archive 12 of 100 pupil records (22.0 %)"
    ]


def test_closing_every_open_stay_of_a_class_is_held() -> None:
    """Closing each stay still open in a class holds the plan, though the class also has stays
    closed earlier; closing all but one does not."""
    closures = [
        change(Op.UPDATE, "enrollment", k, **{"class": "7", "date_to": "2026-05-31"})
        for k in range(5)
    ]
    holds = check(
        planned(*closures), {"enrollment": 8}, {"7": 8}, CLASS_ONLY, open_by_class={"7": 5}
    )
    assert holds == [GuardHold("enrollment", 0, 5, "7", closures=5)]
    assert holds[0].describe() == (
        "would close 5 enrollment records of class 7: every one still open there"
    )
    assert (
        check(
            planned(*closures[:4]), {"enrollment": 8}, {"7": 8}, CLASS_ONLY, open_by_class={"7": 5}
        )
        == []
    )


def test_a_class_of_deletes_keeps_its_old_description() -> None:
    """Deleting every enrolment of a class is held and described as before."""
    deletes = [change(Op.DELETE, "enrollment", k) for k in range(3)]
    for c in deletes:
        c.class_key = "2"
    holds = check(planned(*deletes), {"enrollment": 9}, {"2": 3}, CLASS_ONLY)
    assert [h.describe() for h in holds] == ["would delete all 3 enrollment records of class 2"]


def test_archives_and_closures_are_kept_from_the_sink() -> None:
    """note_all gives creates and harmless updates to the sink, and keeps archives and the
    membership updates ``closes`` calls closures for after the guard."""
    create = change(Op.CREATE, "enrollment", 1, date_to=None)
    harmless = change(Op.UPDATE, "enrollment", 2, date_to="2026-05-31")
    closing = change(Op.UPDATE, "enrollment", 3, date_to="2026-05-31")
    sent: list[Change] = []
    plan = Plan()
    plan.note_all("enrollment", [create, harmless, closing], sent.append, lambda c: c.key == "3")
    archive = change(Op.ARCHIVE, "pupil", 4, active=False)
    plan.note_all("pupil", [archive], sent.append)
    assert sent == [create, harmless]
    assert plan.hiding == [closing, archive]
    assert plan.destructive() == [closing, archive]


def test_a_closure_is_an_end_set_or_moved_earlier() -> None:
    """A membership update closes when the portal's copy was open, unknown, or ended later."""
    update = change(Op.UPDATE, "group_member", 1, date_to="2026-03-01")
    assert closes_membership(update, {"date_to": None})
    assert closes_membership(update, None)
    assert closes_membership(update, {"date_to": "2026-05-31"})
    assert not closes_membership(update, {"date_to": "2026-03-01"})
    assert not closes_membership(update, {"date_to": "2026-02-01"})
    reopened = change(Op.UPDATE, "group_member", 1, date_to=None)
    assert not closes_membership(reopened, {"date_to": "2026-03-01"})


def test_the_plan_id_binds_to_every_destructive_change() -> None:
    """The plan id changes with any delete, archive or closure (entity, key, operation, target
    fingerprint), and not with creates."""
    deletes = [change(Op.DELETE, "mark", k) for k in range(3)]
    base = planned(*deletes, change(Op.ARCHIVE, "pupil", 9, "a1", active=False))
    same = planned(
        *deletes, change(Op.ARCHIVE, "pupil", 9, "a1", active=False), change(Op.CREATE, "mark", 50)
    )
    other_target = planned(*deletes, change(Op.ARCHIVE, "pupil", 9, "a2", active=False))
    other_key = planned(*deletes, change(Op.ARCHIVE, "pupil", 8, "a1", active=False))
    fewer = planned(*deletes[:2], change(Op.ARCHIVE, "pupil", 9, "a1", active=False))
    assert base.plan_id == same.plan_id
    assert len({base.plan_id, other_target.plan_id, other_key.plan_id, fewer.plan_id}) == 4


def test_archiving_every_pupil_left_in_a_class_is_held() -> None:
    """Archives of pupils whose last class has no pupil left in it hold the plan, per class;
    archives from a class where pupils stay do not."""
    archives = [change(Op.ARCHIVE, "pupil", k, active=False) for k in range(4)]
    for c, class_key in zip(archives, ("11А", "11А", "11А", "5Б"), strict=True):
        c.class_key = class_key
    holds = check(planned(*archives), {"pupil": 400}, {}, CLASS_ONLY, pupils_by_class={"5Б": 24})
    assert holds == [GuardHold("pupil", 0, 3, "11А", archives=3)]
    assert holds[0].describe() == (
        "would archive 3 pupil records of class 11А: no pupil is left in it"
    )
