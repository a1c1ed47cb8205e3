"""Placement on a portal that owns the contingent (``bridge.core.placement``): a record the
portal has no place for is held ``not_matched``, and so is, transitively, whatever refers to
it (a lesson of an unmatched subject, its works, their marks, its absences); the gate's own
reasons come first; a worker hands its held keys back; the reference portal places
everything and keeps nothing."""

from __future__ import annotations

import pickle

from bridge.core import gate
from bridge.core.gate import Context, Verdict
from bridge.core.matching import Match, Matches, MatchStatus
from bridge.core.model import HoldReason, Record
from bridge.core.placement import Placement
from bridge.core.support import Capability, EntitySupport, full_support

MATCHED = EntitySupport(Capability.MATCH)
SUPPORT = {
    "class": MATCHED,
    "subject": MATCHED,
    "pupil": MATCHED,
    "teacher": EntitySupport(Capability.UNSUPPORTED, frozenset()),
    "lesson": EntitySupport(),
    "work": EntitySupport(),
    "mark": EntitySupport(),
    "absence": EntitySupport(),
}
REFS = {
    "class": {},
    "subject": {},
    "teacher": {},
    "pupil": {},
    "lesson": {"class": "class", "subject": "subject", "teacher": "teacher"},
    "work": {"lesson": "lesson"},
    "mark": {"work": "work", "pupil": "pupil"},
    "absence": {"lesson": "lesson", "pupil": "pupil"},
}
NOT_MATCHED = HoldReason.NOT_MATCHED


def matches(subjects: tuple[str, ...] = ("1",)) -> Matches:
    """Class 10, pupil 7 and the given subjects matched; subject 2 missing unless given."""
    found = Matches()
    found.add(
        [
            Match("class", "10", MatchStatus.MATCHED, "c10"),
            Match("pupil", "7", MatchStatus.MATCHED, "p7"),
        ]
    )
    found.add(Match("subject", s, MatchStatus.MATCHED, f"s{s}") for s in subjects)
    if "2" not in subjects:
        found.add([Match("subject", "2", MatchStatus.MISSING)])
    return found


def school(placement: Placement | None) -> Context:
    """A context with pupil 7 consenting, in class 10 (grade 5) since 1 September."""
    ctx = Context(placement=placement)
    ctx.consent["7"] = True
    ctx.keys.update({"pupil": {"7"}, "class": {"10"}, "subject": {"1", "2"}, "teacher": {"3"}})
    ctx.grade["10"] = 5
    ctx.stays["7"] = [("10", "2025-09-01", None)]
    return ctx


def lesson(key: str, subject: str) -> Record:
    payload = {"class": "10", "subject": subject, "teacher": "3", "date": "2025-09-02"}
    return Record("lesson", key, key, {**payload, "number": 1}, "fp")


def work(key: str, lesson_key: str) -> Record:
    return Record("work", key, key, {"lesson": lesson_key, "kind": "oral"}, "fp")


def mark(key: str, work_key: str, pupil: str = "7") -> Record:
    return Record("mark", key, key, {"work": work_key, "pupil": pupil, "value": "5"}, "fp")


def absence(lesson_key: str, pupil: str = "7") -> Record:
    key = f"{lesson_key}-{pupil}"
    return Record("absence", key, key, {"lesson": lesson_key, "pupil": pupil, "code": "н"}, "fp")


def gated(ctx: Context, *records: Record) -> list[Verdict]:
    """Each record's verdict, gated (and remembered) as ``to_items`` does."""
    verdicts: list[Verdict] = []
    for record in records:
        verdicts.append(gate.compile_check(record.entity, REFS[record.entity], ctx)(record))
        remember = gate.compile_remember(record.entity, True, ctx)
        if remember is not None:
            remember(record)
    return verdicts


def test_what_refers_to_a_lesson_of_an_unmatched_subject_is_held_at_every_depth() -> None:
    """A lesson of a subject without a match is held, and so are its work, the mark on that
    work and the lesson's absence; those of a matched subject's lesson pass."""
    ctx = school(Placement.for_run(SUPPORT, matches(), REFS))
    lessons = gated(ctx, lesson("1", "1"), lesson("2", "2"))
    works = gated(ctx, work("11", "1"), work("12", "2"))
    marks = gated(ctx, mark("21", "11"), mark("22", "12"))
    absences = gated(ctx, absence("1"), absence("2"))
    assert (lessons, works, marks, absences) == ([None, NOT_MATCHED],) + ([None, NOT_MATCHED],) * 3


def test_a_run_without_matches_holds_every_journal_record() -> None:
    """A portal that matches and a run without matches: nothing is matched, so every lesson
    and, through it, every work and mark is held (fail closed)."""
    ctx = school(Placement.for_run(SUPPORT, None, REFS))
    assert gated(ctx, lesson("1", "1"), work("11", "1"), mark("21", "11")) == [NOT_MATCHED] * 3


def test_the_gates_own_reason_comes_first() -> None:
    """A mark of a pupil without consent on a held work keeps ``no_consent``."""
    ctx = school(Placement.for_run(SUPPORT, matches(), REFS))
    ctx.consent["8"], ctx.keys["pupil"] = False, {"7", "8"}
    gated(ctx, lesson("2", "2"), work("12", "2"))
    assert gated(ctx, mark("22", "12", pupil="8")) == [HoldReason.NO_CONSENT]


def test_only_held_keys_of_referred_entities_are_kept() -> None:
    """The run keeps the held lessons and works (what others refer to), never the marks, and
    nothing of what it placed."""
    placement = Placement.for_run(SUPPORT, matches(), REFS)
    assert placement is not None
    ctx = school(placement)
    gated(ctx, lesson("1", "1"), lesson("2", "2"), work("11", "1"), work("12", "2"))
    gated(ctx, mark("21", "11"), mark("22", "12"))
    assert placement.tracked == {"lesson", "work"}
    assert {e: sorted(i) for e, i in placement.held.items() if i} == {
        "lesson": ["2"],
        "work": ["12"],
    }
    assert placement.is_held("work", "12")
    assert not placement.is_held("work", "11")
    assert not placement.is_held("mark", "22")


def test_a_worker_hands_its_held_keys_to_the_parent() -> None:
    """Held lessons learnt in a worker's key range come back with what it learnt (pickled)
    and hold the parent's works of them; the worker forgets what it sent."""
    parent_placement = Placement.for_run(SUPPORT, matches(), REFS)
    worker_placement = Placement.for_run(SUPPORT, matches(), REFS)
    assert parent_placement is not None
    assert worker_placement is not None
    parent, worker = school(parent_placement), school(worker_placement)
    gated(worker, lesson("1", "1"), lesson("2", "2"))
    taught = pickle.loads(pickle.dumps(gate.learnt(worker, "lesson")))
    gate.teach(parent, taught)
    assert not worker_placement.is_held("lesson", "2")
    assert gated(parent, work("11", "1"), work("12", "2")) == [None, NOT_MATCHED]


def test_a_worker_that_held_nothing_hands_nothing() -> None:
    """A key range without a held record sends no index of held keys."""
    worker = school(Placement.for_run(SUPPORT, matches(("1", "2")), REFS))
    gated(worker, lesson("1", "1"), lesson("2", "2"))
    assert gate.learnt(worker, "lesson").held is None


def test_the_reference_portal_places_everything_and_keeps_nothing() -> None:
    """A portal that matches nothing has no placement: nothing is held not_matched."""
    support = full_support(REFS)
    assert Placement.for_run(support, matches(), REFS) is None
    ctx = school(None)
    assert gated(ctx, lesson("2", "2"), work("12", "2"), mark("22", "12")) == [None] * 3
